"""Derivations of a photo with known geometry: a crop, scaled, perhaps mirrored and rotated, then
perhaps painted or drawn in pencil. The truth is the crop's box in the photo, against which region
matching (training/regions.py) is scored: benchmarks/regions.py and tests/training/test_regions.py."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps

FILTERS = ("none", "paint", "pencil")


@dataclass(frozen=True)
class Derivation:
    image: Image.Image
    box: tuple[int, int, int, int]  # the crop in the source, [x0, y0, x1, y1]
    scale: float
    mirrored: bool
    rotation: float  # degrees, counter-clockwise, the frame expanded to hold the whole crop
    filter: str


def pencil(image: Image.Image) -> Image.Image:
    """A pencil drawing: the grey image colour-dodged with its blurred negative."""
    grey = ImageOps.grayscale(image)
    negative = np.asarray(ImageOps.invert(grey).filter(ImageFilter.GaussianBlur(6)), np.float32)
    drawn = np.asarray(grey, np.float32) * 255.0 / np.maximum(255.0 - negative, 1.0)
    return Image.fromarray(np.clip(drawn, 0, 255).astype(np.uint8)).convert("RGB")


def paint(image: Image.Image) -> Image.Image:
    """Flat brush strokes: a mode filter, then fewer colours."""
    return ImageOps.posterize(image.convert("RGB").filter(ImageFilter.ModeFilter(5)), 3)


def derive(source: Image.Image, box, scale=1.0, mirrored=False, rotation=0.0, filter="none") -> Derivation:
    image = source.convert("RGB").crop(box)
    image = image.resize((max(32, round(image.width * scale)), max(32, round(image.height * scale))), Image.BICUBIC)
    if mirrored:
        image = ImageOps.mirror(image)
    if rotation:
        image = image.rotate(rotation, resample=Image.BICUBIC, expand=True)
    image = {"none": lambda i: i, "paint": paint, "pencil": pencil}[filter](image)
    return Derivation(image, tuple(box), scale, mirrored, rotation, filter)


def random_derivation(source: Image.Image, rng: random.Random) -> Derivation:
    """A crop of 45-90 % of each side, scaled by 0.6-1.4, mirrored in 30 %, rotated by up to 12
    degrees in half, a paint or pencil filter in a third each."""
    width, height = source.size
    w, h = round(width * rng.uniform(0.45, 0.9)), round(height * rng.uniform(0.45, 0.9))
    x0, y0 = rng.randint(0, width - w), rng.randint(0, height - h)
    return derive(source, (x0, y0, x0 + w, y0 + h), scale=rng.uniform(0.6, 1.4), mirrored=rng.random() < 0.3,
                  rotation=rng.uniform(-12, 12) if rng.random() < 0.5 else 0.0, filter=rng.choice(FILTERS))


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
