"""Dynamic micro-batching of backbone forwards for concurrent /attribute requests.

Every request used to run its own forward in the thread pool, and the forwards competed for the
same cores. Here one inference thread runs them all: a request puts its preprocessed pixels on a
bounded queue and waits; the thread takes the first waiting request, gathers whatever else is
waiting (up to `max_images` images, waiting at most `max_wait_ms` for more), runs one forward
for the lot and hands each request its rows. Under load the requests that arrive during a
forward form the next batch; alone, a request waits at most `max_wait_ms`.

When the queue is full the request is refused at once (`Overloaded`, 503 with Retry-After)
instead of letting latency grow without bound.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future

import numpy as np
import torch

from training.errors import AttribError

log = logging.getLogger(__name__)


class Overloaded(AttribError):
    code = "overloaded"
    status = 503
    headers = {"Retry-After": "1"}


class ForwardBatcher:
    def __init__(self, forward, max_images: int = 16, max_wait_ms: float = 2.0, max_queue: int = 64,
                 on_batch=None):
        self.forward = forward  # pixels (N, ...) tensor or array -> features (N, D) tensor or array
        self.max_images, self.max_wait = max_images, max_wait_ms / 1000
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.on_batch = on_batch  # called with each batch's image count (metrics)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def depth(self) -> int:
        return self.queue.qsize()

    def __call__(self, pixels: torch.Tensor) -> np.ndarray:
        """Backbone features of these pixels, computed in a shared batch (blocks until done)."""
        return self.submit(pixels).result()

    def submit(self, pixels: torch.Tensor) -> Future:
        """Queue these pixels for a shared batch; the future gets their features (or the error)."""
        if self._stop.is_set():
            raise Overloaded("the inference worker is stopping", code="not_ready")
        done: Future = Future()
        try:
            self.queue.put_nowait((pixels, done))
        except queue.Full:
            raise Overloaded(f"the server is at capacity ({self.queue.maxsize} requests waiting for inference); "
                             "retry shortly") from None
        return done

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.queue.put((None, None))  # wakes the thread; a full queue still drains first
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._gather()
            if batch:
                self._forward(batch)
        self._fail_waiting()

    def _gather(self) -> list[tuple[torch.Tensor, Future]]:
        pixels, done = self.queue.get()
        if done is None:
            return []
        batch, images = [(pixels, done)], len(pixels)
        deadline = time.monotonic() + self.max_wait
        while images < self.max_images:
            try:
                pixels, done = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if done is None:
                self._stop.set()
                break
            batch.append((pixels, done))
            images += len(pixels)
        return batch

    def _forward(self, batch: list[tuple[torch.Tensor, Future]]) -> None:
        """One forward per pixel shape among the gathered requests (a rendered head's renderings
        are smaller than the clean crop, training/views.py)."""
        shapes: dict[tuple, list[tuple[torch.Tensor, Future]]] = {}
        for pixels, done in batch:
            shapes.setdefault(tuple(pixels.shape[1:]), []).append((pixels, done))
        for group in shapes.values():
            self._forward_group(group)

    def _forward_group(self, batch: list[tuple[torch.Tensor, Future]]) -> None:
        try:
            parts = [pixels for pixels, _ in batch]
            with torch.inference_mode():
                out = self.forward(torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts))
            out = out.float().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out, np.float32)
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure, the worker lives on
            log.exception("batched forward of %d requests failed", len(batch))
            for _, done in batch:
                done.set_exception(exc)
            return
        if self.on_batch:
            self.on_batch(len(out))
        start = 0
        for pixels, done in batch:
            done.set_result(out[start:start + len(pixels)])
            start += len(pixels)

    def _fail_waiting(self) -> None:
        while True:
            try:
                _, done = self.queue.get_nowait()
            except queue.Empty:
                return
            if done is not None:
                done.set_exception(Overloaded("the inference worker stopped", code="not_ready"))
