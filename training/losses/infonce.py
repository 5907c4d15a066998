"""Alignment: the NT-Xent / InfoNCE loss between two views of the same images.

Oord, Li and Vinyals, *Representation Learning with Contrastive Predictive Coding* (2018), and
Chen, Kornblith, Norouzi and Hinton, *A Simple Framework for Contrastive Learning of Visual
Representations* (SimCLR, ICML 2020). For a batch of B pairs (a_i, b_i), each of the 2B
embeddings must pick out its partner among the other 2B - 1 embeddings of the batch plus any
extra negative-only embeddings (distractors), by cosine similarity over a temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float, negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric NT-Xent. a, b: (B, D) paired rows; negatives: (M, D) or None. Inputs are
    L2-normalised here, so any scale works. Returns the mean loss over the 2B anchors."""
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"info_nce expects two (B, D) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2:
        raise ValueError("info_nce needs a batch of at least 2 pairs")
    if negatives is not None and (negatives.ndim != 2 or negatives.shape[1] != a.shape[1]):
        raise ValueError(f"negatives must be (M, {a.shape[1]}), got {tuple(negatives.shape)}")
    batch = a.shape[0]
    views = F.normalize(torch.cat([a, b]), dim=-1)
    logits = views @ views.T / temperature
    logits = logits.masked_fill(torch.eye(2 * batch, dtype=torch.bool, device=a.device), float("-inf"))
    if negatives is not None and len(negatives):
        logits = torch.cat([logits, views @ F.normalize(negatives, dim=-1).T / temperature], dim=1)
    targets = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(a.device)
    return F.cross_entropy(logits, targets)


class InfoNCELoss(nn.Module):
    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, a: torch.Tensor, b: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
        return info_nce(a, b, self.temperature, negatives)
