"""Copy-detection metrics, as DISC21 scores them (Douze et al., "The 2021 Image Similarity Dataset
and Challenge", arXiv 2106.09672), for manifests whose queries may have no source in the gallery.

Each query contributes one prediction: its top-1 gallery item with that item's score as the
confidence. A prediction is right when the query has a source and the item is one of its
concept's sources; a sourceless query's prediction is always wrong. All predictions are ranked
together by confidence:
- micro-AP: average precision over that one ranking, with the number of sourced queries as the
  number of positives (so a missed source costs recall even at the top);
- R@P90: the highest recall reached at a precision of at least 90 %;
- none AUROC: how well 1 - top-1 confidence tells the sourceless queries from the rest (only
  when the manifest has both kinds).
All in percent except the AUROC, which is in [0, 1].
"""

from __future__ import annotations

import numpy as np

COPY_METRICS = ("µAP", "R@P90")


def micro_ap(confidence: np.ndarray, correct: np.ndarray, positives: int) -> float:
    """Average precision of predictions ranked by confidence (ties: the order given)."""
    if positives <= 0:
        return 0.0
    order = np.argsort(-np.asarray(confidence, np.float64), kind="stable")
    hits = np.asarray(correct, bool)[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / positives)


def recall_at_precision(confidence: np.ndarray, correct: np.ndarray, positives: int, precision: float = 0.9) -> float:
    """The highest recall at a confidence threshold where precision is at least `precision`."""
    if positives <= 0:
        return 0.0
    order = np.argsort(-np.asarray(confidence, np.float64), kind="stable")
    hits = np.cumsum(np.asarray(correct, bool)[order])
    reached = hits / np.arange(1, len(hits) + 1) >= precision
    return float(hits[reached].max() / positives) if reached.any() else 0.0


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of `scores` for boolean `labels` (ties count one half)."""
    labels = np.asarray(labels, bool)
    positive, negative = np.asarray(scores, np.float64)[labels], np.asarray(scores, np.float64)[~labels]
    if not len(positive) or not len(negative):
        return None
    greater = (positive[:, None] > negative[None, :]).sum() + 0.5 * (positive[:, None] == negative[None, :]).sum()
    return float(greater / (len(positive) * len(negative)))


def copy_detection(confidence: np.ndarray, correct: np.ndarray, sourced: np.ndarray) -> dict:
    """The DISC21 figures of top-1 predictions: `confidence` and `correct` per query, and whether
    each query has a source in the gallery."""
    sourced = np.asarray(sourced, bool)
    positives = int(sourced.sum())
    result = {"µAP": 100 * micro_ap(confidence, correct, positives),
              "R@P90": 100 * recall_at_precision(confidence, correct, positives)}
    none = auroc(-np.asarray(confidence, np.float64), ~sourced)
    return result | ({"none_AUROC": none} if none is not None else {})


def copy_detection_of_scores(scores: np.ndarray, query_concepts: list, gallery_concepts: list,
                             valid: np.ndarray | None = None) -> dict:
    """`copy_detection` from a (Q, G) score matrix: a query's prediction is its best valid gallery
    item (`valid`: a (Q, G) mask, e.g. without the query's own file)."""
    masked = np.where(valid, scores, -np.inf) if valid is not None else scores
    top = masked.argmax(axis=1)
    confidence = masked[np.arange(len(top)), top]
    gallery = np.array([c if c is not None else "" for c in gallery_concepts], dtype=object)
    sourced = np.array([concept in set(gallery_concepts) - {None} for concept in query_concepts])
    correct = sourced & (gallery[top] == np.array(query_concepts, dtype=object))
    return copy_detection(confidence, correct, sourced)
