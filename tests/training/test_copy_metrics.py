"""DISC21 copy-detection metrics on small cases worked out by hand."""

import numpy as np
import pytest

from training.copy_metrics import auroc, copy_detection, copy_detection_of_scores, micro_ap, recall_at_precision


def test_micro_ap_counts_sourced_queries_as_positives():
    # ranked: right, wrong, right; 4 sourced queries -> (1/1 + 2/3) / 4
    assert micro_ap(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 4) == pytest.approx((1 + 2 / 3) / 4)
    assert micro_ap(np.array([0.9]), np.array([True]), 0) == 0.0


def test_a_confident_wrong_answer_costs_more_than_a_doubtful_one():
    correct = np.array([True, True, True, False])
    confident_wrong = micro_ap(np.array([0.5, 0.6, 0.7, 0.99]), correct, 3)
    doubtful_wrong = micro_ap(np.array([0.5, 0.6, 0.7, 0.1]), correct, 3)
    assert doubtful_wrong == 1.0 and confident_wrong == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)


def test_recall_at_90_percent_precision():
    confidence = np.arange(20, 0, -1) / 20
    correct = np.ones(20, bool)
    correct[[1, 15, 19]] = False  # precision 14/15 after fifteen, then below 0.9 (14/16 ... 17/20)
    assert recall_at_precision(confidence, correct, 20) == pytest.approx(14 / 20)
    correct[19] = True  # 18/20 at the end is 0.9 again: the best recall is the last
    assert recall_at_precision(confidence, correct, 20) == pytest.approx(18 / 20)
    assert recall_at_precision(confidence, np.zeros(20, bool), 20) == 0.0


def test_auroc_and_the_none_figure():
    assert auroc(np.array([0.9, 0.8, 0.1]), np.array([True, True, False])) == 1.0
    assert auroc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    assert auroc(np.array([0.5]), np.array([True])) is None
    result = copy_detection(np.array([0.9, 0.8, 0.2]), np.array([True, True, False]), np.array([True, True, False]))
    assert result == {"µAP": 100.0, "R@P90": 100.0, "none_AUROC": 1.0}


def test_from_a_score_matrix_a_sourceless_query_is_always_wrong_and_own_files_are_skipped():
    scores = np.array([[0.9, 0.1, 0.95],   # a: its own file (masked) scores highest; then a's source
                       [0.2, 0.8, 0.1],    # b: right
                       [0.7, 0.1, 0.1]])   # z: no source, predicts a with 0.7: a false positive
    valid = np.array([[True, True, False], [True, True, True], [True, True, True]])
    result = copy_detection_of_scores(scores, ["a", "b", "z"], ["a", "b", None], valid)
    # ranked: a 0.9 right, b 0.8 right, z 0.7 wrong -> µAP 1, R@P90 1; none AUROC: z's 0.7 is the lowest
    assert result == {"µAP": 100.0, "R@P90": 100.0, "none_AUROC": 1.0}
