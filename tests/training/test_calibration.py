"""The calibration model and its metrics: hand-computed ECE and AUROC, the fit against a known
generating model, and behaviour on synthetic score distributions."""

import math

import numpy as np
import pytest

from training.calibration import (PARAMS, WINDOW, Calibration, CalibrationData, fit, group_max, left_out,
                                  predict, ranked, uninformed)
from training.reliability import auroc, expected_calibration_error, reliability_bins
from training.selffit import pick


def test_ece_matches_a_hand_computation():
    confidence = [0.1, 0.2, 0.9, 0.95]
    correct = [0, 1, 1, 1]
    # 10 bins: {0.1}: acc 0, conf .1; {0.2}: acc 1, conf .2; {0.9, 0.95}: acc 1, conf .925
    expected = 0.25 * 0.1 + 0.25 * 0.8 + 0.5 * 0.075
    assert expected_calibration_error(confidence, correct, bins=10) == pytest.approx(expected)
    bins = reliability_bins([1.0, 0.0], [1, 0], bins=15)
    assert [(b["low"], b["count"]) for b in bins] == [(0.0, 1), (14 / 15, 1)]  # 1.0 goes in the last bin
    assert expected_calibration_error([1.0, 0.0], [1, 0]) == 0.0
    assert math.isnan(expected_calibration_error([], []))


def test_auroc_matches_a_hand_computation():
    # positives 0.9 and 0.3 against negatives 0.8, 0.3, 0.1: 3 + (0 + 0.5 + 1) wins of 6 pairs
    assert auroc([0.9, 0.8, 0.3, 0.3, 0.1], [1, 0, 1, 0, 0]) == pytest.approx(4.5 / 6)
    assert auroc([3, 2, 1], [1, 1, 0]) == 1.0 and auroc([1, 2, 3], [1, 1, 0]) == 0.0
    assert auroc([0.5, 0.5], [1, 0]) == 0.5
    assert math.isnan(auroc([1, 2], [1, 1]))


def test_group_max_ranked_and_left_out_against_loops():
    rng = np.random.default_rng(1)
    scores = rng.uniform(-1, 1, (5, 9)).astype(np.float32)
    codes = np.array([2, 0, 2, 1, 0, 3, 3, 3, 0])
    grouped = group_max(scores, codes, 5)
    for c in range(5):
        expected = scores[:, codes == c].max(axis=1) if (codes == c).any() else np.full(5, -np.inf)
        assert np.array_equal(grouped[:, c], expected)
    truth = np.array([0, 1, 2, 3, -1])
    data = ranked(grouped, truth)
    assert data.scores.shape == (5, WINDOW) and np.isinf(data.scores[:, 4:]).all()
    assert (data.concepts == 4).all()
    for i, column in enumerate(truth[:4]):
        assert data.truth[i] == 1 + np.sum(grouped[i] > grouped[i, column])
    assert data.truth[4] == 0
    gone = ranked(left_out(grouped[:4], truth[:4]))
    assert (gone.truth == 0).all() and (gone.concepts == 3).all()


TRUE = {"a": 1.5, "b": 2.5, "w_mu": 1.5, "w_sd": 2.0, "c": 0.5}


def synthetic_scores(rng, n, concepts=40):
    """Ranked concept scores of n queries: a background whose level and spread vary by query,
    and, for some, a stand-out."""
    raw = rng.normal(rng.uniform(0.1, 0.5, (n, 1)), rng.uniform(0.02, 0.1, (n, 1)), (n, concepts))
    raw[:, 0] += rng.uniform(0, 0.5, n) * (rng.random(n) < 0.6)
    return -np.sort(-raw, axis=1)


def test_the_fit_recovers_the_parameters_of_data_drawn_from_the_model():
    rng = np.random.default_rng(0)
    scores = synthetic_scores(rng, 6000)
    truth_model = Calibration("h", "manifest", "synthetic", TRUE, (0.0, 0.0), 0.5)
    listed, none, elsewhere = predict(truth_model, scores[:, :WINDOW], 40)
    probabilities = np.column_stack([none, listed, elsewhere])
    outcome = (probabilities.cumsum(axis=1) < rng.random((len(scores), 1))).sum(axis=1)
    # outcome 0: none; 1..WINDOW: that rank; WINDOW + 1: some concept below the list
    rank = np.where(outcome == WINDOW + 1, WINDOW + 1 + rng.integers(0, 20, len(outcome)), outcome)
    fitted = fit(CalibrationData(scores[:, :WINDOW], np.full(len(rank), 40), rank), "h", "manifest", "synthetic")
    for name in PARAMS:
        assert fitted.params[name] == pytest.approx(TRUE[name], abs=0.15 * (1 + abs(TRUE[name]))), name
    fresh = synthetic_scores(rng, 2000)[:, :WINDOW]
    for got, want in zip(predict(fitted, fresh, 40), predict(truth_model, fresh, 40)):
        assert np.abs(got - want).mean() < 0.02


def test_synthetic_distributions_give_separating_calibrated_probabilities():
    rng = np.random.default_rng(2)

    def draw(n):
        present = rng.random(n) < 0.5
        scores = rng.normal(0.25, 0.05, (n, 200)).astype(np.float32)
        true = rng.integers(0, 200, n)
        hit = present & (rng.random(n) < 0.8)  # a present concept stands out 80 % of the time
        scores[hit, true[hit]] += rng.uniform(0.15, 0.5, hit.sum())
        return ranked(scores, np.where(present, true, -1))

    train, test = draw(3000), draw(3000)
    calibration = fit(train, "head-1", "manifest", "synthetic")
    listed, none, _ = predict(calibration, test.scores, test.concepts)
    assert ((listed >= 0) & (listed <= 1)).all() and ((none >= 0) & (none <= 1)).all()
    assert (listed.sum(axis=1) + none <= 1 + 1e-9).all()
    assert auroc(none, test.truth == 0) > 0.85
    assert expected_calibration_error(listed[:, 0], test.truth == 1) < 0.03
    assert calibration.summary["queries"] == 3000 and 0.4 < calibration.none_rate < 0.6


def test_a_longer_list_and_small_catalogs_keep_probabilities_sane():
    calibration = Calibration("h", "manifest", "x", TRUE, (6.0, 1.0), 0.5)
    long = -np.sort(-np.random.default_rng(3).uniform(0, 0.6, 50))
    listed, none, elsewhere = predict(calibration, long[None], 500)
    assert listed.shape == (1, 50) and listed.sum() + none[0] + elsewhere[0] == pytest.approx(1)
    one, none_one, rest = predict(calibration, np.array([[0.9]]), 1)
    assert rest[0] == 0 and one[0, 0] + none_one[0] == pytest.approx(1)
    flat, half, _ = predict(uninformed("h", "one concept"), np.array([[0.5, 0.2]]), 2)
    assert half[0] == 0.5 and flat.sum() == pytest.approx(0.5) and flat[0, 0] > flat[0, 1]


def test_fit_needs_both_kinds_of_queries_and_round_trips_through_json():
    data = ranked(np.array([[0.9, 0.1], [0.8, 0.2]], np.float32), np.array([0, 0]))
    with pytest.raises(ValueError):
        fit(data, "h", "manifest", "x")
    data = ranked(np.array([[0.9, 0.1], [0.3, 0.2], [0.85, 0.2], [0.25, 0.3]], np.float32), np.array([0, -1, 0, -1]))
    calibration = fit(data, "h", "manifest", "x", sources=2)
    again = Calibration.from_json(calibration.to_json())
    assert again == calibration and again.fitted_at is not None


def test_self_fit_picks_pairs_from_multi_source_concepts_and_spreads_copies():
    codes = np.array([0, 0, 1, 2, 2, 2, 3] + list(range(4, 100)))
    pairs, copies = pick(codes)
    assert set(codes[pairs]) == {0, 2} and len(pairs) == 5
    assert len(copies) == 64 and len(set(codes[copies])) == 64
    assert np.array_equal(pick(codes)[1], copies)  # deterministic
