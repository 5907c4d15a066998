"""The comparison table of docs/training.md: raw backbone vs unsupervised A&D (alignment only,
infomax only, both) vs the supervised baseline, on the texture-vs-shape dev data.

Protocol (issue 4): the 8 content classes of tvs-dev-content.csv are split 4/4 (alphabetical:
A = first four, B = last four). For each tested half H:
  - unsupervised encoders train WITHOUT labels on H's images (queries and sources) plus the
    distractors as negatives (transductive, as in the paper);
  - the supervised baseline trains on the OTHER half's labelled (query, source) pairs;
  - everything is evaluated on H's content manifest (full gallery: H's sources + 1,000
    distractors) and on the whole tvs-dev-style.csv.

Usage (from the repository root):
  .venv/bin/python benchmarks/tvs_compare.py --out var/benchmarks/tvs [--halves A B] [--steps N]
Writes split manifests, checkpoints, results.json and table.md under --out; prints the table.
Backbone features are cached (default $ATTRIB_HOME/feature-cache or ./var/feature-cache), so a
rerun only trains heads.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training import evaluate, train  # noqa: E402
from training.data import read_manifest  # noqa: E402

SHARED = Path(os.environ.get("ATTRIB_SHARED_DATA", REPO.parent / "shared" / "data"))
VARIANTS = {  # label: (checkpoint name, flags)
    "A&D align only": ("align", ["--infomax-weight", "0"]),
    "A&D infomax only": ("infomax", ["--align-weight", "0"]),
    "A&D align + infomax": ("ad", []),
}


def content_class(concept: str) -> str:
    return re.sub(r"\d+$", "", concept)


def write_splits(out: Path) -> dict[str, Path]:
    """content-A.csv / content-B.csv: one half's queries and sources plus every distractor."""
    rows = read_manifest(SHARED / "tvs-dev-content.csv")
    classes = sorted({content_class(r.concept) for r in rows if r.role != "distractor"})
    halves = {"A": set(classes[: len(classes) // 2]), "B": set(classes[len(classes) // 2 :])}
    paths = {}
    for name, keep in halves.items():
        lines = ["path,role,concept"] + [
            f"{r.path.resolve()},{r.role},{r.concept}"
            for r in rows if r.role == "distractor" or content_class(r.concept) in keep
        ]
        paths[name] = out / f"content-{name}.csv"
        paths[name].write_text("\n".join(lines) + "\n")
        print(f"half {name}: {', '.join(sorted(keep))}", file=sys.stderr)
    return paths


def train_half(tested: str, splits: dict[str, Path], out: Path, common: list[str]) -> dict[str, Path]:
    """Checkpoints for one tested half, by table label."""
    other = next(h for h in splits if h != tested)
    checkpoints = {}
    for label, (name, flags) in VARIANTS.items():
        ckpt = out / f"{tested}-{name}.pt"
        train.main([str(splits[tested]), "--output", str(ckpt), *common, *flags])
        checkpoints[label] = ckpt
    ckpt = out / f"{tested}-supervised.pt"
    train.main(["--supervised", str(splits[other]), "--output", str(ckpt), *common])
    checkpoints[f"supervised (Wang et al.), trained on half {other}"] = ckpt
    return checkpoints


def evaluate_half(tested: str, splits: dict[str, Path], checkpoints: dict[str, Path], cache: list[str]) -> dict:
    encoders = ["raw backbone=default"] + [f"{label}={ckpt}" for label, ckpt in checkpoints.items()]
    argv = [str(splits[tested]), str(SHARED / "tvs-dev-style.csv"), *cache]
    args = evaluate.build_parser().parse_args(argv + [x for e in encoders for x in ("--encoder", e)])
    results = evaluate.run(args)
    for label, ckpt in checkpoints.items():
        sidecar = json.loads(Path(f"{ckpt}.config.json").read_text())
        results[label]["timing"] = {k: sidecar[k] for k in ("feature_seconds", "train_seconds")}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "benchmarks" / "tvs")
    parser.add_argument("--halves", nargs="+", default=["A", "B"], choices=["A", "B"])
    parser.add_argument("--cache-dir", type=Path, help="feature cache (default: the training default)")
    parser.add_argument("--train-arg", action="append", default=[], help="extra flag for every `attrib train` run")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = ["--cache-dir", str(args.cache_dir)] if args.cache_dir else []
    splits = write_splits(args.out)
    report = {}
    for half in args.halves:
        started = time.perf_counter()
        checkpoints = train_half(half, splits, args.out, cache + args.train_arg)
        report[half] = evaluate_half(half, splits, checkpoints, cache)
        print(f"half {half}: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    tables = [f"### Tested half {half}\n\n{evaluate.format_compare(results)}\n\n{timing_lines(results)}" for half, results in report.items()]
    (args.out / "table.md").write_text("\n\n".join(tables) + "\n")
    print("\n\n".join(tables))
    return 0


def timing_lines(results: dict) -> str:
    lines = [f"- {label}: features {r['timing']['feature_seconds']} s, training {r['timing']['train_seconds']} s"
             for label, r in results.items() if "timing" in r]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
