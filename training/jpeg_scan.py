"""A JPEG that declares more pixels than its bytes can hold is truncated, whatever the decoder says.

libjpeg (under Pillow and under nvJPEG alike) meets an end-of-image marker that comes too early
with a warning, not an error, and fills the blocks it never got with mid-grey: a 300 x 300 JPEG
whose header is edited to declare 7000 x 7000 decodes as a 7000 x 7000, mostly grey image. A
Huffman-coded JPEG spends at least one bit on every 8 x 8 block of every component (the DC
code of each block has a length of one bit or more, in baseline and progressive files alike), so
a file with fewer bytes than blocks / 8 cannot be whole. Arithmetic-coded files (SOF9-SOF15) can
spend less than a bit on a block and are not judged.
"""

from __future__ import annotations

import math

_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (C4 DHT, C8 JPG, CC DAC)
_ARITHMETIC = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def missing_data(data: bytes) -> str | None:
    """Why this JPEG cannot hold the pixels its frame header declares, or None."""
    frame = _frame(data)
    if frame is None:
        return None
    marker, width, height, sampling = frame
    if marker in _ARITHMETIC or not sampling:
        return None
    h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
    blocks = sum(math.ceil(math.ceil(width * h / h_max) / 8) * math.ceil(math.ceil(height * v / v_max) / 8)
                 for h, v in sampling)
    if len(data) * 8 < blocks:
        return (f"the JPEG declares {width}x{height} pixels ({blocks:,} blocks) but holds only {len(data):,} bytes, "
                "less than one bit a block: it is truncated")
    return None


def _frame(data: bytes) -> tuple[int, int, int, list[tuple[int, int]]] | None:
    """(SOF marker, width, height, [(h, v) sampling per component]) from the headers, or None."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker, length = data[at + 1], int.from_bytes(data[at + 2:at + 4], "big")
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _SOF and at + 10 <= len(data):
            height, width = int.from_bytes(data[at + 5:at + 7], "big"), int.from_bytes(data[at + 7:at + 9], "big")
            count = data[at + 9]
            parts = data[at + 10:at + 10 + 3 * count]
            sampling = [(parts[i + 1] >> 4, parts[i + 1] & 15) for i in range(0, len(parts) - 2, 3)]
            return marker, width, height, [(h, v) for h, v in sampling if h and v]
        if marker == 0xDA:  # start of scan before any frame header
            return None
        at += 2 + length
    return None
