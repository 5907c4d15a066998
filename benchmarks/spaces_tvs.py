"""Content and style mAP through the catalog and the HTTP API, beside `attrib eval`'s figures.

For each dev manifest (tvs-dev-content.csv, tvs-dev-style.csv) a fresh catalog is made behind
the real app: the manifest's gallery is uploaded with POST /index (every distractor is its own
concept, so it competes as one), the A&D head is put live with PUT /spaces/content, and every
query is sent once to POST /attribute?space=all&k=100&sources=50. One backbone forward per
query answers both spaces.

mAP from the responses: the returned sources of all concepts are merged and ranked by score.
That ranking is exact down to the score of the 100th concept; a positive below it counts as
not found (AP contribution 0), so the API figure is a lower bound that equals `attrib eval`'s
when every positive ranks above the cut.

Usage (from the repository root; about 15 minutes on 2 cores from an empty feature cache):
  .venv/bin/python benchmarks/spaces_tvs.py [--head CKPT] [--out var/benchmarks/spaces] [--content MANIFEST] [--cache-dir DIR]
Without --head, an A&D head is trained first with `attrib train` on tvs-dev-content.csv's
images, without labels and transductively (the queries are among its training images).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402

from app.main import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from index.auth import create_key  # noqa: E402
from training import evaluate, train  # noqa: E402
from training.data import read_manifest  # noqa: E402

SHARED = Path(os.environ.get("ATTRIB_SHARED_DATA", REPO.parent / "shared" / "data"))
MANIFESTS = {"content": SHARED / "tvs-dev-content.csv", "style": SHARED / "tvs-dev-style.csv"}
K, PER_CONCEPT, UPLOAD_BATCH = 100, 50, 48


def concept_of(row) -> str:
    return f"distractor:{row.path.stem}" if row.role == "distractor" else row.concept


def index_gallery(client: TestClient, auth: dict, rows: list) -> dict[int, str]:
    """Upload the gallery; returns {source id: concept}."""
    gallery = [r for r in rows if r.role != "query"]
    concepts: dict[int, str] = {}
    for start in range(0, len(gallery), UPLOAD_BATCH):
        batch = gallery[start:start + UPLOAD_BATCH]
        files = [("files", (f"{i:05d}-{r.path.name}", r.path.read_bytes())) for i, r in enumerate(batch, start)]
        response = client.post("/index", files=files, data={"concept": [concept_of(r) for r in batch]}, headers=auth)
        response.raise_for_status()
        for result in response.json()["results"]:
            concepts[result["source_id"]] = result["concept"]
    return concepts


def put_head(client: TestClient, auth: dict, head: Path) -> None:
    response = client.put("/spaces/content", files={"checkpoint": ("head.pt", head.read_bytes())}, headers=auth)
    response.raise_for_status()
    while (job := client.get(response.headers["location"], headers=auth).json())["state"] in ("queued", "running"):
        time.sleep(0.2)
    if job["state"] != "succeeded":
        raise SystemExit(f"putting the head live failed: {job['error']}")


def average_precision(block: dict, positive: str, n_positives: int) -> float:
    """AP of one space's answer: sources merged and ranked by score, cut at the k-th concept."""
    concepts = block["concepts"]
    cut = concepts[-1]["score"] if len(concepts) == K else -2.0
    ranked = sorted(((s["score"], c["concept"]) for c in concepts for s in c["sources"]), key=lambda x: -x[0])
    found, total = 0, 0.0
    for rank, (score, concept) in enumerate(ranked, 1):
        if score < cut:
            break
        if concept == positive:
            found += 1
            total += found / rank
    return 100.0 * total / n_positives


def query_all(client: TestClient, rows: list, gallery_counts: dict[str, int]) -> dict[str, float]:
    """mAP per space over every query of the manifest, plus mean timings."""
    aps: dict[str, list[float]] = {}
    embed, search = [], {}
    for row in (r for r in rows if r.role == "query"):
        response = client.post("/attribute", files={"file": (row.path.name, row.path.read_bytes())},
                               params={"space": "all", "k": K, "sources": PER_CONCEPT})
        response.raise_for_status()
        body = response.json()
        embed.append(body["timings_ms"]["embed"])
        for name, block in body["spaces"].items():
            aps.setdefault(name, []).append(average_precision(block, row.concept, gallery_counts[row.concept]))
            search.setdefault(name, []).append(body["timings_ms"]["search"][name])
    result = {f"{name} space mAP": float(np.mean(values)) for name, values in aps.items()}
    result["embed ms (once per query)"] = float(np.median(embed))
    result |= {f"search ms, {name}": float(np.median(values)) for name, values in search.items()}
    return result


def through_api(bench: str, head: Path, home: Path) -> dict:
    rows = read_manifest(MANIFESTS[bench])
    counts: dict[str, int] = {}
    for r in rows:
        if r.role == "source":
            counts[r.concept] = counts.get(r.concept, 0) + 1
    settings = Settings(home=home, database_url=None, device="cpu", async_batch_files=UPLOAD_BATCH)
    with TestClient(create_app(settings)) as client:
        auth = {"X-API-Key": create_key(client.app.state.catalog.sessions, "benchmark")[1]}
        started = time.perf_counter()
        index_gallery(client, auth, rows)
        indexed = time.perf_counter() - started
        started = time.perf_counter()
        put_head(client, auth, head)
        result = {"index seconds": indexed, "head roll-out seconds": time.perf_counter() - started}
        return result | query_all(client, rows, counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", type=Path, help="A&D checkpoint for the content space (default: train one)")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "benchmarks" / "spaces")
    parser.add_argument("--content", type=Path, help="another content manifest (e.g. photo-dev-content.csv); "
                        "the style manifest is then skipped")
    parser.add_argument("--cache-dir", type=Path, help="feature cache of `attrib train` and `attrib eval`")
    args = parser.parse_args(argv)
    cache = ["--cache-dir", str(args.cache_dir)] if args.cache_dir else []
    if args.content:
        MANIFESTS.clear()
        MANIFESTS["content"] = args.content
    args.out.mkdir(parents=True, exist_ok=True)
    head = args.head or args.out / "content-head.pt"
    if args.head is None and not head.is_file():
        train.main([str(MANIFESTS["content"]), "--output", str(head), *cache])
    eval_args = evaluate.build_parser().parse_args(
        [str(m) for m in MANIFESTS.values()] + ["--encoder", "raw=default", "--encoder", f"A&D head={head}", *cache])
    evaluated = evaluate.run(eval_args)
    report = {"eval": evaluated, "api": {}}
    for bench in MANIFESTS:
        home = args.out / f"catalog-{bench}"
        shutil.rmtree(home, ignore_errors=True)
        report["api"][bench] = through_api(bench, head, home)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    return 0


def format_report(report: dict) -> str:
    names = {bench: path.name for bench, path in MANIFESTS.items()}
    lines = ["| benchmark | `attrib eval` raw | `attrib eval` A&D head | API, style space | API, content space |",
             "|---|---|---|---|---|"]
    for bench, api in report["api"].items():
        raw, head = (report["eval"][label]["benchmarks"][names[bench]]["mAP"] for label in ("raw", "A&D head"))
        lines.append(f"| {bench} mAP | {raw:.1f} | {head:.1f} | {api['style space mAP']:.1f} | "
                     f"{api['content space mAP']:.1f} |")
    for bench, api in report["api"].items():
        extras = ", ".join(f"{k} {v:.1f}" for k, v in api.items() if "mAP" not in k)
        lines.append(f"\n{bench}: {extras}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
