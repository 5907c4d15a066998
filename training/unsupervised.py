"""The unsupervised A&D run (arXiv 2601.22663): features of the anchors (catalog and pool) and
the negatives, the centring vector, the fit (head on cached features, or end to end on CUDA),
and the outputs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from training.config import TrainConfig
from training.data import DataError, TrainingImages
from training.end_to_end import fit_end_to_end
from training.head import fit_head
from training.loop import extractor_for, make_encoder, normalised_mean, training_device
from training.outputs import save_outputs


def train_unsupervised(config: TrainConfig, images: TrainingImages, output: Path) -> dict:
    if not images.anchors and not images.pool:
        raise DataError("no anchor images to train on (distractors alone are negatives only)")
    device = training_device(config)
    encoder = make_encoder(config)
    extractor = extractor_for(encoder, config)
    started = time.perf_counter()
    anchors = extractor.extract(images.anchors + images.pool, views=config.views, desc="anchor features")
    negatives = extractor.extract(images.negatives, desc="negative features").clean if images.negatives else None
    extract_s = time.perf_counter() - started
    if len(anchors.paths) < 2:
        raise DataError("need at least 2 readable anchor images")
    with torch.no_grad():
        encoder.center.copy_(normalised_mean(anchors.clean, *([negatives] if negatives is not None else [])))
    started = time.perf_counter()
    if config.unfreeze_blocks:
        history = fit_end_to_end(encoder, images, config, device)
    else:
        history = fit_head(encoder, anchors.clean, anchors.views, negatives, config, device)
    train_s = time.perf_counter() - started
    summary = {
        "anchors": len(anchors.paths), "negatives": 0 if negatives is None else len(negatives),
        "feature_seconds": round(extract_s, 1), "train_seconds": round(train_s, 1), "final_terms": history.last(),
    }
    return save_outputs(encoder.cpu(), config, history, output, summary)
