"""Issue 24's figures: one verdict per query against each space alone, scored as DISC21 scores copy
detection (training/copy_metrics.py), through the HTTP API of the default service (SQLite, FAISS,
copy + style spaces, no training), on manifests whose queries may have no source.

For each manifest a fresh catalog behind the real app; the gallery goes in with POST /index
(every distractor its own concept), every query once to POST /attribute. Then, over all queries:
- per space, as plain cosine: top-1 concept, its score as the confidence; none score 1 - score;
- per space, calibrated: the same ranking by the concept's `probability`; none AUROC of the
  space's `none_probability`; ECE of the space's own answer (its top concept with its
  probability, or none with `none_probability`, whichever is larger);
- the verdict: confidence `verdict.probability`; none AUROC of `verdict.none_probability`; ECE of
  the verdict's probability (of `concept` for a match, of none for `none`).
micro-AP (µAP) and recall at 90 % precision (R@P90) in percent, AUROC in [0, 1], ECE in [0, 1]
(15 bins). The verdict's fit is the catalog's own (no labels), made after indexing as
`attrib index` makes it.

Then what reviewers' decisions would add: the verdict refitted, as the desk's decisions refit
does it, on the stored answers of every other query with its true label, and scored on the rest;
then the halves swap. Each half's figures are printed beside each space's on the same queries.

Texture-vs-shape (`--tvs-head CKPT`, an A&D head put live as the `content` space): two
sourceless splits of tvs-dev-content.csv, built here: the content images are sorted, and every
4th one (from the 1st in split a, from the 3rd in split b) loses its sources from the gallery, so
a quarter of the queries have no source. A head from `attrib train tvs-dev-content.csv` has seen
these queries (transductive for the content space); the verdict's fit never sees a query.

`--photo-hard` adds benchmarks/photo_hard.py's manifest (small crops, crops pasted into other
pictures, strong rotations of imagenet-sample photos; a quarter without a source).

`--evidence regions` asks every answer for matched regions (issue 26). The label-free verdict does
not read them; the decisions refit (below) gets the inlier counts too, and its halves are printed
without and with them.

Usage (from the repository root; about 5 minutes per manifest on 2 cores):
  .venv/bin/python benchmarks/verdict.py [--manifest photo-dev-none.csv ...] [--photo-hard] [--tvs-head CKPT]
      [--evidence regions] [--out var/benchmarks/verdict]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastapi.testclient import TestClient  # noqa: E402
from photo_hard import build as build_photo_hard  # noqa: E402
from spaces_tvs import SHARED, index_gallery, put_head  # noqa: E402

from app.main import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from index.auth import create_key  # noqa: E402
from index.calibration import refit_verdict  # noqa: E402
from index.calibration.verdict_decisions import DECISIONS, evidence_of, strength_of  # noqa: E402
from training.data import read_manifest  # noqa: E402
from training.reliability import BINS, auroc, expected_calibration_error, reliability_bins  # noqa: E402
from training.verdict import fit, predict  # noqa: E402
from training.verdict_metrics import claim_reliability, format_table, score_answers  # noqa: E402


def run(manifest: Path, home: Path, head: Path | None = None, evidence: str = "none") -> dict:
    rows = read_manifest(manifest)
    sourced_concepts = {r.concept for r in rows if r.role == "source"}
    settings = Settings(home=home, database_url=None, device="cpu", async_batch_files=48)
    with TestClient(create_app(settings)) as client:
        auth = {"X-API-Key": create_key(client.app.state.catalog.sessions, "benchmark")[1]}
        index_gallery(client, auth, rows)
        if head is not None:
            put_head(client, auth, head)
        catalog = client.app.state.catalog
        started = time.perf_counter()
        model = refit_verdict(catalog, catalog.spaces())
        fit_seconds = time.perf_counter() - started
        answers = [(row.concept, client.post("/attribute", params={"evidence": evidence},
                                             files={"file": (row.path.name, row.path.read_bytes())}).json())
                   for row in rows if row.role == "query"]
    truth = [concept if concept in sourced_concepts else None for concept, _ in answers]
    bodies = [body for _, body in answers]
    return {"queries": len(answers), "sourceless": sum(t is None for t in truth), "fit_seconds": round(fit_seconds, 1),
            "fit": {"chosen": model.chosen, **model.summary} if model else None,
            "verdict methods": sorted({b["verdict"]["method"] + "/" + b["verdict"]["chosen"]
                                       + ("+regions" if b["verdict"].get("read_regions") else "") for b in bodies}),
            "figures": score_answers(bodies, truth), "decided_halves": decided_halves(bodies, truth),
            "_claims": claims_of(bodies, truth)}


def decided_halves(bodies: list[dict], truth: list) -> dict:
    """What reviewers' decisions would give: the verdict refitted (as `attrib calibrate
    --from-decisions` refits it) on the stored answers of one half of the queries (every other
    one), with their true labels, then scored on the other half; and the other way round. Beside
    it, each space and the label-free verdict on the same scored half. Answers with matched
    regions are refitted twice: reading their match strength, and not."""
    spaces = sorted(name for name, block in bodies[0]["spaces"].items() if block["available"])
    examples = [{name: evidence_of(body["spaces"][name]) for name in spaces} for body in bodies]
    found = [strength_of([body["spaces"][name] for name in spaces]) for body in bodies]
    readings = {"": None} | ({" with match strength": found} if all(f is not None for f in found) else {})
    out = {}
    for half in (0, 1):
        taught = [i for i in range(len(bodies)) if i % 2 == half]
        scored = [i for i in range(len(bodies)) if i % 2 != half]
        figures = score_answers([bodies[i] for i in scored], [truth[i] for i in scored])
        for label, strengths in readings.items():
            model = fit([examples[i] for i in taught], [truth[i] for i in taught], np.arange(len(taught)), spaces,
                        DECISIONS, f"{len(taught)} decided cases", strengths=[strengths[i] for i in taught]
                        if strengths else None)
            refitted = []
            for i in scored:
                v = predict(model, examples[i], strengths[i] if strengths else None)
                refitted.append(bodies[i] | {"verdict": {"concept": v.concept, "probability": v.probability,
                                                         "none_probability": v.none_probability}})
            kept = f", {model.chosen}" + ("+regions" if model.regions else "")
            figures[f"verdict, refitted on the other half's decisions{label}{kept}"] = score_answers(
                refitted, [truth[i] for i in scored])["verdict"]
        out[f"scored on half {1 - half}"] = figures
    return out


def claims_of(bodies: list[dict], truth: list) -> dict:
    """(confidence, right, none, sourceless) per answer, for the reliability diagrams."""
    out = {}
    for label, pick in [("verdict", lambda b: b["verdict"])] + [
            (f"{s}, calibrated", lambda b, s=s: {"concept": b["spaces"][s]["concepts"][0]["concept"],
                                                 "probability": b["spaces"][s]["concepts"][0]["probability"],
                                                 "none_probability": b["spaces"][s]["none_probability"]})
            for s, block in bodies[0]["spaces"].items() if block["available"]]:
        claims = [(v["concept"], v["probability"], v["none_probability"]) for v in map(pick, bodies)]
        confidence, right = claim_reliability(claims, truth)
        out[label] = (confidence, right, np.array([n for _, _, n in claims]), np.array([t is None for t in truth]))
    return out


def tvs_splits(folder: Path) -> dict[str, Path]:
    """The two sourceless splits of tvs-dev-content.csv (see the top), as manifests in `folder`."""
    source = SHARED / "tvs-dev-content.csv"
    rows = read_manifest(source)
    concepts = sorted({r.concept for r in rows if r.role == "source"})
    out = {}
    for label, offset in (("a", 0), ("b", 2)):
        gone = set(concepts[offset::4])
        path = folder / f"tvs-dev-content-none-{label}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "role", "concept"])
            writer.writerows([r.path.resolve(), r.role, r.concept or ""] for r in rows
                             if not (r.role == "source" and r.concept in gone))
        out[path.name] = path
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", action="append", help="under ../shared/data (default: photo-dev-none.csv)")
    parser.add_argument("--photo-hard", action="store_true", help="also run benchmarks/photo_hard.py's manifest")
    parser.add_argument("--tvs-head", type=Path, help="A&D checkpoint: also run the texture-vs-shape splits with it")
    parser.add_argument("--evidence", choices=("none", "regions"), default="none",
                        help="ask every answer for matched regions (the verdict may read their strength)")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "benchmarks" / "verdict")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = [(SHARED / name, None) for name in (args.manifest or ["photo-dev-none.csv"])]
    if args.photo_hard:
        runs.append((build_photo_hard(args.out / "photo-hard"), None))
    if args.tvs_head:
        runs += [(path, args.tvs_head) for path in tvs_splits(args.out).values()]
    report = {}
    for manifest, head in runs:
        home = args.out / f"catalog-{manifest.stem}"
        shutil.rmtree(home, ignore_errors=True)
        report[manifest.name] = run(manifest, home, head, args.evidence)
        shutil.rmtree(home, ignore_errors=True)
    for name, result in report.items():
        plot(name, result.pop("_claims"), args.out / f"reliability-{Path(name).stem}.png")
    (args.out / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(format_report(report))
    return 0


def format_report(report: dict) -> str:
    lines = format_table({name: result["figures"] for name, result in report.items()})
    lines.append("\nWith reviewers' decisions on one half of the queries (each half scored on the other):")
    lines += format_table({f"{name} {half}": figures for name, result in report.items()
                           for half, figures in result["decided_halves"].items()})
    for name, result in report.items():
        lines.append(f"\n{name}: {result['queries']} queries, {result['sourceless']} without a source; verdict fit "
                     f"in {result['fit_seconds']} s: {json.dumps(result['fit'])}; answers by {result['verdict methods']}")
    return "\n".join(lines)


def plot(name: str, claims: dict, path: Path) -> None:
    """Reliability of each answer's claim (top row) and its none probability by truth (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(claims), figsize=(4 * len(claims), 7.2), squeeze=False)
    for column, (label, (confidence, right, none, sourceless)) in enumerate(claims.items()):
        bins = reliability_bins(confidence, right)
        ax = axes[0, column]
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
        ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=1 / BINS, align="edge",
               edgecolor="black", alpha=0.7)
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="black", markersize=3)
        ax.set(title=f"{label} (ECE {expected_calibration_error(confidence, right):.3f})", xlabel="claimed probability",
               ylabel="fraction right", xlim=(0, 1), ylim=(0, 1))
        ax = axes[1, column]
        ax.hist([none[~sourceless], none[sourceless]], bins=20, range=(0, 1), label=["has a source", "no source"])
        ax.set(title=f"none probability (AUROC {auroc(none, sourceless):.3f})", xlabel="none_probability",
               ylabel="queries")
        ax.legend(fontsize=8)
    fig.suptitle(f"{name}: each answer's claim (its concept, or none), through the API")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
