"""The content recipe of issue 27 through `attrib train` and `attrib eval`: what the self-check
keeps (backbone and recipe) on a photo catalog and on the texture-vs-shape splits, against the raw
Lite0 backbone, SSCD's plain cosine (the copy space) and the previous recipe (Lite0, queries
averaged over 8 views at serving time: 9 forwards a query).

  photo-dev-content.csv   catalog-only (the 1,000 photos, no pool), and transductive (its 600
                          queries as the pool)
  tvs-dev-content.csv     the protocols of benchmarks/tvs_compare.py, both halves

For every run it prints the self-check's figures per candidate (raw, head, distilled: derived
queries of the catalog's own sources, training/check_views.py), which one was kept, and the real
mAP / R@1 of the kept head and of the previous recipe on the manifest's queries (labels are used
only here, to score).

Usage (from the repository root; features are cached, a first run extracts them for ~30 min):
  .venv/bin/python benchmarks/recipe.py [--out var/benchmarks/recipe] [--cache-dir DIR] [--only photo|tvs] [--no-previous]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from tvs_compare import PROTOCOLS, SHARED, write_splits  # noqa: E402

from training import evaluate, train  # noqa: E402
from training.self_check import weighted  # noqa: E402


def run(manifest: Path, evaluation: Path, out: Path, cache: list[str], previous: bool = True) -> dict:
    """Train with the default recipe and (unless `previous` is off) the previous one (views); score
    them and raw."""
    row = {}
    for recipe in ("auto", "views") if previous else ("auto",):
        ckpt = out / f"{manifest.stem}-{recipe}.pt"
        with contextlib.redirect_stdout(io.StringIO()):
            train.main([str(manifest), "--output", str(ckpt), "--recipe", recipe, *cache])
        row[recipe] = ckpt
    args = evaluate.build_parser().parse_args([str(evaluation), "--encoder", "raw=default", "--encoder", "copy=sscd_distilled",
                                               "--encoder", f"kept={row['auto']}", *cache]
                                              + (["--encoder", f"views={row['views']}"] if previous else []))
    results = evaluate.run(args)
    figures = {label: next(iter(r["benchmarks"].values())) for label, r in results.items()}
    sidecar = json.loads(Path(f"{row['auto']}.config.json").read_text())
    check, backbone = sidecar["recipe"], sidecar["config"]["backbone"]
    return {"figures": figures, "self_check": check.get("self_check"), "kept": f"{backbone}: {check.get('kept')}",
            "backbone_choice": sidecar.get("backbone_choice")}


def catalog_only(manifest: Path, out: Path) -> Path:
    """The manifest without its queries: a catalog-only training input."""
    path = out / f"{manifest.stem}-catalog.csv"
    lines = manifest.read_text().splitlines()
    rows = [line for line in lines[1:] if ",query," not in line]
    path.write_text("\n".join([lines[0]] + [_absolute(manifest, line) for line in rows]) + "\n")
    return path


def _absolute(manifest: Path, line: str) -> str:
    path, rest = line.split(",", 1)
    return f"{(manifest.parent / path).resolve()},{rest}"


def line(label: str, result: dict) -> str:
    f = result["figures"]
    check = result["self_check"] or {}
    cands = check.get("candidates", {})
    if check.get("kind_weights"):
        checked = "weighted by the pool: " + ", ".join(f"{n} {c['weighted_mAP']}" for n, c in cands.items())
    else:
        checked = "worst kind/mean: " + ", ".join(f"{n} {c['worst_kind']}/{c['mean_over_kinds']}" for n, c in cands.items())
    choice = result.get("backbone_choice") or {}
    weights = choice.get("kind_weights")
    across = ", ".join(f"{n} ({c['recipe']}) {weighted(c, weights) if weights else c['mean_over_kinds']}"
                       for n, c in choice.get("candidates", {}).items())
    return (f"| {label} | {f['raw']['mAP']:.1f} / {f['raw']['R@1']:.1f} | {f['copy']['mAP']:.1f} / {f['copy']['R@1']:.1f} | "
            f"{_figure(f.get('views'))} | "
            f"**{f['kept']['mAP']:.1f}** / {f['kept']['R@1']:.1f} | {result['kept']} | {across} | {checked} |")


def _figure(figures: dict | None) -> str:
    return f"{figures['mAP']:.1f} / {figures['R@1']:.1f}" if figures else "not run"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "benchmarks" / "recipe")
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--only", choices=["photo", "tvs"])
    parser.add_argument("--no-previous", dest="previous", action="store_false",
                        help="skip the previous recipe (9 forwards a query; about half of the run's time)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = ["--cache-dir", str(args.cache_dir)] if args.cache_dir else []
    lines = ["| run | raw Lite0 mAP / R@1 | SSCD plain cosine | previous recipe (9 forwards) | kept head (1 forward) | kept "
             "| self-check across backbones | self-check of the kept backbone (raw, head, distilled) |",
             "|---|---|---|---|---|---|---|---|"]
    results = {}
    if args.only != "tvs":
        photo = SHARED / "photo-dev-content.csv"
        results["photo catalog-only"] = run(catalog_only(photo, args.out), photo, args.out, cache, args.previous)
        print(line("photo catalog-only", results["photo catalog-only"]), flush=True)
        results["photo transductive"] = run(photo, photo, args.out, cache, args.previous)
        print(line("photo transductive", results["photo transductive"]), flush=True)
    if args.only != "photo":
        splits = write_splits(args.out)
        for half in ("A", "B"):
            for label, (training, evaluation) in PROTOCOLS.items():
                key = f"tvs {half} {label.split(' (')[0]}"
                results[key] = run(splits[half][training], splits[half][evaluation], args.out, cache, args.previous)
                print(line(key, results[key]), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = "\n".join(lines + [line(k, r) for k, r in results.items()])
    (args.out / "table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
