"""Ingestion's first stage: read, decode, validate and crop source files ahead of the forward.

`prepare_file` reads one file (or takes its bytes), decodes it with the one decoder
(`training.images.decode_image`), hashes it and resizes + centre-crops it to the backbone's
input, as 8-bit RGB. Colour normalisation happens later, batched (`Preprocess.normalize_batch`),
so the pixels that cross between processes are 3 bytes each, not 12.

`PreparePool` runs it in worker processes (a forkserver: each worker is forked from a small,
fresh process that has imported only numpy and Pillow, never from a process with threads or a
model). Results come back in input order, at most `window` files ahead of the consumer, so a
folder of a million files never sits in memory at once. With `workers=0`, or for a handful of
files, everything runs in the calling process.

A file that cannot be read or decoded becomes a `Prepared` with a rejection (code, reason), never
an exception: one bad file does not spoil the rest.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from training.images import ImageError, decode_image, probe_jpeg
from training.preprocess import Preprocess

# Below this many files, starting worker processes costs more than it saves.
MIN_FILES_FOR_POOL = 48


@dataclass
class Prepared:
    data: bytes = b""
    sha256: str = ""
    format: str = ""
    width: int = 0
    height: int = 0
    pixels: np.ndarray | None = None  # (size, size, 3) uint8, resized and centre-cropped
    rejection: tuple[str, str] | None = None  # (code, reason)
    on_device: bool = False  # a JPEG left for the device decoder (training/device_decode.py)


def prepare_file(source: bytes | str | Path, preprocess: Preprocess, max_pixels: int,
                 device_decode: bool = False) -> Prepared:
    """Bytes (or a path to read) -> a decoded, cropped image; never raises for a bad file. With
    `device_decode`, plain JPEGs are only checked and hashed: the device decodes them."""
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as exc:
        return Prepared(rejection=("unreadable_file", f"cannot read the file: {exc.strerror or exc}"))
    try:
        probed = probe_jpeg(data, max_pixels) if device_decode else None
        if probed and max(probed[1:]) <= preprocess.MAX_RESIZED_ASPECT * min(probed[1:]):
            return Prepared(data, probed[0], "jpeg", probed[1], probed[2], on_device=True)
        decoded = decode_image(data, max_pixels)
    except ImageError as exc:
        return Prepared(rejection=(exc.code, exc.message))
    pixels = np.asarray(preprocess.resize_crop(decoded.image), dtype=np.uint8)
    return Prepared(data, decoded.sha256, decoded.format, decoded.width, decoded.height, pixels)


class PreparePool:
    """`map(sources)` yields `Prepared` in order; sources are bytes or paths."""

    def __init__(self, preprocess: Preprocess, max_pixels: int, workers: int, window: int = 128,
                 on_done: Callable[[], None] | None = None, device_decode: bool = False):
        self.window = max(1, window)
        self._args = (preprocess, max_pixels, device_decode)
        self._executor: ProcessPoolExecutor | None = None
        self._workers = workers
        self._on_done = on_done or (lambda: None)  # called once per file, when it is ready

    def __enter__(self) -> PreparePool:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def map(self, sources: Iterable[bytes | str | Path | None], expected: int | None = None) -> Iterator[Prepared | None]:
        """None passes through as None (a file rejected before it was read)."""
        if self._workers < 1 or (expected is not None and expected < MIN_FILES_FOR_POOL):
            for source in sources:
                prepared = None if source is None else prepare_file(source, *self._args)
                self._on_done()
                yield prepared
            return
        waiting: deque[tuple[bytes | str | Path | None, Future | None]] = deque()
        for source in sources:
            waiting.append((source, self._submit(source)))
            if len(waiting) >= self.window:
                yield self._result(waiting)
        while waiting:
            yield self._result(waiting)

    def _submit(self, source, again: bool = False) -> Future | None:
        if source is None:
            self._on_done()
            return None
        future = self._start().submit(prepare_file, source, *self._args)
        if not again:  # a file sent again was already counted when its first worker died
            future.add_done_callback(lambda _future: self._on_done())
        return future

    def _result(self, waiting: deque) -> Prepared | None:
        """The oldest file's result. A worker that dies (killed, out of memory) breaks the pool and
        every file in it: the oldest file is tried again alone in a new pool and rejected only if
        it breaks that one too; the other waiting files go again after it."""
        source, future = waiting.popleft()
        if future is None:
            return None
        try:
            return future.result()
        except BrokenProcessPool:
            self.close()
        try:
            prepared = self._submit(source, again=True).result()
        except BrokenProcessPool as exc:
            self.close()
            prepared = Prepared(rejection=("decode_failed", f"the decoding worker died on this file: {exc}"))
        for position, (other, pending) in enumerate(waiting):
            if pending is not None and not _succeeded(pending):
                waiting[position] = (other, self._submit(other, again=True))
        return prepared

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["numpy", "PIL.Image", "training.images", "training.preprocess"])
            self._executor = ProcessPoolExecutor(self._workers, mp_context=context)
        return self._executor


def _succeeded(future: Future) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None
