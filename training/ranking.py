"""Ranking metrics of the AbC evaluation code (Wang et al., ICCV 2023): AP = mean over positives
of (rank among positives / overall rank); R@K = positives in the top K / positives. Ties are
broken by gallery order (a stable sort). Pure numpy; `attrib eval` (training/evaluate.py) uses them."""

from __future__ import annotations

import numpy as np

KS = (1, 5, 10, 100)
METRICS = ("mAP",) + tuple(f"R@{k}" for k in KS)



def positive_ranks(scores: np.ndarray, positive: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """1-based overall ranks of the positives among the valid gallery items, ascending.

    Rank of positive p = 1 + #(valid items scoring higher) + #(valid items scoring equal and
    listed earlier), i.e. the position of p after a stable sort by descending score.
    """
    valid = np.ones(len(scores), dtype=bool) if valid is None else valid
    pos_idx = np.flatnonzero(positive & valid)
    live = scores[valid]
    ordered = np.sort(live)
    pos_scores = scores[pos_idx]
    higher = len(ordered) - np.searchsorted(ordered, pos_scores, side="right")
    equal = np.searchsorted(ordered, pos_scores, side="right") - np.searchsorted(ordered, pos_scores, side="left")
    earlier = np.zeros(len(pos_idx), dtype=np.int64)
    for j in np.flatnonzero(equal > 1):  # ties are rare: resolve them exactly by gallery order
        earlier[j] = np.count_nonzero(valid[: pos_idx[j]] & (scores[: pos_idx[j]] == pos_scores[j]))
    return np.sort(1 + higher + earlier)


def average_precision(ranks: np.ndarray) -> float:
    """Mean over positives of (rank among positives / overall rank); ranks ascending."""
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def recall_at(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ranks <= k))


# -- scoring -----------------------------------------------------------------------------------


def score_matrix(queries: np.ndarray, gallery: np.ndarray, chunk_elements: int = 1 << 26) -> np.ndarray:
    """(Q, G) inner products through an exact FAISS inner-product index, in query chunks."""
    import faiss

    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))
    scores = np.empty((len(queries), len(gallery)), dtype=np.float32)
    step = max(1, chunk_elements // max(1, len(gallery)))
    for start in range(0, len(queries), step):
        chunk = np.ascontiguousarray(queries[start : start + step], dtype=np.float32)
        values, ids = index.search(chunk, len(gallery))
        np.put_along_axis(scores[start : start + step], ids, values, axis=1)
    return scores


