import numpy as np
import pytest

from training.verdict import FUSED, MAX_RULE, SpaceEvidence, VerdictModel, fit, max_rule, predict


def evidence(top: str, p: float, none: float, runner_up: str = "other") -> SpaceEvidence:
    return SpaceEvidence({top: p, runner_up: (1 - p - none) / 2}, none)


def test_without_a_fit_the_surest_space_speaks():
    verdict = predict(None, {"copy": evidence("a", 0.9, 0.05), "style": evidence("b", 0.6, 0.2)})
    assert (verdict.kind, verdict.concept, verdict.probability, verdict.spaces) == ("match", "a", 0.9, ["copy"])
    assert verdict.none_probability == 0.05  # the lowest none of any space
    unsure = predict(None, {"copy": evidence("a", 0.2, 0.7), "style": evidence("b", 0.3, 0.6)})
    assert (unsure.kind, unsure.concept, unsure.none_probability) == ("none", "b", 0.6)
    assert predict(None, {"copy": SpaceEvidence({}, 1.0)}) is None


def synthetic(n: int, rng, informative: tuple[bool, bool]):
    """Queries with a source (concept c<i>) or none; a space is informative (confident and right on
    sourced queries, unsure on the rest) or noise (a random concept at a random probability)."""
    examples, truths = [], []
    for i in range(n):
        sourced = i % 2 == 0
        truth = f"c{i}" if sourced else None
        answer = {}
        for space, good in zip(("copy", "style"), informative):
            if good:
                p = rng.uniform(0.6, 0.95) if sourced else rng.uniform(0.05, 0.4)
                answer[space] = evidence(f"c{i}" if sourced else f"x{i}", p, max(0.0, 0.95 - p))
            else:
                p = rng.uniform(0.05, 0.95)
                answer[space] = evidence(f"n{rng.integers(1000)}", p, max(0.0, 0.95 - p))
        examples.append(answer)
        truths.append(truth)
    return examples, truths


def test_the_fit_trusts_the_informative_space_and_beats_the_noisy_one():
    rng = np.random.default_rng(0)
    examples, truths = synthetic(200, rng, (True, False))
    model = fit(examples, truths, np.arange(200) // 1, ["copy", "style"], "catalog", "test")
    losses = model.summary["held_out_log_loss"]
    assert losses["copy"] < losses["style"] and model.chosen in ("copy", FUSED)
    test, test_truths = synthetic(100, np.random.default_rng(1), (True, False))
    verdicts = [predict(model, e) for e in test]
    right = [(v.kind == "match" and v.concept == t) or (v.kind == "none" and t is None) for v, t in zip(verdicts, test_truths)]
    assert np.mean(right) > 0.9


def test_a_space_that_misleads_is_not_trusted():
    rng = np.random.default_rng(2)
    examples, truths = synthetic(200, rng, (False, True))
    model = fit(examples, truths, np.arange(200), ["copy", "style"], "catalog", "test")
    assert model.chosen in ("style", FUSED)
    assert model.summary["held_out_log_loss"]["style"] < model.summary["held_out_log_loss"]["copy"]
    assert model.summary["fit_none_auroc"] > 0.9


def test_a_fit_needs_both_kinds_and_survives_json():
    rng = np.random.default_rng(3)
    examples, truths = synthetic(40, rng, (True, True))
    with pytest.raises(ValueError):
        fit(examples, ["c"] * 40, np.arange(40), ["copy", "style"], "catalog", "test")
    model = fit(examples, truths, np.arange(40), ["copy", "style"], "catalog", "test", key="k", sources=7)
    again = VerdictModel.from_json(model.to_json())
    assert again == model
    query = examples[0]
    assert predict(again, query) == predict(model, query)
    assert max_rule(query).spaces and MAX_RULE == "max_rule"


def test_match_strength_is_read_only_where_it_lowers_the_held_out_loss():
    """The copy space ranks the true concept first for half of the sourced queries, and a wrong
    one for the rest and for every sourceless query, at the same confidence: only the inlier
    count tells them apart. Informative counts are kept (`regions`) and read when given; counts
    that carry nothing are left out."""
    rng = np.random.default_rng(4)
    examples, truths, told = [], [], []
    for i in range(300):
        truth, found = (f"c{i}" if i % 2 == 0 else None), i % 4 == 0
        top = truth if found else f"x{i}"
        examples.append({"copy": evidence(top, rng.uniform(0.3, 0.7), 0.2), "style": evidence(f"n{i}", 0.3, 0.5)})
        truths.append(truth)
        told.append({top: int(rng.integers(30, 90)) if found else int(rng.integers(0, 8))})
    groups = rng.permutation(300)  # folds that mix the kinds
    model = fit(examples, truths, groups, ["copy", "style"], "catalog", "test", strengths=told)
    losses = model.summary["held_out_log_loss"]
    assert model.regions is not None and losses[f"{model.chosen}+regions"] < losses[model.chosen]
    assert model.regions["b_regions"] > 0
    assert model.summary["regions"]["fit_none_auroc"] > model.summary["fit_none_auroc"] + 0.1
    strong, weak = predict(model, examples[0], told[0]), predict(model, examples[2], told[2])
    assert strong.read_regions and (strong.kind, strong.concept) == ("match", truths[0]) and weak.kind == "none"
    unread = predict(model, examples[0])  # no regions matched: the plain fit
    assert not unread.read_regions and unread.probability < strong.probability
    noise = [{top: int(rng.integers(0, 90)) for top in e["copy"].probabilities} for e in examples]
    plain = fit(examples, truths, groups, ["copy", "style"], "catalog", "test", strengths=noise)
    assert plain.regions is None and f"{plain.chosen}+regions" in plain.summary["held_out_log_loss"]
    assert not predict(plain, examples[0], noise[0]).read_regions
    assert VerdictModel.from_json(model.to_json()) == model
