"""How many decoded pixels a process may hold in its decoders at once (a budget, not a count).

A decode reserves its cost (the pixels it will decode, after JPEG reduction) before it decodes
and gives it back when done; a decode that does not fit waits until enough is given back. A decode
larger than the whole budget runs alone, once nothing else is decoding, so a single image allowed
by the pixel limit is never refused here. With the default, 48 megapixels, about 10 bytes a pixel
at the peak of a decode (measured, see training/images.py) keep the decoders under about 500 MB:
one 50-megapixel PNG at a time, or dozens of ordinary photos at once.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

DEFAULT_DECODE_BUDGET_PIXELS = 48_000_000


class DecodeBudget:
    """Decodes are admitted in the order they asked (no large image waits forever behind a stream
    of small ones)."""

    def __init__(self, pixels: int = DEFAULT_DECODE_BUDGET_PIXELS):
        if pixels < 1:
            raise ValueError(f"the decode budget must be at least 1 pixel, not {pixels}")
        self.capacity = pixels
        self.in_use = 0
        self._changed = threading.Condition()
        self._tickets = 0  # handed out
        self._admitted = 0  # tickets admitted so far

    @contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        """Hold `pixels` of the budget for the block; waits for its turn and for room first."""
        cost = max(1, int(pixels))
        with self._changed:
            ticket, self._tickets = self._tickets, self._tickets + 1
            self._changed.wait_for(lambda: ticket == self._admitted and self._fits(cost))
            self._admitted += 1
            self.in_use += cost
            self._changed.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= cost
                self._changed.notify_all()

    def _fits(self, cost: int) -> bool:
        return self.in_use == 0 or self.in_use + cost <= self.capacity
