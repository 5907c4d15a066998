"""A label-free check, run at the end of every unsupervised run: does the new head separate the
pool (synthetic images) from the catalog's sources wholesale?

A head trained on sources alone can map every synthetic image into one tight cluster far from
every source: content attribution then fails for every query at once (R@100 of 0), although the
training loss looks fine. Two statistics of unit embeddings show it without a label:

- `gap`: the distance between the pool's mean and the sources' mean, over the root-mean-square
  spread of each set around its own mean (the same shape as a Fisher criterion). Separated media
  have a gap far larger than their spread.
- `pool_to_source`: the mean cosine similarity of each pool image to its nearest source, and
  `pool_to_pool`: to its nearest other pool image. A collapse shows as the first falling while
  the second approaches 1.

Both are computed on the raw backbone (unit features, `before`) and on the new encoder (`after`).
The run warns when the gap has grown well past the raw backbone's and past `GAP_LIMIT`.
"""

from __future__ import annotations

import numpy as np
import torch

GAP_LIMIT = 1.0  # a pool mean further from the source mean than the sets' own spread
GROWTH_LIMIT = 1.5  # and at least this many times the raw backbone's gap
MAX_ROWS = 2000  # rows per set (an even subsample keeps the check fast on big catalogs)


def media_statistics(pool: np.ndarray, sources: np.ndarray) -> dict[str, float]:
    """Separation statistics of unit-row embeddings pool (P, D) and sources (S, D)."""
    if len(pool) < 2 or len(sources) < 2:
        raise ValueError("the separation check needs at least 2 pool images and 2 sources")
    pool, sources = _subsample(pool), _subsample(sources)
    pool_mean, source_mean = pool.mean(axis=0), sources.mean(axis=0)
    spread = np.sqrt(0.5 * (_mean_sq(pool - pool_mean) + _mean_sq(sources - source_mean)))
    within = pool @ pool.T
    np.fill_diagonal(within, -np.inf)
    return {
        "gap": round(float(np.linalg.norm(pool_mean - source_mean) / max(spread, 1e-12)), 3),
        "pool_to_source": round(float((pool @ sources.T).max(axis=1).mean()), 3),
        "pool_to_pool": round(float(within.max(axis=1).mean()), 3),
    }


def separation_check(encoder, pool_features: np.ndarray | None, source_features: np.ndarray | None) -> dict:
    """Compare the raw backbone with `encoder` on backbone features of pool images and sources;
    `warning` is a message when the head separates them wholesale, else None."""
    if pool_features is None or source_features is None or min(len(pool_features), len(source_features)) < 2:
        return {"computed": False, "reason": "needs at least 2 pool images and 2 catalog sources", "warning": None}
    before = media_statistics(_unit(pool_features), _unit(source_features))
    after = media_statistics(_embed(encoder, pool_features), _embed(encoder, source_features))
    warning = None
    if after["gap"] > GAP_LIMIT and after["gap"] > GROWTH_LIMIT * before["gap"]:
        warning = (
            f"the new head separates pool images from sources wholesale (mean gap {after['gap']:.2f} spreads, "
            f"raw backbone {before['gap']:.2f}): content attribution may be worse than the raw backbone"
        )
    return {"computed": True, "before": before, "after": after, "warning": warning}


def _embed(encoder, features: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        rows = torch.from_numpy(np.ascontiguousarray(features)).float().to(encoder.device)
        return encoder.project(rows).float().cpu().numpy()


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _mean_sq(rows: np.ndarray) -> float:
    return float((rows**2).sum(axis=1).mean())


def _subsample(rows: np.ndarray) -> np.ndarray:
    return rows if len(rows) <= MAX_ROWS else rows[np.linspace(0, len(rows) - 1, MAX_ROWS).astype(int)]
