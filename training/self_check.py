"""A head checks itself on its own catalog, without labels: derivations of catalog sources made
with edits that training never uses (training/check_views.py) are ranked against the catalog,
and each candidate's mean reciprocal rank of the true source (its mAP: one positive) and R@1
are measured, per kind of edit.

Candidates are the raw backbone and the heads a run fitted. The rule that keeps one is
`choose`, and it depends on what is known of the catalog's queries:

- with pool images (unlabelled queries: the service's own traffic, `--pool`), the derivations
  take their donors from the pool (sources in the look of the queries), and each kind of edit is
  weighted by the share of pool images whose nearest derived query (raw cosine) is of that
  kind, add-one smoothed (`kind_weights`): the check is scored on the kinds of derivation the
  queries look like, and the best weighted mAP wins, if its lead over the pick of the rule below
  is beyond noise (more than SIGNIFICANCE standard errors: the weights may pile onto a kind
  that few derived queries measure, and then a few of them would decide); else that pick stands;
- without any, nobody knows which kinds the queries will be, so a candidate must not collapse on
  any kind: among the candidates whose worst kind is within WORST_MARGIN points of the best worst
  kind (or, if more, SIGNIFICANCE standard errors of the difference), the best mean over kinds
  wins (a robust choice over the kinds, as in distributionally robust selection; the margin
  keeps a few noisy queries from deciding).

The raw backbone wins ties. The figures go into the head's config (`self_check`), are shown by
`attrib spaces` and `GET /spaces`, and `attrib spaces set` refuses a head that lost to the raw
backbone unless `--force` is given.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.check_views import derive_for_check
from training.data import DataError, file_sha256, load_rgb
from training.heads import Head
from training.query_views import embed_views, query_view_images
from training.views import recipe_key

MAX_QUERIES = 350  # derived queries: one per source, or several per source in a small catalog
PER_SOURCE = 4  # at most this many derivations of one source
WORST_MARGIN = 5.0
SIGNIFICANCE = 2.0  # standard errors a lead must exceed to decide (two-sided ~95 %)
RAW = "raw"


def derived_queries(encoder, paths: list[Path], donors: list[Path], count: int = MAX_QUERIES, seed: int = 0,
                    views: list[tuple] = ()) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """(features of the derivations, index of each one's source in `paths`, kind of each, features
    of their query views by `view_key` of each setting in `views`): up to `count` derivations, of
    sources picked at random (up to PER_SOURCE of each in a small catalog), each with a donor drawn
    from `donors`; `views` lists (count, AugmentConfig) settings whose query views to make."""
    rng = random.Random(seed)
    order = rng.sample(range(len(paths)), len(paths))
    picked = [(order[j % len(order)], j // len(order)) for j in range(min(count, PER_SOURCE * len(order)))]
    images, owners, kinds, viewed = [], [], [], {view_key(v): [] for v in views}
    for i, index in tqdm(sorted(picked), desc="self-check derivations", unit="img", file=sys.stderr, dynamic_ncols=True):
        try:
            image, donor = load_rgb(paths[i]), load_rgb(donors[rng.randrange(len(donors))])
        except DataError:
            continue
        sha = file_sha256(paths[i])
        kind, derived = derive_for_check(image, donor, sha, index)
        images.append(derived)
        for setting in views:
            viewed[view_key(setting)] += query_view_images(derived, f"selfcheck:{sha}:{index}", *setting,
                                                           encoder.spec.input_size)
        owners.append(i)
        kinds.append(kind)
    if not images:
        raise DataError("no catalog image could be read for the self-check")
    viewed = {key: embed_views(encoder, made).reshape(len(images), -1, encoder.feature_dim)
              for key, made in viewed.items()}
    return encoder.embed_features(images), np.asarray(owners), kinds, viewed


def view_key(setting: tuple) -> tuple[int, str]:
    """A query-view setting (count, AugmentConfig) as a dictionary key."""
    return setting[0], recipe_key(setting[1])


def score(head: Head, queries: np.ndarray, owners: np.ndarray, kinds: list[str],
          gallery: np.ndarray, view_features: np.ndarray | None = None) -> dict:
    """mAP (mean reciprocal rank of the source; ties count against it) and R@1, overall and by kind,
    of a candidate head embedding queries and sources exactly as a live space does."""
    sims = head.apply_query(queries, view_features) @ head.apply(gallery).T
    own = sims[np.arange(len(sims)), owners]
    ranks = 1 + (sims > own[:, None]).sum(1) + ((sims == own[:, None]).sum(1) - 1)
    kinds_arr, reciprocal = np.asarray(kinds), 100 / ranks
    per_kind = {k: round(float(np.mean(reciprocal[kinds_arr == k])), 1) for k in sorted(set(kinds))}
    errors = {k: round(_standard_error(reciprocal[kinds_arr == k]), 2) for k in per_kind}
    return {"mAP": round(float(np.mean(reciprocal)), 1), "R@1": round(100 * float(np.mean(ranks == 1)), 1),
            "kinds_mAP": per_kind, "kinds_se": errors, "mean_over_kinds": round(float(np.mean(list(per_kind.values()))), 1),
            "worst_kind": round(min(per_kind.values()), 1)}


def _standard_error(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def kind_weights(pool: np.ndarray, queries: np.ndarray, kinds: list[str]) -> dict[str, float]:
    """Per kind of edit, the add-one smoothed share of pool images (raw features) whose nearest
    derived query (raw features) is of that kind."""
    nearest = np.zeros(len(pool), np.int64)
    derived = _unit(queries)
    for start in range(0, len(pool), 4096):
        nearest[start:start + 4096] = (_unit(pool[start:start + 4096]) @ derived.T).argmax(1)
    names = sorted(set(kinds))
    votes = np.asarray(kinds)[nearest]
    return {k: round(float((np.sum(votes == k) + 1) / (len(pool) + len(names))), 4) for k in names}


def weighted(figures: dict, weights: dict[str, float]) -> float:
    total = sum(weights.values())
    return round(sum(w * figures["kinds_mAP"][k] for k, w in weights.items()) / total, 1)


def weighted_error(figures: dict, weights: dict[str, float]) -> float:
    """The standard error of `weighted` (kinds measured on disjoint derived queries); 0 for
    figures recorded before the check kept its errors."""
    total, errors = sum(weights.values()), figures.get("kinds_se") or {}
    return round(float(np.sqrt(sum((w / total * errors.get(k, 0.0)) ** 2 for k, w in weights.items()))), 2)


def _worst_error(figures: dict) -> float:
    """The standard error of a candidate's worst kind (0 for figures recorded without errors)."""
    kinds = figures["kinds_mAP"]
    return float((figures.get("kinds_se") or {}).get(min(kinds, key=kinds.get), 0.0))


def choose(figures: dict[str, dict], weights: dict[str, float] | None = None, margin: float = WORST_MARGIN) -> str:
    """Without kind weights, among the candidates whose worst kind is within `margin` (or, if
    more, SIGNIFICANCE standard errors of the difference) of the best worst kind, the best mean
    over kinds. With them, the best weighted mAP, where its lead over that pick exceeds
    SIGNIFICANCE standard errors of the difference. Raw wins ties in each rule."""
    floor = max(figures.values(), key=lambda f: f["worst_kind"])

    def within(f: dict) -> bool:
        noise = SIGNIFICANCE * np.hypot(_worst_error(f), _worst_error(floor))
        return f["worst_kind"] >= floor["worst_kind"] - max(margin, noise)

    near = [name for name, f in figures.items() if within(f)]
    robust = max(near, key=lambda name: (figures[name]["mean_over_kinds"], name == RAW))
    if not weights:
        return robust
    best = max(figures, key=lambda name: (weighted(figures[name], weights), name == RAW))
    lead = weighted(figures[best], weights) - weighted(figures[robust], weights)
    noise = np.hypot(weighted_error(figures[best], weights), weighted_error(figures[robust], weights))
    return best if lead > SIGNIFICANCE * noise else robust


def self_check(encoder, candidates: dict[str, Head], paths: list[Path], features: np.ndarray,
               extra_gallery: np.ndarray | None = None, donors: list[Path] | None = None,
               pool: np.ndarray | None = None) -> dict:
    """Score every candidate on derivations of the catalog images `paths` (clean features
    `features`), ranked against them plus `extra_gallery` (e.g. negative-only images). The
    derivations take texture, colour and pasted patches from `donors` (default: the catalog
    images); `pool` (raw features of unlabelled queries) weights the kinds of edit. A candidate
    with query views (random views, or renderings) has the derivations' views made for it."""
    views = list({view_key(h.query_views): h.query_views for h in candidates.values() if h.query_views[0] > 0}.values())
    queries, owners, kinds, viewed = derived_queries(encoder, paths, list(donors or paths), views=views)
    gallery = features if extra_gallery is None or not len(extra_gallery) else np.concatenate([features, extra_gallery])
    figures = {name: score(head, queries, owners, kinds, gallery,
                           viewed.get(view_key(head.query_views)) if head.query_views[0] else None)
               for name, head in candidates.items()}
    weights = kind_weights(pool, queries, kinds) if pool is not None and len(pool) else None
    for f in figures.values() if weights else ():
        f |= {"weighted_mAP": weighted(f, weights), "weighted_se": weighted_error(f, weights)}
    return {"queries": len(owners), "gallery": len(gallery), "edits": "training/check_views.py",
            "pool_images": 0 if weights is None else len(pool), "kind_weights": weights,
            "rule": "weighted by the pool" if weights else "worst kind, then mean",
            "candidates": figures, "chosen": choose(figures, weights)}


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
