"""Pieces every training loop shares: the encoder and device for a config, the feature extractor,
the centring vector, the learning-rate schedule, the optimiser step and the loss history."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from training.config import ConfigError, TrainConfig, default_cache_dir
from training.data import FeatureCache, FeatureExtractor, backbone_key


def make_encoder(config: TrainConfig, head_type: str | None = None, out_dim: int | None = None):
    from training.backbones import AUTO, DEFAULT_BACKBONE
    from training.encoders import create_encoder

    head = {"type": head_type or config.head.type, "hidden_dim": config.head.hidden_dim}
    if head["type"] == "mlp" or out_dim is not None:
        head["out_dim"] = out_dim or config.head.out_dim
    return create_encoder(DEFAULT_BACKBONE if config.backbone == AUTO else config.backbone, config.weights, head_config=head)


def training_device(config: TrainConfig) -> torch.device:
    from training.encoders import resolve_device

    if config.unfreeze_blocks and not torch.cuda.is_available():
        raise ConfigError("unfreeze_blocks > 0 (end-to-end training) needs a CUDA device; use 0 on the CPU")
    return resolve_device(config.device)


def extractor_for(encoder, config: TrainConfig, progress=None) -> FeatureExtractor:
    cache = FeatureCache(config.cache_dir or default_cache_dir(), backbone_key(encoder))
    return FeatureExtractor(encoder, cache, config.augment, config.image_batch_size, progress)


def normalised_mean(*arrays: np.ndarray) -> torch.Tensor:
    """The centring vector: mean of the L2-normalised clean features."""
    rows = torch.from_numpy(np.concatenate(arrays)).float()
    return torch.nn.functional.normalize(rows, dim=-1).mean(dim=0)


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 0."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(list(params), lr=config.lr, weight_decay=config.weight_decay)


@dataclass
class History:
    steps: list[int] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)

    def add(self, step: int, terms: dict[str, torch.Tensor]) -> None:
        self.steps.append(step)
        for name, value in terms.items():
            self.terms.setdefault(name, []).append(float(value.detach()))

    def last(self, window: int = 20) -> dict[str, float]:
        return {name: float(np.mean(values[-window:])) for name, values in self.terms.items()}


def sample_rows(rows: torch.Tensor | None, count: int, generator) -> torch.Tensor | None:
    if rows is None or count == 0:
        return None
    if len(rows) <= count:
        return rows
    return rows[torch.randperm(len(rows), generator=generator)[:count]]


def stack_inputs(inputs: list) -> tuple[torch.Tensor, list[int]]:
    """[a, b, negatives or None] -> one batch and the sizes to split it back."""
    return torch.cat([x for x in inputs if x is not None]), [0 if x is None else len(x) for x in inputs]


def optimise(criterion, optimizer, embedded: torch.Tensor, sizes: list[int], lr: float) -> dict[str, torch.Tensor]:
    """Split the embedded batch into (a, b, negatives), take one step; a group's `scale` scales lr."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("scale", 1.0)
    a, b, neg = torch.split(embedded, sizes)
    terms = criterion(a, b, neg if len(neg) else None)
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    optimizer.step()
    return terms
