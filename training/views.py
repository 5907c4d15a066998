"""Augmented views that bridge media: random resized crop and flip, then either an edge-map
sketch, a filled silhouette, or strong photometric changes (colour jitter, grayscale, blur,
solarise, invert). A view is a deterministic function of the image bytes, the view index and the
recipe, so the feature cache is shared by every run and seed that uses the same recipe."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from training.config import RENDERING_NAMES, AugmentConfig


def recipe_key(config: AugmentConfig) -> str:
    fields = dataclasses.asdict(config)
    if not fields["renderings"]:  # the keys (and so the views and caches) of recipes made before renderings
        del fields["renderings"]
    text = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(f"views-v1:{text}".encode()).hexdigest()[:12]


def view_rng(sha256: str, index: int, recipe: str) -> np.random.Generator:
    seed = int(hashlib.sha256(f"{sha256}:{index}:{recipe}".encode()).hexdigest()[:16], 16)
    return np.random.default_rng(seed)


class ViewMaker:
    """Augmented views of one image at the backbone's input size."""

    def __init__(self, config: AugmentConfig, size: int):
        self.config = config
        self.size = size

    def __call__(self, image: Image.Image, rng: np.random.Generator, index: int = 0) -> Image.Image:
        """View `index` of the image: random from `rng`, or with renderings the index-th rendering."""
        cfg = self.config
        if cfg.renderings:
            render = RENDERINGS[cfg.renderings[index % len(cfg.renderings)]]
            return render(ImageOps.fit(image, (self.size, self.size), Image.Resampling.BICUBIC))
        image = self.crop(image, rng)
        if rng.random() < cfg.p_flip:
            image = ImageOps.mirror(image)
        medium = rng.random()
        if medium < cfg.p_sketch:
            return sketch(image, float(rng.uniform(*cfg.sketch_sigma)))
        if medium < cfg.p_sketch + cfg.p_silhouette:
            return silhouette(image, float(rng.uniform(*cfg.silhouette_blur)))
        return self.photometric(image, rng)

    def crop(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """Random resized crop: area fraction in crop_scale, aspect ratio in [3/4, 4/3]."""
        width, height = image.size
        for _ in range(10):
            area = width * height * rng.uniform(*self.config.crop_scale)
            ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            w, h = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
            if 0 < w <= width and 0 < h <= height:
                left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
                return image.resize((self.size, self.size), Image.Resampling.BICUBIC, box=(left, top, left + w, top + h))
        return ImageOps.fit(image, (self.size, self.size), Image.Resampling.BICUBIC)

    def photometric(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        cfg = self.config
        if rng.random() < cfg.p_jitter:
            image = colour_jitter(image, cfg.jitter, rng)
        if rng.random() < cfg.p_grayscale:
            image = ImageOps.grayscale(image).convert("RGB")
        if rng.random() < cfg.p_blur:
            image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.1, 2.0))))
        if rng.random() < cfg.p_solarize:
            image = ImageOps.solarize(image, 128)
        if rng.random() < cfg.p_invert:
            image = ImageOps.invert(image)
        return image


def colour_jitter(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Brightness, contrast, saturation (factor in [1-s, 1+s]) and hue (shift up to s/4 turn)."""
    from PIL import ImageEnhance

    for enhancer in rng.permutation([ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]):
        image = enhancer(image).enhance(float(rng.uniform(max(0.0, 1 - strength), 1 + strength)))
    hsv = np.array(image.convert("HSV"))
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(rng.uniform(-strength / 4, strength / 4) * 255)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def sketch(image: Image.Image, sigma: float = 3.5) -> Image.Image:
    """Edge-map view: Canny edges of the grey image, dilated, drawn black on white."""
    from skimage import feature, morphology

    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    edges = morphology.dilation(feature.canny(grey, sigma=sigma), morphology.disk(1))
    return Image.fromarray(np.where(edges, 0, 255).astype(np.uint8)).convert("RGB")


def silhouette(image: Image.Image, blur: float = 5.0) -> Image.Image:
    """Silhouette view: Otsu threshold of a blurred grey image; the side that owns less of the
    border is taken as the figure and drawn black on white."""
    from skimage.filters import threshold_otsu

    grey = np.asarray(ImageOps.grayscale(image).filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32)
    if grey.max() - grey.min() < 1e-3:
        return Image.new("RGB", image.size, (255, 255, 255))
    mask = grey > threshold_otsu(grey)
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    if border.mean() > 0.5:
        mask = ~mask
    return Image.fromarray(np.where(mask, 0, 255).astype(np.uint8)).convert("RGB")


# deterministic renderings of a query's centre crop into the media of line drawings and cut-outs
# (AugmentConfig.renderings), with the default sigma and blur
RENDERINGS = dict(zip(RENDERING_NAMES, (sketch, silhouette)))
