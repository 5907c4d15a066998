"""The VICReg alternative to the log-det infomax: variance and covariance regularisers.

Bardes, Ponce and LeCun, *VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning* (ICLR 2022). The variance term is a hinge on each dimension's standard
deviation; the covariance term is the sum of squared off-diagonal covariances over D. As in
`infomax.py`, unit embeddings are scaled by sqrt(D) first so that a whitened embedding has unit
variance per dimension and `gamma` = 1 is the natural target.
"""

from __future__ import annotations

import torch
from torch import nn

from training.losses.infomax import _floating, scaled_covariance


def variance_loss(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """mean_d relu(gamma - sqrt(Var_d + eps)) over the dimensions of sqrt(D) z."""
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"expected a (B>=2, D) tensor, got {tuple(z.shape)}")
    std = torch.sqrt((_floating(z) * z.shape[1] ** 0.5).var(dim=0) + eps)
    return torch.relu(gamma - std).mean()


def covariance_loss(z: torch.Tensor) -> torch.Tensor:
    """sum of squared off-diagonal entries of Cov(sqrt(D) z), over D."""
    cov = scaled_covariance(z)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / cov.shape[0]


class VarianceLoss(nn.Module):
    def __init__(self, gamma: float = 1.0):
        super().__init__()
        self.gamma = gamma

    def forward(self, *views: torch.Tensor) -> torch.Tensor:
        return torch.stack([variance_loss(z, self.gamma) for z in views]).mean()


class CovarianceLoss(nn.Module):
    def forward(self, *views: torch.Tensor) -> torch.Tensor:
        return torch.stack([covariance_loss(z) for z in views]).mean()
