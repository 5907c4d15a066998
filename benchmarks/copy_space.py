"""Issue 23's figures: the copy space (SSCD distilled) beside Lite0, through `attrib eval`, and
through the catalog and HTTP API of the default service (`make run`'s configuration: SQLite,
FAISS Flat, ATTRIB_COPY_BACKBONE=sscd_distilled), on the photo and style dev manifests.

- `attrib eval`: `copy=sscd_distilled` (the copy space's model and input, plain cosine) and
  `lite0=default`; beside them, in the same run, SSCD distilled on a square 288-px resize, plain
  cosine: how ../shared/data/README.md measured its reference figures.
- The API: for each manifest a fresh catalog behind the real app; the gallery goes in with
  POST /index (every distractor its own concept), every query once to POST /attribute?k=100
  &sources=50. Per space: mAP from the merged returned sources (a lower bound, exact down to the
  100th concept: benchmarks/spaces_tvs.py), R@1 as `attrib eval` counts it (the top source is
  a positive, over the number of positives), and the DISC21 figures from each query's top-1
  concept and its score (training/copy_metrics.py; exact). No training anywhere.

Usage (from the repository root; about 10 minutes on 2 cores):
  .venv/bin/python benchmarks/copy_space.py [--out var/benchmarks/copy]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastapi.testclient import TestClient  # noqa: E402
from spaces_tvs import K, PER_CONCEPT, SHARED, average_precision, index_gallery  # noqa: E402

from app.main import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from index.auth import create_key  # noqa: E402
from training import evaluate  # noqa: E402
from training.benchmarks import manifest_benchmark  # noqa: E402
from training.copy_metrics import copy_detection  # noqa: E402
from training.data import read_manifest  # noqa: E402
from training.images import decode_image  # noqa: E402
from training.ranking import score_matrix  # noqa: E402
from training.sscd import CopyBackbone  # noqa: E402

MANIFESTS = ["photo-dev-content.csv", "photo-dev-none.csv", "tvs-dev-style.csv"]
FIGURES = ("mAP", "R@1", "µAP", "R@P90", "none_AUROC")


def reference_288(name: str) -> dict:
    """SSCD distilled on a square 288-px resize, plain cosine: how ../shared/data/README.md measured it."""
    bench = manifest_benchmark(SHARED / name, "full")
    model = CopyBackbone("sscd_distilled", size=288)
    embed = {}
    for path in dict.fromkeys(list(bench.queries) + list(bench.gallery)):
        image = decode_image(path.read_bytes()).image.resize((288, 288), Image.Resampling.BILINEAR)
        embed[path] = model.features_of_pixels([np.asarray(image, dtype=np.uint8)])[0]
    unit = {p: v / np.linalg.norm(v) for p, v in embed.items()}
    scores = score_matrix(np.stack([unit[p] for p in bench.queries]), np.stack([unit[p] for p in bench.gallery]))
    return evaluate.evaluate_scores(bench, scores)


def through_api(name: str, home: Path) -> dict:
    rows = read_manifest(SHARED / name)
    counts: dict[str, int] = {}
    for row in rows:
        if row.role == "source":
            counts[row.concept] = counts.get(row.concept, 0) + 1
    settings = Settings(home=home, database_url=None, device="cpu", async_batch_files=48)
    with TestClient(create_app(settings)) as client:
        auth = {"X-API-Key": create_key(client.app.state.catalog.sessions, "benchmark")[1]}
        started = time.perf_counter()
        index_gallery(client, auth, rows)
        result = {"index seconds": time.perf_counter() - started}
        return result | query_all(client, [r for r in rows if r.role == "query"], counts)


def query_all(client: TestClient, queries: list, counts: dict[str, int]) -> dict:
    aps, recall1, top1, embed = {}, {}, {}, {}
    for row in queries:
        response = client.post("/attribute", files={"file": (row.path.name, row.path.read_bytes())},
                               params={"k": K, "sources": PER_CONCEPT})
        response.raise_for_status()
        body = response.json()
        for backbone, ms in body["timings_ms"]["embed_backbones"].items():
            embed.setdefault(backbone, []).append(ms)
        for space, block in body["spaces"].items():
            if not block["available"]:
                continue
            best = block["concepts"][0]
            top1.setdefault(space, []).append((best["score"], best["concept"] == row.concept, row.concept in counts))
            if row.concept in counts:
                aps.setdefault(space, []).append(average_precision(block, row.concept, counts[row.concept]))
                recall1.setdefault(space, []).append(100 * (best["concept"] == row.concept) / counts[row.concept])
    result = {"embed ms, median": {backbone: float(np.median(ms)) for backbone, ms in embed.items()}}
    for space, predictions in top1.items():
        confidence, correct, sourced = (np.array(column) for column in zip(*predictions))
        result[space] = {"mAP": float(np.mean(aps[space])), "R@1": float(np.mean(recall1[space]))}
        result[space] |= copy_detection(confidence, correct, sourced)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "benchmarks" / "copy")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    eval_args = evaluate.build_parser().parse_args(
        [str(SHARED / m) for m in MANIFESTS] + ["--encoder", "copy=sscd_distilled", "--encoder", "lite0=default"])
    report = {"eval": evaluate.run(eval_args), "sscd_288": {m: reference_288(m) for m in MANIFESTS[:2]}, "api": {}}
    for name in MANIFESTS:
        home = args.out / f"catalog-{Path(name).stem}"
        shutil.rmtree(home, ignore_errors=True)
        report["api"][name] = through_api(name, home)
        shutil.rmtree(home, ignore_errors=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(format_report(report))
    return 0


def format_report(report: dict) -> str:
    lines = ["| manifest | measured by | " + " | ".join(FIGURES) + " |", "|---|---|" + "---|" * len(FIGURES)]

    def row(name: str, label: str, figures: dict) -> None:
        cells = ["-" if f not in figures else f"{figures[f]:.3f}" if f == "none_AUROC" else f"{figures[f]:.1f}"
                 for f in FIGURES]
        lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")

    for name in MANIFESTS:
        if name in report["sscd_288"]:
            row(name, "SSCD distilled 288 px, plain cosine (reference)", report["sscd_288"][name])
        for label in ("copy", "lite0"):
            row(name, f"`attrib eval --encoder {label}=...`", report["eval"][label]["benchmarks"][name])
        for space in ("copy", "style"):
            row(name, f"API, default service, `{space}` space", report["api"][name][space])
    for name in MANIFESTS:
        api = report["api"][name]
        lines.append(f"\n{name}: indexed in {api['index seconds']:.0f} s; embed ms per query (median) "
                     + ", ".join(f"{k} {v:.1f}" for k, v in api["embed ms, median"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
