"""Query views: a query is embedded as the average of its head embeddings over its clean view and
the same augmented views the head was trained on (test-time augmentation).

The head is fitted so that an image and its views embed alike (alignment), and the views include
edge-map sketches and silhouettes, which look like the catalog's sources far more than a stylized
query does. A single clean embedding of a synthetic query still carries its texture; the average
over its views keeps what the views agree on (shape, layout) and cancels what they move. This is
test-time augmentation as in Krizhevsky, Sutskever and Hinton (NeurIPS 2012) and the multi-view
descriptor averaging of Gordo et al. (*End-to-end learning of deep visual representations for
image retrieval*, IJCV 2017), applied only on the query side: sources are indexed from their
clean view as before, so a catalog keeps one stored feature per source.

Everything is label free and needs nothing beyond the query image: its views are made by
`training.views.ViewMaker` from `view_rng(sha256 of the image bytes, i, recipe)`, so the service,
`attrib eval` and training make exactly the same views (and share the feature cache). The
checkpoint's head config names the count and the augmentation recipe:
`{"query_views": N, "query_augment": {...AugmentConfig...}}`; N = 0 (or absent) is the plain
clean-view embedding.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from training.config import AugmentConfig, merge
from training.views import ViewMaker, recipe_key, view_rng


def view_settings(head_config: dict | None) -> tuple[int, AugmentConfig | None]:
    """(count, augmentation recipe) a head asks its queries to be embedded with; (0, None) if none."""
    count = int((head_config or {}).get("query_views") or 0)
    if count <= 0:
        return 0, None
    return count, merge(AugmentConfig(), head_config.get("query_augment") or {}, "query_augment")


def with_view_settings(head_config: dict, count: int, augment: AugmentConfig) -> dict:
    """A copy of `head_config` that records the query views (count 0 removes them)."""
    config = {k: v for k, v in head_config.items() if k not in ("query_views", "query_augment")}
    if count > 0:
        config |= {"query_views": int(count), "query_augment": json_ready(dataclasses.asdict(augment))}
    return config


def json_ready(value):
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def query_view_images(image: Image.Image, sha256: str, count: int, augment: AugmentConfig, size: int) -> list[Image.Image]:
    """The `count` augmented views of a query image (RGB, `size` px, or the recipe's `render_size`),
    exactly as training makes them: view i is `ViewMaker(augment, size)(image, view_rng(sha256, i,
    recipe_key(augment)), i)`. `sha256` is the hex digest of the image file's bytes."""
    maker = ViewMaker(augment, size)
    if augment.renderings:  # deterministic: every rendering from one crop (`render_size` px, if set)
        drawn = maker.renderings(image)
        return [drawn[i % len(drawn)] for i in range(count)]
    recipe = recipe_key(augment)
    return [maker(image, view_rng(sha256, i, recipe), i) for i in range(count)]


def embed_views(backbone, views: list, batch: int = 32) -> np.ndarray:
    """(N, D) features of views made by `query_view_images` (images or their uint8 arrays), as they
    are: a view is already at the size its recipe asks for (the input size, or a smaller
    `render_size`), so nothing resizes it."""
    rows = [backbone.features_of_pixels([np.asarray(v, np.uint8) for v in views[start:start + batch]])
            for start in range(0, len(views), batch)]
    return np.concatenate(rows) if rows else np.zeros((0, backbone.feature_dim), np.float32)


def average_view_embeddings(clean: np.ndarray, views: np.ndarray) -> np.ndarray:
    """unit(clean_n + sum_v views_nv) for unit embeddings clean (N, D) and views (N, V, D): the
    query embedding. float32 unit rows."""
    if clean.ndim != 2 or views.ndim != 3 or views.shape[0] != clean.shape[0] or views.shape[2] != clean.shape[1]:
        raise ValueError(f"expected clean (N, D) and views (N, V, D), got {clean.shape} and {views.shape}")
    total = clean.astype(np.float64) + views.astype(np.float64).sum(axis=1)
    return (total / np.maximum(np.linalg.norm(total, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def query_view_features(backbone, image: Image.Image, sha256: str, count: int, augment: AugmentConfig,
                        forward=None) -> np.ndarray:
    """(count, D) features of a query image's views by `backbone` (an encoder, or a copy backbone
    for a head on its descriptors), computed exactly as training's feature cache computes them
    (`FeatureExtractor`): the views are already at their size, so they go to the backbone as
    they are (`features_of_pixels`), not through the clean view's resize + crop. The service passes `image` decoded
    from the uploaded bytes and `sha256` = their hex digest, then `Head.apply_query(clean_features,
    view_features[None])`. `forward` (pixels -> features array) replaces the backbone's own forward,
    e.g. with the service's shared batch."""
    return embed_view_pixels(backbone, query_view_pixels(image, sha256, count, augment, backbone.input_size), forward)


def query_view_pixels(image: Image.Image, sha256: str, count: int, augment: AugmentConfig, size: int) -> np.ndarray:
    """(count, H, W, 3) uint8: the pixels of `query_view_images`, stacked (the service draws them
    in a thread of their own while the backbones run, app/query_views.py)."""
    views = query_view_images(image, sha256, count, augment, size) if count > 0 else []
    return np.stack([np.asarray(v, np.uint8) for v in views]) if views else np.zeros((0, size, size, 3), np.uint8)


def embed_view_pixels(backbone, pixels: np.ndarray, forward=None) -> np.ndarray:
    """(N, D) features of view pixels from `query_view_pixels`, by `forward` where given."""
    if forward is None or not len(pixels):
        return embed_views(backbone, list(pixels))
    return forward(view_forward_input(backbone, pixels))


def view_forward_input(backbone, pixels: np.ndarray):
    """What a shared forward takes for view pixels: the encoder's normalised tensors, a copy
    backbone's uint8 pixels as they are."""
    return backbone.preprocess.normalize_batch(pixels) if hasattr(backbone, "preprocess") else pixels


def warm_up_views(backbone, head) -> None:
    """Get the backbone's engine ready for a head's views when they have a size that its clean
    crops never have (a rendered head's `render_size`): an engine that compiles per input shape (the
    copy backbone's OpenVINO runner, about 150 ms here) then does it when the head is loaded, not in
    the first answer that needs it. Spaces are opened again after every write by another process;
    a shape already compiled costs nothing then."""
    count, augment = head.query_views
    size = (augment.render_size if augment is not None else 0) or backbone.input_size
    prepare = getattr(backbone, "prepare", None)  # only the copy backbone compiles per shape
    if count > 0 and size != backbone.input_size and prepare is not None:
        prepare(count, size)
