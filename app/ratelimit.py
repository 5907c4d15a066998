"""Token buckets in process memory: per-key and per-IP write limits, per-IP failed-auth limits.

Each bucket holds up to `burst` tokens and refills at `per_minute / 60` tokens a second; a request
is refused while its bucket is empty, with the seconds until a token is back (`Retry-After`). The state
is per process: with several workers each enforces its own limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Callable

MAX_TRACKED = 10_000  # buckets kept per limiter; the least recently used (likely refilled) goes first


class TokenBuckets:
    """One bucket per name (a key, an IP). Thread-safe: sync dependencies run in a thread pool."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # name -> (tokens, when)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, name: str) -> None:
        """Take a token from `name`'s bucket, if it has one."""
        if not self.enabled:
            return
        with self._lock:
            now = self.clock()
            tokens = self._level(name, now)
            if tokens >= 1:
                self._buckets[name] = (tokens - 1, now)
                self._buckets.move_to_end(name)
                while len(self._buckets) > MAX_TRACKED:
                    self._buckets.popitem(last=False)

    def wait(self, name: str) -> float:
        """The seconds until `name` has a token, taking nothing (0 when it has one now)."""
        if not self.enabled:
            return 0.0
        with self._lock:
            tokens = self._level(name, self.clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def _level(self, name: str, now: float) -> float:
        tokens, when = self._buckets.get(name, (self.burst, now))
        return min(self.burst, tokens + (now - when) * self.rate)


class RateLimits:
    """The app's limiters, built from settings."""

    def __init__(self, write_per_minute: float, write_burst: int, auth_per_minute: float, auth_burst: int):
        self.writes = TokenBuckets(write_per_minute, write_burst)
        self.auth_failures = TokenBuckets(auth_per_minute, auth_burst)


def retry_after(seconds: float) -> str:
    """Whole seconds for the Retry-After header, at least 1."""
    return str(max(1, math.ceil(seconds)))
