"""perf.py section `ingest`: `attrib index` end to end against the bare batched forward.

In one run, interleaved round by round: the configured engine's bare forward over preprocessed
pixels at each batch size, and ingestion of the same JPEG files from disk into a fresh SQLite
catalog (decode, duplicate check, forward, rows, blobs, features, vectors, committed and saved),
for each batch size, decoding in a pool of threads and in the ingesting thread. The bare forward
runs the engine at exactly each batch size; ingestion runs its batches as the service does, in
engine forwards of at most ATTRIB_ENGINE_BATCH images. Also measured:
the CPU time per image of decoding + cropping and of the forwards, which bound the ratio on a
machine whose cores the forwards already fill: forwards / (forwards + decode), before the commit's
own CPU (rows, blob files, features, vectors).
Target (issue 10): ingestion ≥ 0.9× the best bare forward.

With the copy backbone (`--ingest-copy`, by default sscd_distilled, as the service runs), ingestion
runs both backbones on every image, and the reference is the sum of both bare forwards, each at
its best batch size: 1 / (1 / best Lite0 img/s + 1 / best copy img/s). Target (issue 23): ≥ 0.8×.

On a GPU (`--ingest-device cuda`, e.g. `--ingest-encoder open_clip:ViT-B-16`, random weights): the
bare forward runs on pixels already on the device, under bf16 autocast as the service runs it, and
ingestion decodes the JPEGs on the device (nvJPEG; ATTRIB_DEVICE_DECODE=auto). The CPU costs and
their bound are measured on the CPU only. Target: ≥ 0.8× the best bare forward.
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
    group.add_argument("--ingest-encoder", default="default",
                       help="'default', or a backbone name (built with random weights)")
    group.add_argument("--ingest-device", default="cpu", help="cpu or cuda")
    group.add_argument("--ingest-copy", default="sscd_distilled",
                       help="the copy backbone ingested beside the encoder (sscd_distilled, sscd), or none")
    group.add_argument("--ingest-copy-batches", default="1,2,4,8,16", help="batch sizes of the copy's bare forward")


def run(args) -> tuple[dict, str]:
    paths = sorted(args.data.glob("*.jpg"))[: args.ingest_images]
    engine_cache = Path(tempfile.mkdtemp(prefix="attrib-perf-engines-"))
    encoder = _encoder(args.ingest_encoder, args.ingest_device, engine_cache)
    copy = None if args.ingest_copy == "none" else _copy(args.ingest_copy)
    copy_bare: dict[int, float] = {}
    copy_pixels = _copy_pixels(copy, paths) if copy else None
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
        for batch in [int(b) for b in args.ingest_copy_batches.split(",")] if copy else []:
            copy_bare[batch] = max(copy_bare.get(batch, 0.0), _bare_copy(copy, copy_pixels, batch))
        for batch, count in variants[round_ % len(variants):] + variants[: round_ % len(variants)]:
            rate, cpu = _ingest(encoder, copy, paths, batch, count)
            if rate > ingested.get((batch, count), 0.0):
                ingested[(batch, count)], cpu_ms[(batch, count)] = rate, round(cpu, 2)
    best_bare = max(bare.values())
    # both backbones run on every image: their times per image add up
    best = 1 / (1 / best_bare + 1 / max(copy_bare.values())) if copy else best_bare
    result = {
        "engine": encoder.engine_name, "device": str(encoder.device), "encoder": args.ingest_encoder,
        "copy": copy.name if copy else None, "copy_engine": copy.engine_name if copy else None,
        "copy_bare_img_s": {b: round(v, 1) for b, v in sorted(copy_bare.items())},
        "reference_img_s": round(best, 1),
        "images": len(paths), "decode_workers": workers,
        "bare_img_s": {b: round(v, 1) for b, v in sorted(bare.items())}, "best_bare_img_s": round(best_bare, 1),
        "ingest_img_s": {f"batch {b}, workers {w}": round(v, 1) for (b, w), v in ingested.items()},
        "ratio": {f"batch {b}, workers {w}": round(v / best, 3) for (b, w), v in ingested.items()},
        "ingest_cpu_ms_per_image": {f"batch {b}, workers {w}": v for (b, w), v in cpu_ms.items()},
    }
    if encoder.device.type == "cpu":
        cost = _cpu_costs(encoder, copy, paths[:64], pixels[:64], max(bare, key=bare.get),
                          max(copy_bare, key=copy_bare.get) if copy else 1)
        forwards = cost["forward"] + cost["copy_forward"]
        result.update(cpu_ms_per_image=cost, bound=round(forwards / (forwards + cost["decode_crop"]), 3))
    shutil.rmtree(engine_cache, ignore_errors=True)
    return result, table(result)


def _encoder(name: str, device: str, engine_cache: Path):
    """The default encoder with its weights, or another backbone with random weights (the speed is
    the same); on the CPU run by ATTRIB_ENGINE."""
    from training.encoders import create_encoder, load_encoder, resolve_device

    engine = os.environ.get("ATTRIB_ENGINE", "auto")
    if name == "default":
        return load_encoder(name, device=device, engine=engine, engine_cache=engine_cache)
    encoder = create_encoder(name, random_init=True).to(resolve_device(device)).eval()
    if encoder.device.type == "cpu":
        encoder.use_engine(engine, engine_cache)
    return encoder


def _pixels(encoder, paths):
    import numpy as np

    from index.ingest.prepare import prepare_file

    crops = [prepare_file(path, {"lite0": encoder.crop}, 10**9).pixels["lite0"] for path in paths]
    return encoder.preprocess.normalize_batch(np.stack(crops))


def _copy(name: str):
    from training.sscd import CopyBackbone

    return CopyBackbone(name, engine=os.environ.get("ATTRIB_ENGINE", "auto"))


def _copy_pixels(copy, paths):
    import numpy as np

    from index.ingest.prepare import prepare_file

    return np.stack([prepare_file(path, {"copy": copy.crop}, 10**9).pixels["copy"] for path in paths])


def _bare_copy(copy, pixels, batch: int) -> float:
    """Images per second of the copy backbone alone over its uint8 inputs, `batch` per forward."""
    previous, copy.batch = copy.batch, batch
    try:
        copy.features_of_pixels(pixels[:batch])
        started = time.perf_counter()
        copy.features_of_pixels(pixels)
        return len(pixels) / (time.perf_counter() - started)
    finally:
        copy.batch = previous


@contextmanager
def whole_batches(encoder):
    """The bare forward is the engine at exactly the batch size asked: no ATTRIB_ENGINE_BATCH parts."""
    previous, encoder.engine_batch = encoder.engine_batch, 2**31
    try:
        yield
    finally:
        encoder.engine_batch = previous


def _bare_forward(encoder, pixels, batch: int) -> float:
    """Images per second of the backbone alone over pixels already normalised (and, on a GPU,
    already on the device, under the service's bf16 autocast)."""
    import torch

    cuda = encoder.device.type == "cuda"
    pixels = pixels.to(encoder.device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)
    with torch.inference_mode(), whole_batches(encoder), autocast:
        encoder.features(pixels[:batch])
        _synchronize(cuda)
        started = time.perf_counter()
        for start in range(0, len(pixels), batch):
            encoder.features(pixels[start:start + batch])
        _synchronize(cuda)
    return len(pixels) / (time.perf_counter() - started)


def _synchronize(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def _ingest(encoder, copy, paths, batch: int, workers: int) -> float:
    from index.catalog import Catalog, CatalogConfig
    from index.ingest import IngestItem, ingest

    home = Path(tempfile.mkdtemp(prefix="attrib-perf-ingest-"))
    try:
        config = CatalogConfig(home, f"sqlite:///{home / 'attrib.db'}", batch_size=batch, decode_workers=workers)
        catalog = Catalog(config, encoder, copy=copy)
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


def _cpu_costs(encoder, copy, paths, pixels, batch: int, copy_batch: int) -> dict:
    """CPU milliseconds per image, this process alone: decode + crop(s), the encoder's forward and
    the copy backbone's (each at its best batch size)."""
    import torch

    from index.ingest.prepare import prepare_file

    started = _cpu()
    for path in paths:
        prepare_file(path, {"lite0": encoder.crop} | ({"copy": copy.crop} if copy else {}), 10**9)
    decode = (_cpu() - started) * 1000 / len(paths)
    with torch.inference_mode(), whole_batches(encoder):
        started = _cpu()
        for start in range(0, len(pixels), batch):
            encoder.features(pixels[start:start + batch])
    forward = (_cpu() - started) * 1000 / len(pixels)
    copy_forward = 0.0
    if copy is not None:
        crops = _copy_pixels(copy, paths)
        previous, copy.batch = copy.batch, copy_batch
        try:
            started = _cpu()
            copy.features_of_pixels(crops)
            copy_forward = (_cpu() - started) * 1000 / len(crops)
        finally:
            copy.batch = previous
    return {"decode_crop": round(decode, 2), "forward": round(forward, 2), "copy_forward": round(copy_forward, 2)}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def table(result: dict) -> str:
    lines = [(f"{result['encoder']} on {result['device']}, engine {result['engine']}, {result['images']} JPEGs; "
              f"bare forward img/s by batch {result['bare_img_s']}, best {result['best_bare_img_s']}")]
    if result["copy"]:
        lines.append(f"copy backbone {result['copy']} ({result['copy_engine']}): bare img/s by batch "
                     f"{result['copy_bare_img_s']}; both bare forwards at their best: {result['reference_img_s']} img/s")
    if "cpu_ms_per_image" in result:
        cost = result["cpu_ms_per_image"]
        copy_part = f", copy forward {cost['copy_forward']} ms" if result["copy"] else ""
        lines.append(f"CPU per image: decode + crop {cost['decode_crop']} ms, forward {cost['forward']} ms{copy_part}: "
                     f"with the cores full and a free commit, at most {result['bound']}×")
    reference = "÷ both best bare forwards" if result["copy"] else "÷ best bare forward"
    lines += ["", f"| ingestion | img/s | {reference} | CPU ms per image |", "|---|---|---|---|"]
    for name, rate in result["ingest_img_s"].items():
        lines.append(f"| {name} | {rate} | {result['ratio'][name]} | {result['ingest_cpu_ms_per_image'][name]} |")
    return "\n".join(lines)
