"""The label-free default calibration: what the catalog's own sources say about queries with and
without a source (used by `index.calibration` on a live catalog, and by the benchmark).

"Has a source" examples: an edited copy of a source (random crop, flip, colour, blur, then JPEG;
NEAR_COPY) against the whole catalog, and, for concepts with two or more sources, a source
against the others of its concept (itself left out). "No source" examples: the same queries with
their own concept left out of the catalog. So the fit data is half and half.
"""

from __future__ import annotations

import io

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
    salt = "calibration" if recipe is NEAR_COPY else "verdict-derived"
    view = ViewMaker(recipe, size)(image.convert("RGB"), view_rng(sha256, 0, salt))
    buffer = io.BytesIO()
    view.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def self_fit_data(pair_scores: np.ndarray, pair_codes: np.ndarray, copy_scores: np.ndarray,
                  copy_codes: np.ndarray) -> CalibrationData:
    """Concept scores (n, concepts) of the pair queries (each with its own source left out) and
    of the copies, with their true concepts: the fit data, each query also with its concept gone."""
    return CalibrationData.concat([
        ranked(pair_scores, pair_codes), ranked(left_out(pair_scores, pair_codes)),
        ranked(copy_scores, copy_codes), ranked(left_out(copy_scores, copy_codes)),
    ])
