"""The label-free default calibration: what the catalog's own sources say about queries with and
without a source (used by `index.calibration` on a live catalog, and by the benchmark).

"Has a source" examples: edited copies of a source (random crop, flip, colour, blur, then JPEG):
a near copy (NEAR_COPY, most of the picture) and a tight one (TIGHT_COPY, 5-20 % of it, so that
the fit also sees copies that a copy detector is unsure of; centred where the picture has
structure, `salient_crop`, so that a tight copy of a line drawing is not a blank patch), against
the whole catalog; and, for
concepts with two or more sources, a source against the others of its concept (itself left out). "No source" examples: the same queries with
their own concept left out of the catalog. So the fit data is half and half.
"""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
from PIL import Image

from training.calibration import CalibrationData, left_out, ranked
from training.config import AugmentConfig
from training.views import ViewMaker, view_rng

MAX_PAIRS = 256  # sources scored against the other sources of their concept
MAX_COPIES = 64  # sources whose edited copy is embedded (one backbone forward each)
# Derivations in another medium (edge maps, silhouettes, strong colour) for the verdict's fit, so that
# it also sees queries that only a content space finds; training's views are the same family.
DERIVED = AugmentConfig(crop_scale=(0.5, 1.0), p_sketch=0.45, p_silhouette=0.2, jitter=0.6, p_jitter=0.8,
                        p_grayscale=0.2, p_blur=0.3, p_solarize=0.1, p_invert=0.05)
NEAR_COPY = AugmentConfig(crop_scale=(0.4, 1.0), p_sketch=0.0, p_silhouette=0.0, jitter=0.4, p_jitter=0.8,
                          p_grayscale=0.2, p_blur=0.3, p_solarize=0.0, p_invert=0.0)
TIGHT_COPY = AugmentConfig(crop_scale=(0.05, 0.2), p_sketch=0.0, p_silhouette=0.0, jitter=0.4, p_jitter=0.8,
                           p_grayscale=0.2, p_blur=0.3, p_solarize=0.0, p_invert=0.0)
COPIES = {"near": NEAR_COPY, "tight": TIGHT_COPY}  # the calibration's copies, by name
EDITS = COPIES | {"derived": DERIVED}  # and the verdict's derivations


def edit_name(recipe: AugmentConfig) -> str:
    return next(name for name, known in EDITS.items() if known is recipe)


def pick(codes: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the sources to use as same-concept pairs (concepts with 2+ sources, up to
    MAX_PAIRS) and as edited copies (one per concept first, up to MAX_COPIES), both sorted."""
    codes = np.asarray(codes, np.int64)
    rng = np.random.default_rng(seed)
    counts = np.bincount(codes) if len(codes) else np.zeros(0, np.int64)
    multi = np.flatnonzero(counts[codes] >= 2) if len(codes) else np.zeros(0, np.int64)
    pairs = np.sort(rng.permutation(multi)[:MAX_PAIRS])
    order = rng.permutation(len(codes))
    first = order[np.unique(codes[order], return_index=True)[1]] if len(codes) else order
    copies = np.concatenate([rng.permutation(first), np.setdiff1d(order, first)])[:MAX_COPIES]
    return pairs, np.sort(copies).astype(np.int64)


def edited_copy(image: Image.Image, sha256: str, size: int, quality: int = 75,
                recipe: AugmentConfig = NEAR_COPY) -> Image.Image:
    """A deterministic edited copy of a source image (the same for the same bytes and recipe)."""
    name = edit_name(recipe)
    rng = view_rng(sha256, 0, {"near": "calibration", "tight": "calibration-tight", "derived": "verdict-derived"}[name])
    image = image.convert("RGB")
    if name == "tight":
        image, recipe = salient_crop(image, rng, recipe.crop_scale), replace(recipe, crop_scale=(0.85, 1.0))
    view = ViewMaker(recipe, size)(image, rng)
    buffer = io.BytesIO()
    view.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def salient_crop(image: Image.Image, rng: np.random.Generator, scale: tuple[float, float]) -> Image.Image:
    """A square-ish crop of a `scale` fraction of the picture's area, centred at a point drawn in
    proportion to the grey image's gradient (at 64 x 64): on edges and texture, not on flat ground."""
    grey = np.asarray(image.convert("L").resize((64, 64), Image.Resampling.BILINEAR), np.float32)
    gy, gx = np.gradient(grey)
    weight = np.hypot(gx, gy).ravel() + 1e-3
    row, column = divmod(int(rng.choice(weight.size, p=weight / weight.sum())), 64)
    width, height = image.size
    side = np.sqrt(rng.uniform(*scale))
    w, h = max(1, round(width * side)), max(1, round(height * side))
    left = int(np.clip((column + 0.5) / 64 * width - w / 2, 0, width - w))
    top = int(np.clip((row + 0.5) / 64 * height - h / 2, 0, height - h))
    return image.crop((left, top, left + w, top + h))


def self_fit_data(pair_scores: np.ndarray, pair_codes: np.ndarray, copy_scores: np.ndarray,
                  copy_codes: np.ndarray) -> CalibrationData:
    """Concept scores (n, concepts) of the pair queries (each with its own source left out) and
    of the copies, with their true concepts: the fit data, each query also with its concept gone."""
    return CalibrationData.concat([
        ranked(pair_scores, pair_codes), ranked(left_out(pair_scores, pair_codes)),
        ranked(copy_scores, copy_codes), ranked(left_out(copy_scores, copy_codes)),
    ])
