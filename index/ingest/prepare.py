"""Ingestion's first stage: read, decode, validate and crop source files ahead of the forward.

`prepare_file` reads one file (or takes its bytes), decodes it with the one decoder
(`training.images.decode_image`), hashes it and resizes + crops it to each backbone's input
(`crops`: backbone id -> the backbone's `crop`), as 8-bit RGB. Colour normalisation happens
later, batched (`Preprocess.normalize_batch`), so the pixels held between the stages are 3 bytes
each, not 12.

`PreparePool` runs it in a pool of threads beside the forward: Pillow's decoders and resampler,
numpy and hashlib release the GIL, so the threads use the cores the forward leaves. Threads, not
processes, by measurement (benchmarks/perf.py --section ingest, docs/performance.md): a process
pool paid its start-up and the pickling of every image and ran at half the rate at 256 files.
Peak decode memory stays bounded by the decoder's own limit (ATTRIB_MAX_CONCURRENT_DECODES).
Results come back in input order, at most `window` files ahead of the consumer, so a folder of a
million files never sits in memory at once. With `workers=0` everything runs in the calling thread.

A file that cannot be read or decoded becomes a `Prepared` with a rejection (code, reason), never
an exception: one bad file does not spoil the rest.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from training.images import ImageError, decode_image, probe_jpeg
from training.preprocess import Preprocess

Crop = Callable[[Image.Image], np.ndarray]  # an RGB image -> a backbone's (size, size, 3) uint8 input


@dataclass
class Prepared:
    data: bytes = b""
    sha256: str = ""
    format: str = ""
    width: int = 0
    height: int = 0
    pixels: dict[str, np.ndarray] | None = None  # backbone id -> (size, size, 3) uint8, its crop
    rejection: tuple[str, str] | None = None  # (code, reason)
    on_device: bool = False  # a JPEG left for the device decoder (training/device_decode.py)


def prepare_file(source: bytes | str | Path, crops: dict[str, Crop], max_pixels: int,
                 device_decode: bool = False, max_aspect: float = Preprocess.MAX_RESIZED_ASPECT) -> Prepared:
    """Bytes (or a path to read) -> a decoded, cropped image; never raises for a bad file. With
    `device_decode`, plain JPEGs are only checked and hashed: the device decodes them."""
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as exc:
        return Prepared(rejection=("unreadable_file", f"cannot read the file: {exc.strerror or exc}"))
    try:
        probed = probe_jpeg(data, max_pixels) if device_decode else None
        if probed and max(probed[1:]) <= max_aspect * min(probed[1:]):
            return Prepared(data, probed[0], "jpeg", probed[1], probed[2], on_device=True)
        decoded = decode_image(data, max_pixels)
    except ImageError as exc:
        return Prepared(rejection=(exc.code, exc.message))
    pixels = {backbone_id: crop(decoded.image) for backbone_id, crop in crops.items()}
    return Prepared(data, decoded.sha256, decoded.format, decoded.width, decoded.height, pixels)


class PreparePool:
    """`map(sources)` yields `Prepared` in order; sources are bytes or paths."""

    def __init__(self, crops: dict[str, Crop], max_pixels: int, workers: int, window: int = 64,
                 on_done: Callable[[], None] | None = None, device_decode: bool = False):
        self.window = max(1, window)
        self._args = (crops, max_pixels, device_decode)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="attrib-decode") if workers > 0 else None
        self._on_done = on_done or (lambda: None)  # called once per file, when it is ready

    def __enter__(self) -> PreparePool:
        return self

    def __exit__(self, *_exc) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def map(self, sources: Iterable[bytes | str | Path | None]) -> Iterator[Prepared | None]:
        """None passes through as None (a file rejected before it was read)."""
        if self._executor is None:
            for source in sources:
                yield self._prepare(source)
            return
        waiting: deque[Future] = deque()
        for source in sources:
            waiting.append(self._executor.submit(self._prepare, source))
            if len(waiting) >= self.window:
                yield waiting.popleft().result()
        while waiting:
            yield waiting.popleft().result()

    def _prepare(self, source) -> Prepared | None:
        prepared = None if source is None else prepare_file(source, *self._args)
        self._on_done()
        return prepared
