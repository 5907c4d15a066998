"""Augmented views that bridge media: random resized crop and flip, then either an edge-map
sketch, a filled silhouette, or strong photometric changes (colour jitter, grayscale, blur,
solarise, invert). A view is a deterministic function of the image bytes, the view index and the
recipe, so the feature cache is shared by every run and seed that uses the same recipe."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import cv2
import numpy as np
from PIL import Image, ImageFilter, ImageOps

from training.config import RENDERING_NAMES, AugmentConfig


def recipe_key(config: AugmentConfig) -> str:
    """The views' identity: the recipe and the version of the drawings (v2: OpenCV's sketch and
    silhouette; renderings v3: drawn from one grey `rendering_crop`), so a feature cache never
    mixes views drawn by different code."""
    text = json.dumps(dataclasses.asdict(config), sort_keys=True)
    return hashlib.sha256(f"views-{'v3' if config.renderings else 'v2'}:{text}".encode()).hexdigest()[:12]


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
            return render(rendering_crop(image, cfg.render_size or self.size))
        image = self.crop(image, rng)
        if rng.random() < cfg.p_flip:
            image = ImageOps.mirror(image)
        medium = rng.random()
        if medium < cfg.p_sketch:
            return sketch(image, float(rng.uniform(*cfg.sketch_sigma)))
        if medium < cfg.p_sketch + cfg.p_silhouette:
            return silhouette(image, float(rng.uniform(*cfg.silhouette_blur)))
        return self.photometric(image, rng)

    def renderings(self, image: Image.Image) -> list[Image.Image]:
        """Every rendering of the image (views 0..n-1 of a rendering recipe), drawn from one crop."""
        crop = rendering_crop(image, self.config.render_size or self.size)
        return [RENDERINGS[name](crop) for name in self.config.renderings]

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


def rendering_crop(image: Image.Image, size: int) -> Image.Image:
    """The centre square of the image at `size` px in grey (bicubic): what the renderings are
    drawn from (both read grey only). Pillow's reducing gap shrinks a large upload by whole factors
    first; grey first, the crop of a 1024 px image took 1.8 ms against 9 ms for ImageOps.fit in
    colour, and 0.5 ms against 1.1 for a 341 x 256 photo."""
    grey = image.convert("L")
    width, height = grey.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return grey.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side),
                       reducing_gap=2.0)


# Canny's gradients go to OpenCV as int16: the [0, 1] grey image's Sobel responses (at most 4 in
# size) times this scale keep four bits below the 8-bit grey level and stay within int16.
GRADIENT_SCALE = 255.0 * 16
CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def sketch(image: Image.Image, sigma: float = 3.5, low: float = 0.1, high: float = 0.2) -> Image.Image:
    """Edge-map view: Canny edges (Canny, IEEE TPAMI 1986) of the grey image smoothed with a
    Gaussian of `sigma` px, the gradient magnitude's hysteresis thresholds `low` and `high` as
    fractions of the grey range, dilated by a 3x3 cross, drawn black on white. OpenCV draws it in
    ~0.5 ms at 192 px (scikit-image's canny took ~9 ms at 288), which a rendered head pays per query."""
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    smooth = cv2.GaussianBlur(grey, (0, 0), sigma)
    dx, dy = (cv2.Sobel(smooth, cv2.CV_32F, x, 1 - x, ksize=3, scale=GRADIENT_SCALE).astype(np.int16) for x in (1, 0))
    edges = cv2.dilate(cv2.Canny(dx, dy, low * GRADIENT_SCALE, high * GRADIENT_SCALE, L2gradient=True), CROSS)
    return Image.fromarray(np.where(edges > 0, 0, 255).astype(np.uint8)).convert("RGB")


def silhouette(image: Image.Image, blur: float = 5.0) -> Image.Image:
    """Silhouette view: Otsu's threshold (IEEE TSMC 1979) of the grey image blurred with a Gaussian
    of `blur` px; the side that owns less of the border is taken as the figure and drawn black on
    white. A flat image has no figure."""
    grey = cv2.GaussianBlur(np.asarray(image.convert("L")), (0, 0), blur)
    if grey.max() == grey.min():
        return Image.new("RGB", image.size, (255, 255, 255))
    mask = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)[1].astype(bool)
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    if border.mean() > 0.5:
        mask = ~mask
    return Image.fromarray(np.where(mask, 0, 255).astype(np.uint8)).convert("RGB")


# deterministic renderings of a query's centre crop into the media of line drawings and cut-outs
# (AugmentConfig.renderings), with the default sigma and blur
RENDERINGS = dict(zip(RENDERING_NAMES, (sketch, silhouette)))
