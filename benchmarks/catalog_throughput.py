"""Indexing throughput and attribution latency of the catalog with the configured encoder.

    .venv/bin/python benchmarks/catalog_throughput.py --images 200 --queries 50

Indexes N photos of ../shared/data/imagenet-sample into a temporary SQLite catalog, then
attributes edited copies of some of them, and prints images/s, per-stage latency and top-1.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from app.attribution import attribute_bytes
from app.services import open_catalog
from app.settings import Settings
from index.ingest import IngestItem, ingest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-sample"


def edited(path: Path) -> bytes:
    image = Image.open(path).convert("RGB")
    w, h = image.size
    image = image.crop((int(w * 0.08), int(h * 0.12), int(w * 0.9), int(h * 0.93)))
    buffer = io.BytesIO()
    image.resize((image.width * 3 // 5, image.height * 3 // 5)).save(buffer, "JPEG", quality=70)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    photos = sorted(args.data.glob("*.jpg"))[: args.images]
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), database_url=None, device="cpu")
        started = time.perf_counter()
        catalog = open_catalog(settings)
        print(f"backbone {catalog.backbone_id} loaded in {time.perf_counter() - started:.2f}s")
        started = time.perf_counter()
        ingest(catalog, [IngestItem(p.name, p.stem, path=p) for p in photos])
        elapsed = time.perf_counter() - started
        print(f"indexed {len(photos)} images in {elapsed:.1f}s: {len(photos) / elapsed:.1f} images/s")
        report_attribution(catalog, photos[:: max(1, len(photos) // args.queries)][: args.queries])
        catalog.close()


def report_attribution(catalog, queries: list[Path]) -> None:
    stages: dict[str, list[float]] = {"decode": [], "embed": [], "search": [], "total": []}
    correct = 0
    for path in queries:
        data = edited(path)
        started = time.perf_counter()
        result = attribute_bytes(catalog, data, k=10, space="style")
        stages["total"].append((time.perf_counter() - started) * 1000)
        timings = result.timings_ms
        for stage, ms in (("decode", timings["decode"]), ("embed", timings["embed"]), ("search", timings["search"]["style"])):
            stages[stage].append(ms)
        correct += result.spaces["style"].concepts[0].concept == path.stem
    print(f"attributed {len(queries)} edited copies: top-1 {correct / len(queries):.0%}")
    for stage, values in stages.items():
        values = sorted(values)
        p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
        print(f"  {stage:<7} p50 {statistics.median(values):7.1f} ms   p95 {p95:7.1f} ms")


if __name__ == "__main__":
    main()
