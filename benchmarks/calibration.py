"""Calibrated probabilities and the `none` mass on the texture-vs-shape dev data (issue 9).

Setup, all from tvs-dev-content.csv:
  - Classes are split in halves as in docs/training.md (benchmarks/tvs_compare.py): alphabetical,
    A = airplane, bicycle, bird, bottle; B = cat, clock, elephant, knife.
  - Half the concepts lose their sources: in every class, the concepts whose number is even
    (airplane2, airplane4, ...) in removal "even", the odd ones in removal "odd". A query whose
    concept lost its sources has no source ("gone"); the others do.
  - Two galleries. "sources": the remaining sources; the 1,000 distractors belong to no concept
    (data/README.md), so they never score as one. "sources + distractor concepts": every
    distractor is its own concept too (as benchmarks/spaces_tvs.py indexes them), a catalog of
    1,040 concepts in which a distractor often outranks the true source.
  - Calibration is fitted on the queries of one half (labels: the true concept, or none) and
    reported on the other half's queries, both directions, both removals.
  - The `catalog self-fit` rows use no query labels: the product's default (`training.selffit`:
    edited copies of gallery images and same-concept source pairs, each also with its concept
    left out), fitted on the gallery and reported on each half.

Metrics on the reported half:
  - AUROC of none_probability for telling gone queries (positive) from present ones.
  - ECE of the match probability: the top-1 concept's probability against whether the top-1
    concept is the query's true concept (never, for a gone query); 15 equal-width bins.
  - For reference, the AUROC of two bare statistics as none scores: -s1 (the best concept score)
    and -(s1 - s2) (its gap to the second).

Encoders: `raw` is the identity head (the backbone's features). `A&D` is a head trained with
`attrib train` and its defaults (query views on: head.query_views = 8), without labels, on the gallery (sources as catalog images, distractors as
negatives) plus the fitted half's EVEN queries (tvs_compare's alternation) as the pool; its
calibration is fitted on the fitted half's odd queries, so neither the fit nor the report uses a
query the head has seen (one head per removal and direction). `A&D transductive` is the head
`attrib train` makes from all of tvs-dev-content.csv (every query, every source, the removed
ones too), as benchmarks/spaces_tvs.py does: it has seen the reported queries, so it flatters.
A head left in --out without today's query-view default is retrained.

Queries are embedded as the service embeds them (app/attribution.py: query_vector): with a head's
query views, the mean over the clean view and the views (Embedder.embed_queries, as `attrib eval`);
sources from their clean view. check_service_path compares this with the service's functions on a
few queries before anything is reported.

Usage (repository root; features are cached, see docs/calibration.md for timings):
  .venv/bin/python benchmarks/calibration.py [--out var/benchmarks/calibration] [--png docs/calibration-reliability.png] [--cache-dir var/feature-cache]
Writes results.json and table.md under --out and the reliability diagram at --png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.calibration_report import format_table, plot, summary_table  # noqa: E402
from benchmarks.tvs_compare import alternate, content_class  # noqa: E402
from training import train  # noqa: E402
from training.calibration import WINDOW, fit, group_max, predict, ranked  # noqa: E402
from training.config import HeadConfig, default_cache_dir  # noqa: E402
from training.data import read_manifest  # noqa: E402
from training.encoders import load_encoder  # noqa: E402
from training.evaluate import Embedder  # noqa: E402
from training.reliability import BINS, auroc, expected_calibration_error  # noqa: E402
from training.selffit import edited_copy, pick, self_fit_data  # noqa: E402

SHARED = Path(os.environ.get("ATTRIB_SHARED_DATA", REPO.parent / "shared" / "data"))
MANIFEST = SHARED / "tvs-dev-content.csv"
REMOVALS = {"even": 0, "odd": 1}
GALLERIES = {"sources": False, "sources + distractor concepts": True}


def number(concept: str) -> int:
    return int(re.search(r"(\d+)$", concept).group(1))


class Setup:
    """One removal: the gallery, its concept codes, the queries and their truth."""

    def __init__(self, rows: list, removal: str, distractor_concepts: bool):
        self.removal = removal
        classes = sorted({content_class(r.concept) for r in rows if r.role != "distractor"})
        half_of = {c: "A" if i < len(classes) // 2 else "B" for i, c in enumerate(classes)}
        gone = {r.concept for r in rows if r.role == "source" and number(r.concept) % 2 == REMOVALS[removal]}
        self.sources = [r for r in rows if r.role == "source" and r.concept not in gone]
        self.distractors = [r for r in rows if r.role == "distractor"]
        self.queries = [r for r in rows if r.role == "query"]
        names = sorted({r.concept for r in self.sources})
        code = {name: i for i, name in enumerate(names)}
        extra = self.distractors if distractor_concepts else []  # else they belong to no concept (README)
        self.gallery = [r.path for r in self.sources] + [r.path for r in extra]
        self.codes = np.array([code[r.concept] for r in self.sources] + list(range(len(names), len(names) + len(extra))))
        self.concepts = len(names) + len(extra)
        parity = alternate(self.queries)
        self.odd = np.array([parity[r.path] == 1 for r in self.queries])
        self.truth = np.array([code.get(r.concept, -1) for r in self.queries])
        self.half = np.array([half_of[content_class(r.concept)] for r in self.queries])

    def training_manifest(self, fitted: str, path: Path) -> Path:
        """Gallery plus the fitted half's even queries as the pool (its odd ones fit the calibration)."""
        pool = [r for r, h, odd in zip(self.queries, self.half, self.odd) if h == fitted and not odd]
        lines = ["path,role,concept"] + [f"{r.path.resolve()},{r.role},{r.concept}" for r in pool + self.sources + self.distractors]
        path.write_text("\n".join(lines) + "\n")
        return path


def concept_matrix(setup: Setup, embedder: Embedder, encoder, paths: list[Path], label: str) -> np.ndarray:
    """Sources from their clean view; queries as the service embeds them (`app.attribution.query_vector`):
    the mean over the clean view and the head's query views when it has them (`Embedder.embed_queries`)."""
    gallery = embedder.embed(encoder, setup.gallery, f"{label} gallery")
    queries = embedder.embed_queries(encoder, paths, f"{label} queries")
    return group_max(queries @ gallery.T, setup.codes, setup.concepts)


def current_head(ckpt: Path) -> bool:
    """True if `ckpt` exists and was trained with today's `attrib train` query-view default (an older
    checkpoint left in --out, e.g. from before query views, is retrained)."""
    if not ckpt.is_file():
        return False
    return load_encoder(str(ckpt)).query_views[0] == HeadConfig().query_views


def check_service_path(embedder: Embedder, encoder, ckpt: Path, paths: list[Path]) -> None:
    """The benchmark's query vectors are the service's: `query_view_features` + `Head.apply_query`
    (what `app.attribution.query_vector` does), checked on a few queries."""
    import hashlib

    from PIL import Image

    from training.heads import load_head
    from training.query_views import query_view_features

    head = load_head(ckpt, encoder.backbone_id, encoder.feature_dim)
    count, augment = head.query_views
    assert count > 0, f"{ckpt} has no query views"
    clean = embedder.features(encoder, paths, "service check")
    views = np.stack([query_view_features(encoder, Image.open(p).convert("RGB"), hashlib.sha256(p.read_bytes()).hexdigest(),
                                          count, augment) for p in paths])
    service = head.apply_query(clean, views)
    ours = embedder.embed_queries(encoder, paths, "service check")
    gap = float(np.abs(service - ours).max())
    assert gap < 1e-4, f"benchmark query vectors differ from the service's by {gap}"
    print(f"query vectors match the service path ({len(paths)} queries, {count} views, max |diff| {gap:.1e})")


def metrics(calibration, scores: np.ndarray, truth: np.ndarray) -> dict:
    data = ranked(scores, truth)
    listed, none, _ = predict(calibration, data.scores, data.concepts)
    gone, correct = truth < 0, data.truth == 1
    s = data.scores
    return {
        "queries": int(len(truth)), "gone": int(gone.sum()),
        "none_auroc": auroc(none, gone), "top1_ece": expected_calibration_error(listed[:, 0], correct),
        "top1_accuracy_present": float(correct[~gone].mean()), "mean_top1_probability": float(listed[:, 0].mean()),
        "mean_none_present": float(none[~gone].mean()), "mean_none_gone": float(none[gone].mean()),
        "auroc_minus_s1": auroc(-s[:, 0], gone), "auroc_minus_gap": auroc(-(s[:, 0] - s[:, 1]), gone),
        "_confidence": listed[:, 0].tolist(), "_correct": correct.tolist(), "_none": none.tolist(), "_gone": gone.tolist(),
    }


def label_fitted(setup: Setup, scores: np.ndarray, fitted: str, reported: str, label: str, odd_only: bool) -> dict:
    f, r = (setup.half == fitted) & (setup.odd if odd_only else True), setup.half == reported
    calibration = fit(ranked(scores[f], setup.truth[f]), label, "manifest", f"half {fitted}")
    return metrics(calibration, scores[r], setup.truth[r]) | {"params": calibration.params}


def self_fitted(setup: Setup, embedder: Embedder, encoder, copy_features, label: str) -> object:
    """The product's label-free catalog fit, on this gallery with this encoder."""
    pairs, copies = pick(setup.codes)
    gallery = embedder.embed(encoder, setup.gallery, f"{label} gallery")
    pair_scores = gallery[pairs] @ gallery.T
    pair_scores[np.arange(len(pairs)), pairs] = -np.inf  # the pair query's own image is left out
    import torch

    with torch.inference_mode():
        copies_embedded = encoder.project(torch.from_numpy(copy_features(copies))).float().numpy()
    copy_scores = copies_embedded @ gallery.T
    data = self_fit_data(group_max(pair_scores, setup.codes, setup.concepts), setup.codes[pairs],
                         group_max(copy_scores, setup.codes, setup.concepts), setup.codes[copies])
    return fit(data, label, "catalog", "gallery")


class Copies:
    """Backbone features of edited copies of gallery images (one forward each, kept in memory)."""

    def __init__(self, backbone):
        self.backbone, self.cache = backbone, {}

    def for_setup(self, setup: Setup):
        def features(indices: np.ndarray) -> np.ndarray:
            import hashlib

            from PIL import Image

            todo = [setup.gallery[i] for i in indices if setup.gallery[i] not in self.cache]
            images = [edited_copy(Image.open(p).convert("RGB"), hashlib.sha256(p.read_bytes()).hexdigest(),
                                  self.backbone.spec.input_size) for p in todo]
            if images:
                self.cache.update(zip(todo, self.backbone.embed_features(images)))
            return np.stack([self.cache[setup.gallery[i]] for i in indices]).astype(np.float32)
        return features


def run(out: Path, cache_dir: Path) -> dict:
    rows = read_manifest(MANIFEST)
    embedder = Embedder(cache_dir)
    raw = load_encoder("default")
    copies = Copies(raw)
    transductive = out / "transductive.pt"
    if not current_head(transductive):
        train.main([str(MANIFEST), "--output", str(transductive), "--cache-dir", str(cache_dir)])
    results = []
    for removal in REMOVALS:
        for fitted, reported in (("A", "B"), ("B", "A")):
            ckpt = out / f"ad-{removal}-pool{fitted}even.pt"
            if not current_head(ckpt):
                manifest = Setup(rows, removal, True).training_manifest(fitted, out / f"train-{removal}-pool{fitted}even.csv")
                train.main([str(manifest), "--output", str(ckpt), "--cache-dir", str(cache_dir)])
            encoders = {"raw": raw, "A&D": load_encoder(str(ckpt)), "A&D transductive": load_encoder(str(transductive))}
            if not results:
                check_service_path(embedder, encoders["A&D"], ckpt, [r.path for r in rows if r.role == "query"][:3])
            for gallery, distractor_concepts in GALLERIES.items():
                setup = Setup(rows, removal, distractor_concepts)
                queries = [r.path for r in setup.queries]
                for label, encoder in encoders.items():
                    scores = concept_matrix(setup, embedder, encoder, queries, label)
                    row = {"gallery": gallery, "encoder": label, "removal": removal, "fitted": fitted, "reported": reported}
                    odd_only = label == "A&D"  # its pool was the fitted half's even queries
                    results.append(row | {"fit": "labelled half"}
                                   | label_fitted(setup, scores, fitted, reported, label, odd_only))
                    calibration = self_fitted(setup, embedder, encoder, copies.for_setup(setup), label)
                    r = setup.half == reported
                    results.append(row | {"fit": "catalog self-fit", "fitted": "-"}
                                   | metrics(calibration, scores[r], setup.truth[r]) | {"params": calibration.params})
    return {"window": WINDOW, "bins": BINS, "rows": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "benchmarks" / "calibration")
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "calibration-reliability.png")
    parser.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default: the training default)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = run(args.out, args.cache_dir or default_cache_dir())
    plot(report, args.png)
    public = {**report, "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in report["rows"]]}
    (args.out / "results.json").write_text(json.dumps(public, indent=2) + "\n")
    table = summary_table(report) + "\n\n" + format_table(report)
    (args.out / "table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
