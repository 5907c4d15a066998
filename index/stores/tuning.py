"""Search-parameter tuning for approximate indexes (FAISS, Milvus), to a recall target (as autofaiss does).

An IVF index searches `nprobe` of its lists and an HNSW graph keeps `efSearch` candidates; both
trade speed for recall. Instead of fixed values, `tune_search` takes a sample of the indexed
vectors, moved off themselves by noise, as queries; finds their exact top-k by brute force; and
picks the smallest setting whose recall@k reaches the target. The chosen values are stored in
the index's sidecar and applied whenever the index is loaded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import faiss
import numpy as np

log = logging.getLogger(__name__)
DEFAULT_TARGET_RECALL = 0.95
SAMPLE_QUERIES = 200


@dataclass
class Tuning:
    params: dict[str, int]
    recall: float
    target: float
    seconds: float


def tunable_parameter(index) -> str | None:
    """The knob that trades speed for recall: `nprobe` (IVF), `efSearch` (HNSW), or None (exact)."""
    if faiss.try_extract_index_ivf(index) is not None:
        return "nprobe"
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else faiss.downcast_index(index)
    return "efSearch" if hasattr(inner, "hnsw") else None


def candidates(index, name: str) -> list[int]:
    if name == "nprobe":
        nlist = faiss.try_extract_index_ivf(index).nlist
        values = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048]
        return [v for v in values if v < nlist] + [nlist]
    return [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]


def apply_params(index, params: dict[str, int]) -> None:
    space = faiss.ParameterSpace()
    for name, value in params.items():
        if name != "k_factor":  # the re-ranking's, not FAISS's (index/stores/refine.py)
            space.set_index_parameter(index, name, int(value))


def exact_top_k(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int,
                chunk: int = 262_144) -> np.ndarray:
    """Ids of each query's k best vectors by inner product, over the vectors in chunks."""
    best_scores = np.full((len(queries), k), -np.inf, np.float32)
    best_ids = np.full((len(queries), k), -1, np.int64)
    for start in range(0, len(vectors), chunk):
        scores = queries @ np.asarray(vectors[start:start + chunk], np.float32).T
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_ids = np.concatenate([best_ids, np.broadcast_to(ids[start:start + chunk], scores.shape)], axis=1)
        top = np.argpartition(-merged_scores, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, top, axis=1)
        best_ids = np.take_along_axis(merged_ids, top, axis=1)
    return best_ids


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / |truth| (ids of -1 never count)."""
    hits = [len(np.intersect1d(f[f >= 0], t[t >= 0])) / max(1, int((t >= 0).sum())) for f, t in zip(found, truth)]
    return float(np.mean(hits)) if hits else 1.0


def tune_search(index, vectors: np.ndarray, ids: np.ndarray, target: float = DEFAULT_TARGET_RECALL,
                k: int = 10, seed: int = 0, search_with=None) -> Tuning | None:
    """Set and return the cheapest setting that reaches `target` recall@k, with a sample of the
    indexed vectors as queries and their exact top-k as the truth (None for exact indexes).
    `search_with`: the search of an index that re-ranks (see `tune_refined_to_truth`)."""
    if index.ntotal == 0 or (search_with is None and tunable_parameter(index) is None):
        return None
    queries = sample_queries(vectors, seed)
    truth = exact_top_k(vectors, np.asarray(ids, np.int64), queries, min(k, index.ntotal))
    return tune_with_truth(index, queries, truth, target, search_with)


def tune_with_truth(index, queries: np.ndarray, truth: np.ndarray, target: float = DEFAULT_TARGET_RECALL,
                    search_with=None) -> Tuning | None:
    """`tune_search` against a given truth (each query's exact top k)."""
    if search_with is not None:
        return tune_refined_to_truth(index, search_with, queries, truth, target)
    return tune_to_truth(index, queries, truth, target)


K_FACTORS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def tune_refined_to_truth(index, search_with, queries: np.ndarray, truth: np.ndarray,
                          target: float = DEFAULT_TARGET_RECALL) -> Tuning:
    """Two knobs for a re-ranked index: its own (`nprobe`/`efSearch`), walked with the widest
    re-ranking so that only the lists limit recall; then `k_factor`, the candidates re-ranked per
    result. `search_with(queries, k, params)` returns the ids found with those parameters.

    The first walk aims halfway between the target and 1 (or stops when recall stops gaining):
    scanning another list costs about what re-ranking a dozen candidates read from disk does, so
    leaving the re-ranking some slack is the cheaper split."""
    started, k = time.perf_counter(), truth.shape[1]
    params: dict[str, int] = {}
    name = tunable_parameter(index)
    if name is not None:
        widest = walk_knob(name, candidates(index, name),
                           lambda value: search_with(queries, k, {name: value, "k_factor": K_FACTORS[-1]}), truth,
                           (1 + target) / 2, warn=False)
        params.update(widest.params)
    chosen = walk_knob("k_factor", K_FACTORS, lambda value: search_with(queries, k, {**params, "k_factor": value}),
                       truth, target)
    params.update(chosen.params)
    search_with(queries, k, params)  # leave the chosen setting applied
    return Tuning(params, chosen.recall, target, round(time.perf_counter() - started, 3))


def sample_queries(vectors: np.ndarray, seed: int = 0, noise: float = 0.5) -> np.ndarray:
    """Queries like real ones: indexed vectors moved off themselves by noise of `noise` times their
    norm (cosine about 0.9 to the original), so a query's own cell is no free answer."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(vectors), min(SAMPLE_QUERIES, len(vectors)), replace=False))
    base = np.asarray(vectors[rows], np.float32)
    jitter = rng.standard_normal(base.shape).astype(np.float32)
    jitter *= noise * np.linalg.norm(base, axis=1, keepdims=True) / np.linalg.norm(jitter, axis=1, keepdims=True)
    queries = base + jitter
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def tune_to_truth(index, queries: np.ndarray, truth: np.ndarray, target: float = DEFAULT_TARGET_RECALL,
                  plateau: float = 0.002) -> Tuning | None:
    """Walk a FAISS index's knob upwards until recall@k (k = truth's width) reaches `target`."""
    name = tunable_parameter(index)
    if name is None or index.ntotal == 0:
        return None

    def search_with(value: int) -> np.ndarray:
        apply_params(index, {name: value})
        return index.search(queries, truth.shape[1])[1]

    return walk_knob(name, candidates(index, name), search_with, truth, target, plateau)


def walk_knob(name: str, values: list[int], search_with, truth: np.ndarray, target: float = DEFAULT_TARGET_RECALL,
              plateau: float = 0.002, warn: bool = True) -> Tuning:
    """The cheapest of `values` whose search (`search_with(value)` returns the found ids) reaches
    `target` recall@k against `truth`; any store's knob (FAISS or Milvus) is tuned this way.

    Compressed codes (PQ) cap recall below what any nprobe gives, so the walk also stops when
    the next value gains less than `plateau`; the reached recall is reported (and logged).
    """
    started, k = time.perf_counter(), truth.shape[1]
    recall, value, previous = 0.0, None, None
    for value in values:
        recall = recall_at_k(search_with(value), truth)
        if recall >= target or (previous is not None and recall - previous < plateau):
            break
        previous = recall
    if recall < target and warn:
        log.warning("%s=%d reaches recall@%d %.3f, short of the %.2f target", name, value, k, recall, target)
    return Tuning({name: int(value)}, round(recall, 4), target, round(time.perf_counter() - started, 3))
