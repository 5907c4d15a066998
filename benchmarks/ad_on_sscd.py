"""A&D on the copy backbone's features (issue 27: "try A&D on SSCD features too"): the closed-form
whitening head (training/whitening.py) and its distilled query head (training/distil.py) fitted
on the SSCD student's 512-d descriptors instead of Lite0's, with training's own views
(training/views.py) made at the student's 256 px.

Protocols: benchmarks/tvs_compare.py's (both halves: catalog-only, pool with the same or new
concepts, transductive) and photo-dev-content catalog-only and transductive. Columns: SSCD raw
(plain cosine), the head (clean view), the head with query views (9 forwards), the distilled
query head (1 forward) and the head with the query's sketch and silhouette (`rendered`: two more
forwards, at 192 px). Every column is a candidate scored on the real queries, whichever the self-check would
keep (benchmarks/recipe.py has what it keeps). Labels are read only to score.

Usage (from the repository root; about 10 minutes on 2 cores, features kept in memory only):
  .venv/bin/python benchmarks/ad_on_sscd.py [--out var/benchmarks/ad-on-sscd] [--render-size PX]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from recipe import catalog_only  # noqa: E402
from tvs_compare import PROTOCOLS, SHARED, write_splits  # noqa: E402

from training.config import RENDERING_NAMES, AugmentConfig  # noqa: E402
from training.data import file_sha256, load_rgb, read_manifest  # noqa: E402
from training.distil import ridge_map  # noqa: E402
from training.ranking import average_precision, positive_ranks, recall_at  # noqa: E402
from training.sscd import load_copy_backbone  # noqa: E402
from training.recipe import RENDER_SIZE  # noqa: E402
from training.views import ViewMaker, recipe_key, view_rng  # noqa: E402
from training.whitening import nuisance_covariance, whitening_matrix  # noqa: E402

VIEWS = 8


class Features:
    """SSCD student descriptors of an image's clean view and its training views, kept in memory."""

    def __init__(self, render_size: int = RENDER_SIZE):
        self.backbone = load_copy_backbone("sscd_distilled")
        self.augment = AugmentConfig()
        self.views = ViewMaker(self.augment, 256)
        self.render = ViewMaker(AugmentConfig(renderings=RENDERING_NAMES, render_size=render_size), 256)
        self.cache: dict[Path, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __call__(self, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        """Clean (N, D) and views (N, VIEWS, D); `rendered(paths)` the renderings' (N, 2, D)."""
        for path in paths:
            if path not in self.cache:
                image, sha = load_rgb(path), file_sha256(path)
                made = [self.views(image, view_rng(sha, i, recipe_key(self.augment)), i) for i in range(VIEWS)]
                rows = self.backbone.embed_features([image, *made])
                drawn = self.backbone.features_of_pixels([np.asarray(v) for v in self.render.renderings(image)])
                self.cache[path] = (rows[0], rows[1:1 + VIEWS], drawn)
        return np.stack([self.cache[p][0] for p in paths]), np.stack([self.cache[p][1] for p in paths])

    def rendered(self, paths: list[Path]) -> np.ndarray:
        self(paths)
        return np.stack([self.cache[p][2] for p in paths])


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


def scores(queries: np.ndarray, gallery: np.ndarray, query_concepts, gallery_concepts) -> tuple[float, float]:
    sims, aps, firsts = queries @ gallery.T, [], []
    for i, concept in enumerate(query_concepts):
        positive = gallery_concepts == concept
        if positive.any():
            ranks = positive_ranks(sims[i], positive)
            aps.append(average_precision(ranks))
            firsts.append(recall_at(ranks, 1))
    return round(100 * float(np.mean(aps)), 1), round(100 * float(np.mean(firsts)), 1)


def run(features: Features, training: Path, evaluation: Path) -> dict:
    rows, train_rows = read_manifest(evaluation), read_manifest(training)
    gallery = [r for r in rows if r.role in ("source", "distractor")]
    queries = [r for r in rows if r.role == "query"]
    gallery_concepts = np.array([r.concept if r.role == "source" else f"distractor {i}" for i, r in enumerate(gallery)])
    query_concepts = [r.concept for r in queries]
    anchors = [r.path for r in train_rows if r.role in ("source", "query")]
    negatives = [r.path for r in train_rows if r.role == "distractor"]
    g, _ = features([r.path for r in gallery])
    q, q_views = features([r.path for r in queries])
    a, a_views = features(anchors)
    centre = np.concatenate([unit(a)] + ([unit(features(negatives)[0])] if negatives else [])).mean(0)
    pooled = any(r.role == "query" for r in train_rows)
    w = whitening_matrix(nuisance_covariance(a, a_views), 0.1) if pooled else np.eye(a.shape[1])

    def head(x):
        return unit((unit(x) - centre) @ w.T)

    def viewed(x, x_views):
        return unit(head(x) + head(x_views.reshape(-1, x_views.shape[-1])).reshape(*x_views.shape[:2], -1).sum(1))

    query_map = ridge_map(unit(a) - centre, viewed(a, a_views))
    return {"raw": scores(unit(q), unit(g), query_concepts, gallery_concepts),
            "head": scores(head(q), head(g), query_concepts, gallery_concepts),
            "views": scores(viewed(q, q_views), head(g), query_concepts, gallery_concepts),
            "distilled": scores(unit((unit(q) - centre) @ query_map.T), head(g), query_concepts, gallery_concepts),
            "rendered": scores(viewed(q, features.rendered([r.path for r in queries])), head(g), query_concepts,
                               gallery_concepts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "benchmarks" / "ad-on-sscd")
    parser.add_argument("--render-size", type=int, default=RENDER_SIZE,
                        help="px of the rendered column's sketch and silhouette (the recipe's: %(default)s)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    features, results = Features(args.render_size), {}
    photo = SHARED / "photo-dev-content.csv"
    runs = {"photo catalog-only": (catalog_only(photo, args.out), photo), "photo transductive": (photo, photo)}
    splits = write_splits(args.out)
    for half in ("A", "B"):
        for label, (training, evaluation) in PROTOCOLS.items():
            runs[f"tvs {half} {label.split(' (')[0]}"] = (splits[half][training], splits[half][evaluation])
    lines = ["| run | SSCD raw | head | head + views (9 forwards) | distilled (1 forward) "
             f"| rendered (+2 forwards at {args.render_size} px) |",
             "|---|---|---|---|---|---|"]
    for name, (training, evaluation) in runs.items():
        results[name] = run(features, training, evaluation)
        lines.append(f"| {name} | " + " | ".join(f"{m} / {r1}" for m, r1 in results[name].values()) + " |")
        print(lines[-1], flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
