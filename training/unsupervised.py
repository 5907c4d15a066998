"""The unsupervised A&D run (arXiv 2601.22663): features of the anchors (catalog and pool) and
the negatives, the centring vector, the fit (head on cached features, or end to end on CUDA),
the content recipe (training/recipe.py: query head, self-check), the label-free separation
check, and the outputs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from training.config import TrainConfig
from training.data import DataError, Features, FeatureExtractor, TrainingImages
from training.end_to_end import fit_end_to_end
from training.head import fit_head
from training.loop import History, extractor_for, make_encoder, normalised_mean, training_device
from training.outputs import save_outputs
from training.separation import separation_check
from training.query_views import with_view_settings
from training.recipe import apply_recipe
from training.whitening import fit_whitening_head

NO_POOL = (
    "no pool images: the whitening head is left at the identity (centred raw features). A head fitted on "
    "sources alone learns only their medium and ranks synthetic queries away from them; add --pool images"
)


def train_unsupervised(config: TrainConfig, images: TrainingImages, output: Path, progress=None) -> dict:
    """`progress(n)` is told of every n images whose features are ready (a job's progress)."""
    if not images.anchors and not images.pool:
        raise DataError("no anchor images to train on (distractors alone are negatives only)")
    device = training_device(config)
    encoder = make_encoder(config)
    extractor = extractor_for(encoder, config, progress)
    started = time.perf_counter()
    catalog = _extract(extractor, images.anchors, config.views, "catalog features")
    pool = _extract(extractor, images.pool, config.views, "pool features")
    negatives = extractor.extract(images.negatives, desc="negative features") if images.negatives else None
    extract_s = time.perf_counter() - started
    anchors = [f for f in (catalog, pool) if f is not None]
    clean = np.concatenate([f.clean for f in anchors])
    if len(clean) < 2:
        raise DataError("need at least 2 readable anchor images")
    with torch.no_grad():
        encoder.center.copy_(normalised_mean(clean, *([negatives.clean] if negatives is not None else [])))
    started = time.perf_counter()
    history, fit = History(), {"method": config.head.fit}
    if config.unfreeze_blocks:
        history = fit_end_to_end(encoder, images, config, device)
    elif config.head.fit == "whiten" and pool is None:
        fit = {"method": "identity", "reason": NO_POOL}
        print(f"note: {NO_POOL}", file=sys.stderr)
    elif config.head.fit == "whiten":
        views = np.concatenate([f.views for f in anchors])
        fit |= fit_whitening_head(encoder, clean, views, config.head.whiten_eps)
    else:
        views = np.concatenate([f.views for f in anchors])
        history = fit_head(encoder, clean, views, None if negatives is None else negatives.clean, config, device,
                           pool_rows=0 if pool is None else len(pool.paths))
    train_s = time.perf_counter() - started
    if config.unfreeze_blocks:  # the cached features are the old backbone's: queries use the views
        encoder.head_config = with_view_settings(encoder.head_config, config.head.query_views, config.augment)
        recipe = {"recipe": "views", "query_views": config.head.query_views, "reason": "end to end"}
        check = {"computed": False, "reason": "end to end: the backbone changed, cached features no longer apply", "warning": None}
    else:
        recipe = apply_recipe(encoder, config, anchors, catalog, negatives, pool)
        check = separation_check(encoder, None if pool is None else pool.clean, None if catalog is None else catalog.clean)
    if check["warning"]:
        print(f"warning: {check['warning']}", file=sys.stderr)
    summary = {
        "anchors": len(clean), "catalog_anchors": 0 if catalog is None else len(catalog.paths),
        "pool_anchors": 0 if pool is None else len(pool.paths), "negatives": 0 if negatives is None else len(negatives.paths),
        "feature_seconds": round(extract_s, 1), "train_seconds": round(train_s, 1), "head_fit": fit,
        "query_views": config.head.query_views, "recipe": recipe,
        "final_terms": history.last(),
        "separation_check": check,
    }
    return save_outputs(encoder.cpu(), config, history, output, summary)


def _extract(extractor: FeatureExtractor, paths: list[Path], views: int, desc: str) -> Features | None:
    return extractor.extract(paths, views=views, desc=desc) if paths else None
