"""Head fitting on cached backbone features: the projection head alone is trained, with
InfoNCE between a clean and an augmented view (alignment) plus the infomax terms."""

from __future__ import annotations

import sys

import numpy as np
import torch
from tqdm import tqdm

from training.config import ConfigError, TrainConfig
from training.loop import History, lr_at, make_optimizer, optimise, sample_rows, stack_inputs
from training.losses import AlignDisentangleLoss


def fit_head(encoder, clean: np.ndarray, views: np.ndarray, negatives: np.ndarray | None, config: TrainConfig,
             device: torch.device | str = "cpu", pool_rows: int = 0) -> History:
    """Train `encoder.head` on cached features: clean (N, D), views (N, V, D), negatives (M, D).
    The last `pool_rows` anchors are pool images; with `config.pool_share` > 0 each batch draws
    that share of its anchors from the pool and the rest from the catalog."""
    generator = torch.Generator().manual_seed(config.seed)
    clean_t, views_t = torch.from_numpy(clean).float(), torch.from_numpy(views).float()
    neg_t = torch.from_numpy(negatives).float() if negatives is not None and len(negatives) else None
    encoder.to(device).train()
    encoder.backbone.eval()
    criterion = AlignDisentangleLoss(config.loss)
    optimizer = make_optimizer(encoder.head.parameters(), config)
    history = History()
    batches = AnchorBatches(len(clean_t), pool_rows, config.pool_share, min(config.batch_size, len(clean_t)), generator)
    for step in tqdm(range(config.steps), desc="training head", unit="step", file=sys.stderr, dynamic_ncols=True):
        a, b = pair_views(clean_t, views_t, batches.next(), config.loss.pairing, generator)
        neg = sample_rows(neg_t, config.negatives, generator)
        terms = head_step(encoder, criterion, optimizer, [a, b, neg], lr_at(step, config), device)
        history.add(step, terms)
    encoder.eval()
    encoder.invalidate_id()
    return history


class AnchorBatches:
    """Anchor indices batch by batch: epochs of a shuffled order, either over all anchors or,
    with a pool share, separately over the catalog rows [0, N - P) and the pool rows [N - P, N)."""

    def __init__(self, rows: int, pool_rows: int, pool_share: float, batch: int, generator):
        self.generator = generator
        if 0 < pool_rows < rows and pool_share > 0:
            take_pool = min(pool_rows, max(1, round(batch * pool_share)))
            take_catalog = min(rows - pool_rows, batch - take_pool)
            self.groups = [[0, rows - pool_rows, take_catalog], [rows - pool_rows, pool_rows, take_pool]]
        else:
            self.groups = [[0, rows, batch]]
        self.orders = [torch.empty(0, dtype=torch.long) for _ in self.groups]

    def next(self) -> torch.Tensor:
        picked = []
        for g, (start, count, take) in enumerate(self.groups):
            if len(self.orders[g]) < take:
                self.orders[g] = start + torch.randperm(count, generator=self.generator)
            picked.append(self.orders[g][:take])
            self.orders[g] = self.orders[g][take:]
        return torch.cat(picked)


def pair_views(clean: torch.Tensor, views: torch.Tensor, idx: torch.Tensor, pairing: str, generator) -> tuple:
    """clean: the clean view vs one random augmented view; random: two distinct augmented views."""
    count = views.shape[1]
    first = torch.randint(count, (len(idx),), generator=generator)
    if pairing == "clean":
        return clean[idx], views[idx, first]
    if count < 2:
        raise ConfigError("pairing 'random' needs views >= 2")
    second = (first + torch.randint(1, count, (len(idx),), generator=generator)) % count
    return views[idx, first], views[idx, second]


def head_step(encoder, criterion, optimizer, inputs: list, lr: float, device) -> dict[str, torch.Tensor]:
    """One optimiser step: project [a; b; negatives] through the head in one batch."""
    stacked, sizes = stack_inputs(inputs)
    return optimise(criterion, optimizer, encoder.project(stacked.to(device)), sizes, lr)
