"""Issue 25, item 4: large images are reduced while decoded, decodes share a pixel budget, and
freed buffers go back to the system."""

import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.decode_budget import DecodeBudget
from training.images import DECODE_MIN_SIDE, decode_image

REPO = Path(__file__).resolve().parents[2]


def photo(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    return Image.fromarray(np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_a_large_jpeg_is_reduced_while_it_is_decoded_and_keeps_its_own_size():
    decoded = decode_image(encode(photo(4800, 3200), "JPEG", quality=90))
    assert (decoded.width, decoded.height) == (4800, 3200)
    assert DECODE_MIN_SIDE <= decoded.image.height < 2 * DECODE_MIN_SIDE  # 1/4: 1200 x 800
    assert decoded.image.size == (1200, 800)
    full = np.asarray(photo(4800, 3200).resize(decoded.image.size, Image.Resampling.BOX), dtype=int)
    assert np.abs(np.asarray(decoded.image, dtype=int) - full).mean() < 3  # the same picture


def test_a_rotated_large_jpeg_reports_its_upright_size():
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees to be upright
    decoded = decode_image(encode(photo(4800, 3200), "JPEG", exif=exif.tobytes()))
    assert (decoded.width, decoded.height) == (3200, 4800)
    assert decoded.image.size == (800, 1200)


def test_other_formats_are_reduced_after_decoding_and_small_images_are_left_alone():
    decoded = decode_image(encode(photo(3000, 2100), "PNG"))
    assert (decoded.width, decoded.height, decoded.image.size) == (3000, 2100, (750, 525))
    for size in [(500, 375), (1023, 1023), (5000, 600)]:
        assert decode_image(encode(photo(*size), "JPEG")).image.size == size  # short side < 2 x 512


def test_the_budget_admits_in_order_and_lets_a_larger_decode_run_alone():
    budget, order, started = DecodeBudget(100), [], threading.Event()

    def decode(name: str, pixels: int) -> None:
        with budget.reserve(pixels):
            order.append(name)
            time.sleep(0.05)

    with budget.reserve(60):
        threads = [threading.Thread(target=decode, args=args) for args in [("huge", 500), ("small", 10)]]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        assert order == []  # "huge" waits for an empty budget, and "small" waits behind it
        assert budget.in_use == 60
    for thread in threads:
        thread.join(5)
    assert order == ["huge", "small"] and budget.in_use == 0


def test_decodes_that_fit_run_together():
    budget, inside, most = DecodeBudget(100), [0], [0]
    lock = threading.Lock()

    def decode() -> None:
        with budget.reserve(30):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.1)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=decode) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert most[0] == 3  # 3 x 30 fit in 100, a fourth does not


def test_the_budget_refuses_nonsense():
    with pytest.raises(ValueError):
        DecodeBudget(0)


def test_freed_large_buffers_leave_the_process():
    """After one large mmapped block is freed glibc would serve later blocks of a few MB from the
    heap and keep them; with the threshold held at 1 MB they leave RSS when freed."""
    script = """
import sys
from training.heap import hold_large_buffers_apart
assert hold_large_buffers_apart()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
big = bytearray(16 * 2**20); del big  # raises glibc's own threshold to 16 MB
before = rss()
blocks, pins = [], []
for _ in range(100):
    blocks.append(bytearray(4 * 2**20))
    pins.append(bytearray(64))  # small objects after each block keep the heap from shrinking
held = rss()
del blocks
print(round(held - before), round(rss() - before))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=REPO)
    held, after = map(int, done.stdout.split())
    assert held >= 350 and after < 50, (held, after, done.stderr)
