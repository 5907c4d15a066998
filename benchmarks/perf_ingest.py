"""perf.py section `ingest`: `attrib index` end to end against the bare batched forward.

In one run, interleaved round by round: the configured engine's bare forward over preprocessed
pixels at each batch size, and ingestion of the same JPEG files from disk into a fresh SQLite
catalog (decode, duplicate check, forward, rows, blobs, features, vectors, committed and saved),
for each batch size, decoding in a pool of threads and in the ingesting thread. The bare forward
runs the engine at exactly each batch size; ingestion runs its batches as the service does, in
engine forwards of at most ATTRIB_ENGINE_BATCH images. Also measured:
the CPU time per image of decoding + cropping and of the forward, which bound the ratio on a
machine whose cores the forward already fills: forward / (forward + decode).
Target (issue 10): ingestion ≥ 0.9× the best bare forward.
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


def add_arguments(parser) -> None:
    group = parser.add_argument_group("ingest")
    group.add_argument("--ingest-images", type=int, default=256, help="JPEG files ingested per trial")
    group.add_argument("--ingest-batches", default="4,8,32", help="batch sizes (ATTRIB_BATCH_SIZE) to ingest with")
    group.add_argument("--ingest-rounds", type=int, default=2, help="rounds; the best of each is kept")


def run(args) -> tuple[dict, str]:
    from training.encoders import load_encoder

    paths = sorted(args.data.glob("*.jpg"))[: args.ingest_images]
    engine_cache = Path(tempfile.mkdtemp(prefix="attrib-perf-engines-"))
    encoder = load_encoder("default", device="cpu", engine=os.environ.get("ATTRIB_ENGINE", "auto"),
                           engine_cache=engine_cache)
    batches = [int(b) for b in args.ingest_batches.split(",")]
    workers = min(4, os.cpu_count() or 1)
    variants = [(b, w) for b in batches for w in (workers, 0)]
    bare: dict[int, float] = {}
    ingested: dict[tuple[int, int], float] = {}
    cpu_ms: dict[tuple[int, int], float] = {}
    pixels = _pixels(encoder, paths)
    for round_ in range(args.ingest_rounds):
        for batch in batches[round_ % len(batches):] + batches[: round_ % len(batches)]:
            bare[batch] = max(bare.get(batch, 0.0), _bare_forward(encoder, pixels, batch))
        for batch, count in variants[round_ % len(variants):] + variants[: round_ % len(variants)]:
            rate, cpu = _ingest(encoder, paths, batch, count)
            if rate > ingested.get((batch, count), 0.0):
                ingested[(batch, count)], cpu_ms[(batch, count)] = rate, round(cpu, 2)
    best = max(bare.values())
    cost = _cpu_costs(encoder, paths[:64], pixels[:64], max(bare, key=bare.get))
    result = {
        "engine": encoder.engine_name, "images": len(paths), "decode_workers": workers,
        "bare_img_s": {b: round(v, 1) for b, v in sorted(bare.items())}, "best_bare_img_s": round(best, 1),
        "ingest_img_s": {f"batch {b}, workers {w}": round(v, 1) for (b, w), v in ingested.items()},
        "ratio": {f"batch {b}, workers {w}": round(v / best, 3) for (b, w), v in ingested.items()},
        "ingest_cpu_ms_per_image": {f"batch {b}, workers {w}": v for (b, w), v in cpu_ms.items()},
        "cpu_ms_per_image": cost, "bound": round(cost["forward"] / (cost["forward"] + cost["decode_crop"]), 3),
    }
    shutil.rmtree(engine_cache, ignore_errors=True)
    return result, table(result)


def _pixels(encoder, paths):
    import numpy as np

    from index.prepare import prepare_file

    crops = [prepare_file(path, encoder.preprocess, 10**9).pixels for path in paths]
    return encoder.preprocess.normalize_batch(np.stack(crops))


@contextmanager
def whole_batches(encoder):
    """The bare forward is the engine at exactly the batch size asked: no ATTRIB_ENGINE_BATCH parts."""
    previous, encoder.engine_batch = encoder.engine_batch, 2**31
    try:
        yield
    finally:
        encoder.engine_batch = previous


def _bare_forward(encoder, pixels, batch: int) -> float:
    import torch

    with torch.inference_mode(), whole_batches(encoder):
        encoder.features(pixels[:batch])
        started = time.perf_counter()
        for start in range(0, len(pixels), batch):
            encoder.features(pixels[start:start + batch])
    return len(pixels) / (time.perf_counter() - started)


def _ingest(encoder, paths, batch: int, workers: int) -> float:
    from index.catalog import Catalog, CatalogConfig
    from index.ingest import IngestItem, ingest

    home = Path(tempfile.mkdtemp(prefix="attrib-perf-ingest-"))
    try:
        config = CatalogConfig(home, f"sqlite:///{home / 'attrib.db'}", batch_size=batch, decode_workers=workers)
        catalog = Catalog(config, encoder)
        catalog.spaces()
        items = [IngestItem(path.name, path.stem, path=path) for path in paths]
        started, cpu = time.perf_counter(), _cpu()
        results = ingest(catalog, items)
        seconds, cpu = time.perf_counter() - started, _cpu() - cpu
        catalog.close()
        assert sum(r.status == "indexed" for r in results) == len(paths), "every photo must be indexed"
        return len(paths) / seconds, cpu * 1000 / len(paths)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _cpu_costs(encoder, paths, pixels, batch: int) -> dict:
    """CPU milliseconds per image, this process alone: decode + crop, and the forward."""
    import torch

    from index.prepare import prepare_file

    started = _cpu()
    for path in paths:
        prepare_file(path, encoder.preprocess, 10**9)
    decode = (_cpu() - started) * 1000 / len(paths)
    with torch.inference_mode(), whole_batches(encoder):
        started = _cpu()
        for start in range(0, len(pixels), batch):
            encoder.features(pixels[start:start + batch])
    forward = (_cpu() - started) * 1000 / len(pixels)
    return {"decode_crop": round(decode, 2), "forward": round(forward, 2)}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def table(result: dict) -> str:
    cost = result["cpu_ms_per_image"]
    lines = [(f"engine {result['engine']}, {result['images']} JPEGs; bare forward img/s by batch "
              f"{result['bare_img_s']}, best {result['best_bare_img_s']}"),
             (f"CPU per image: decode + crop {cost['decode_crop']} ms, forward {cost['forward']} ms: "
              f"with the cores full, at most {result['bound']}×"), "",
             "| ingestion | img/s | ÷ best bare forward | CPU ms per image |", "|---|---|---|---|"]
    for name, rate in result["ingest_img_s"].items():
        lines.append(f"| {name} | {rate} | {result['ratio'][name]} | {result['ingest_cpu_ms_per_image'][name]} |")
    return "\n".join(lines)
