"""The comparison table of docs/training.md: raw backbone, the unsupervised A&D encoder under the
protocols of issue 8, the transductive setting and the supervised baseline, on the
texture-vs-shape dev data.

Split: the 8 content classes of tvs-dev-content.csv are split 4/4 (alphabetical: A = first four,
B = last four); within a concept, queries sorted by path alternate between an "even" and an "odd"
half. For each tested half H (G is the other half), the catalog is H's sources plus the 1,000
distractors, and every A&D run trains WITHOUT labels on it plus:
  - catalog-only: nothing else; evaluated on all of H's queries;
  - pool, same concepts: H's even queries as the pool; evaluated on H's odd queries;
  - pool, new concepts: all of G's queries as the pool; evaluated on all of H's queries;
  - transductive: all of H's queries as the pool, then evaluated on the same queries;
the supervised baseline trains on G's labelled (query, source) pairs. Evaluation ranks the full
gallery (H's sources + distractors); style mAP is on the whole tvs-dev-style.csv.

Usage (from the repository root):
  .venv/bin/python benchmarks/tvs_compare.py --out var/benchmarks/tvs [--halves A B] [--train-arg=--steps=N] [--no-supervised]
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
from training.data import ManifestRow, read_manifest  # noqa: E402

SHARED = Path(os.environ.get("ATTRIB_SHARED_DATA", REPO.parent / "shared" / "data"))
# row label: (training manifest, evaluation manifest); manifests are named in write_splits
PROTOCOLS = {
    "catalog-only": ("catalog", "all"),
    "pool, same concepts": ("pool-same", "odd"),
    "pool, new concepts": ("pool-new", "all"),
    "transductive (trained on the test queries)": ("transductive", "all"),
}


def content_class(concept: str) -> str:
    return re.sub(r"\d+$", "", concept)


def alternate(queries: list[ManifestRow]) -> dict[Path, int]:
    """0 (even) or 1 (odd): each concept's queries, sorted by path, alternate."""
    seen: dict[str, int] = {}
    parity = {}
    for row in sorted(queries, key=lambda r: str(r.path)):
        parity[row.path] = seen.get(row.concept, 0) % 2
        seen[row.concept] = seen.get(row.concept, 0) + 1
    return parity


def write_splits(out: Path) -> dict[str, dict[str, Path]]:
    """Per half, the training and evaluation manifests of every protocol (absolute paths)."""
    rows = read_manifest(SHARED / "tvs-dev-content.csv")
    classes = sorted({content_class(r.concept) for r in rows if r.role != "distractor"})
    halves = {"A": set(classes[: len(classes) // 2]), "B": set(classes[len(classes) // 2 :])}
    parity = alternate([r for r in rows if r.role == "query"])
    distractors = [r for r in rows if r.role == "distractor"]
    paths: dict[str, dict[str, Path]] = {}
    for name, keep in halves.items():
        mine = [r for r in rows if r.role != "distractor" and content_class(r.concept) in keep]
        other = [r for r in rows if r.role == "query" and content_class(r.concept) not in keep]
        sources = [r for r in mine if r.role == "source"]
        queries = [r for r in mine if r.role == "query"]
        sets = {
            "all": queries, "odd": [r for r in queries if parity[r.path]],
            "catalog": [], "pool-same": [r for r in queries if not parity[r.path]], "pool-new": other, "transductive": queries,
        }
        paths[name] = {}
        for kind, extra in sets.items():
            path = out / f"{name}-{kind}.csv"
            lines = ["path,role,concept"] + [f"{r.path.resolve()},{r.role},{r.concept}" for r in extra + sources + distractors]
            path.write_text("\n".join(lines) + "\n")
            paths[name][kind] = path
        print(f"half {name}: {', '.join(sorted(keep))}", file=sys.stderr)
    return paths


def train_half(tested: str, splits: dict, out: Path, common: list[str], supervised: bool = True) -> dict[str, tuple[Path, Path]]:
    """(checkpoint, evaluation manifest) for one tested half, by row label."""
    other = next(h for h in splits if h != tested)
    runs = {}
    for label, (training, evaluation) in PROTOCOLS.items():
        ckpt = out / f"{tested}-{training}.pt"
        train.main([str(splits[tested][training]), "--output", str(ckpt), *common])
        runs[label] = (ckpt, splits[tested][evaluation])
    if not supervised:
        return runs
    ckpt = out / f"{tested}-supervised.pt"
    train.main(["--supervised", str(splits[other]["transductive"]), "--output", str(ckpt), *common])
    runs[f"supervised (Wang et al.), trained on half {other}'s labels"] = (ckpt, splits[tested]["all"])
    return runs


def evaluate_half(tested: str, splits: dict, runs: dict, cache: list[str]) -> dict:
    rows = {"raw backbone": _evaluate("default", splits[tested]["all"], cache)}
    for label, (ckpt, manifest) in runs.items():
        rows[label] = _evaluate(str(ckpt), manifest, cache)
        sidecar = json.loads(Path(f"{ckpt}.config.json").read_text())
        rows[label]["timing"] = {k: sidecar[k] for k in ("feature_seconds", "train_seconds")}
        rows[label]["separation_check"] = sidecar.get("separation_check")
    return rows


def _evaluate(encoder: str, manifest: Path, cache: list[str]) -> dict:
    args = evaluate.build_parser().parse_args([str(manifest), str(SHARED / "tvs-dev-style.csv"), "--encoder", encoder, *cache])
    benchmarks = next(iter(evaluate.run(args).values()))["benchmarks"]
    content = next(v for k, v in benchmarks.items() if k != "tvs-dev-style.csv")
    return {"content": content, "style": benchmarks["tvs-dev-style.csv"], "evaluated_on": manifest.name}


def format_half(half: str, rows: dict) -> str:
    lines = [f"### Tested half {half}", "",
             "| encoder | evaluated on | content mAP | R@1 | R@10 | R@100 | style mAP | media gap (raw → head) | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        c = r["content"]
        check = r.get("separation_check") or {}
        gap = f"{check['before']['gap']:.2f} → {check['after']['gap']:.2f}" if check.get("computed") else ""
        if check.get("warning"):
            gap += " (warned)"
        seconds = r["timing"]["train_seconds"] if "timing" in r else ""
        lines.append(f"| {label} | {r['evaluated_on']} ({c['queries']} queries) | {c['mAP']:.1f} | {c['R@1']:.1f} | "
                     f"{c['R@10']:.1f} | {c['R@100']:.1f} | {r['style']['mAP']:.1f} | {gap} | {seconds} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "benchmarks" / "tvs")
    parser.add_argument("--halves", nargs="+", default=["A", "B"], choices=["A", "B"])
    parser.add_argument("--cache-dir", type=Path, help="feature cache (default: the training default)")
    parser.add_argument("--train-arg", action="append", default=[], help="extra flag for every `attrib train` run")
    parser.add_argument("--no-supervised", action="store_true", help="skip the supervised baseline (most of the run time)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = ["--cache-dir", str(args.cache_dir)] if args.cache_dir else []
    splits = write_splits(args.out)
    report = {}
    for half in args.halves:
        started = time.perf_counter()
        runs = train_half(half, splits, args.out, cache + args.train_arg, not args.no_supervised)
        report[half] = evaluate_half(half, splits, runs, cache)
        print(f"half {half}: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    tables = "\n\n".join(format_half(half, rows) for half, rows in report.items())
    (args.out / "table.md").write_text(tables + "\n")
    print(tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
