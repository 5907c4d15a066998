import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.backbones import DEFAULT_BACKBONE, resolve_backbone
from training.preprocess import Preprocess

REPO = Path(__file__).resolve().parents[2]


def resize_then_crop(image: Image.Image, size: int) -> Image.Image:
    """The reference: resize the short side to `size`, then take the centre crop."""
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.resize((new_w, new_h), Image.Resampling.BICUBIC).crop((left, top, left + size, top + size))


@pytest.fixture(scope="module")
def preprocess() -> Preprocess:
    return Preprocess(resolve_backbone(DEFAULT_BACKBONE))


def test_ordinary_images_are_resized_then_cropped(preprocess, photos):
    for path in photos[:5]:
        image = Image.open(path).convert("RGB")
        for crop in (image, image.crop((0, 0, image.width, image.height // 10))):  # up to 16:1 unchanged
            want = np.asarray(resize_then_crop(crop, preprocess.size))
            assert np.array_equal(np.asarray(preprocess.resize_crop(crop)), want)


def test_extreme_aspect_ratios_resample_only_the_centre_crop(preprocess):
    rng = np.random.default_rng(3)
    strip = Image.fromarray(rng.integers(0, 256, (20, 4000, 3), dtype=np.uint8))  # 200:1
    got = np.asarray(preprocess.resize_crop(strip), dtype=int)
    want = np.asarray(resize_then_crop(strip, preprocess.size), dtype=int)
    assert got.shape == want.shape == (224, 224, 3)
    assert np.abs(got - want).max() <= 8 and np.abs(got - want).mean() < 1  # same pixels, resampled alike


def test_a_one_pixel_high_strip_needs_no_giant_intermediate():
    """50000 x 1 would be resized to 11,200,000 x 224 (7.5 GB) first; here it runs in 300 MB more."""
    script = f"""
import resource, sys
sys.path.insert(0, {str(REPO)!r})
from PIL import Image
from training.backbones import DEFAULT_BACKBONE, resolve_backbone
from training.preprocess import Preprocess
preprocess = Preprocess(resolve_backbone(DEFAULT_BACKBONE))
size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (size + 300 * 2**20, resource.RLIM_INFINITY))
print(tuple(preprocess(Image.new("RGB", (50_000, 1), (9, 99, 199))).shape))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "(3, 224, 224)", done.stderr[-2000:]
