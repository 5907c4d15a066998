"""The supervised baseline's loss: contrastive matching of synthetic queries to their sources.

Wang, Efros, Zhu and Zhang, *Evaluating Data Attribution for Text-to-Image Models* (ICCV 2023)
tune a query mapper and a source mapper (both linear, identity-initialised) on labelled
(synthetic, exemplar) pairs so that a query scores its own exemplars above other images. Here
each query row of the batch is matched against every source row of the batch plus negative-only
rows; every source with the query's concept is a positive (a multi-positive InfoNCE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def multi_positive_nce(
    queries: torch.Tensor,
    sources: torch.Tensor,
    positive: torch.Tensor,
    temperature: float,
    negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """queries (B, D), sources (S, D), positive (B, S) bool with >= 1 True per row,
    negatives (M, D) or None. Loss = mean over queries of -log(sum_pos exp / sum_all exp)."""
    if positive.shape != (queries.shape[0], sources.shape[0]):
        raise ValueError(f"positive mask must be {(queries.shape[0], sources.shape[0])}, got {tuple(positive.shape)}")
    if not bool(positive.any(dim=1).all()):
        raise ValueError("every query needs at least one positive source")
    q = F.normalize(queries, dim=-1)
    gallery = sources if negatives is None else torch.cat([sources, negatives])
    logits = q @ F.normalize(gallery, dim=-1).T / temperature
    mask = torch.cat([positive, positive.new_zeros(len(q), len(gallery) - len(sources))], dim=1)
    positive_logits = logits.masked_fill(~mask, float("-inf"))
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(positive_logits, dim=1)).mean()


class SupervisedContrastiveLoss(nn.Module):
    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, queries, sources, positive, negatives=None) -> torch.Tensor:
        return multi_positive_nce(queries, sources, positive, self.temperature, negatives)
