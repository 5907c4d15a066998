"""Disentanglement: the CorInfoMax log-determinant of the embedding covariance.

Ozsoy, Hamdan, Arik, Yuret and Erdogan, *Self-Supervised Learning with an Information Maximization
Criterion* (NeurIPS 2022). Maximising log det(Cov(z) + eps I) spreads the embedding over all of
its dimensions and decorrelates them; with the trace held fixed it is largest when the covariance
is isotropic. In the Alignment-and-Disentanglement reading (arXiv 2601.22663) this term plays the
whitening constraint of canonical correlation analysis, and alignment plays the cross-covariance.

The embeddings used here are unit vectors; they are scaled by sqrt(D) first, so a perfectly
whitened embedding has Cov = I and `eps` is relative to unit variance. The loss is divided by D
so its size does not depend on the embedding width.
"""

from __future__ import annotations

import torch
from torch import nn


def scaled_covariance(z: torch.Tensor) -> torch.Tensor:
    """Covariance (D, D) of rows of z (B, D) after scaling by sqrt(D); unbiased (B - 1)."""
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"expected a (B>=2, D) tensor, got {tuple(z.shape)}")
    z = _floating(z) * z.shape[1] ** 0.5
    centred = z - z.mean(dim=0, keepdim=True)
    return centred.T @ centred / (z.shape[0] - 1)


def logdet_infomax(z: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """-log det(Cov(sqrt(D) z) + eps I) / D for one view; lower is more informative."""
    cov = scaled_covariance(z)
    eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
    return -torch.linalg.slogdet(cov + eps * eye)[1] / cov.shape[0]


class LogDetInfomaxLoss(nn.Module):
    """Mean of the per-view log-det terms, as CorInfoMax applies it to both branches."""

    def __init__(self, eps: float = 0.1):
        super().__init__()
        self.eps = eps

    def forward(self, *views: torch.Tensor) -> torch.Tensor:
        return torch.stack([logdet_infomax(z, self.eps) for z in views]).mean()


def _floating(z: torch.Tensor) -> torch.Tensor:
    """At least float32 (half-precision covariances are too coarse for a log-determinant)."""
    return z.to(torch.promote_types(z.dtype, torch.float32))
