"""How good probabilities are: expected calibration error, reliability bins, and AUROC.

- ECE (Guo et al., ICML 2017): confidences are put into `bins` equal-width bins over [0, 1]
  (a confidence of exactly 1 goes in the last bin); ECE = sum over bins of
  (bin size / N) * |accuracy in the bin - mean confidence in the bin|.
- AUROC: the probability that a random positive scores above a random negative, ties counting
  one half (the Mann-Whitney U statistic over the product of the class sizes).
"""

from __future__ import annotations

import numpy as np

BINS = 15


def reliability_bins(confidence, correct, bins: int = BINS) -> list[dict]:
    """Per non-empty bin: its bounds, size, mean confidence and accuracy."""
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, np.float64)
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            out.append({"low": b / bins, "high": (b + 1) / bins, "count": int(mask.sum()),
                        "confidence": float(confidence[mask].mean()), "accuracy": float(correct[mask].mean())})
    return out


def expected_calibration_error(confidence, correct, bins: int = BINS) -> float:
    n = len(np.asarray(confidence))
    if n == 0:
        return float("nan")
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in reliability_bins(confidence, correct, bins)))


def auroc(score, positive) -> float:
    """Area under the ROC curve of `score` for telling `positive` from the rest (nan if one class is empty)."""
    score = np.asarray(score, np.float64)
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score), np.float64)
    sorted_scores = score[order]
    start = 0
    while start < len(score):  # average ranks over ties
        end = start
        while end + 1 < len(score) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))
