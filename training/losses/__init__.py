"""Loss terms, one per file, and the weighted sum that training minimises.

`AlignDisentangleLoss` returns named terms (`align_loss`, `infomax_loss`, `variance_loss`,
`covariance_loss`) and `loss`, their weighted sum. A term whose weight is 0 is never built or
computed, as in open_clip's `loss.py` and dinov2's `ssl_meta_arch.py`.
"""

from __future__ import annotations

import torch
from torch import nn

from training.config import LossConfig
from training.losses.infomax import LogDetInfomaxLoss, logdet_infomax
from training.losses.infonce import InfoNCELoss, info_nce
from training.losses.supervised import SupervisedContrastiveLoss, multi_positive_nce
from training.losses.vicreg import CovarianceLoss, VarianceLoss, covariance_loss, variance_loss

__all__ = [
    "AlignDisentangleLoss", "CovarianceLoss", "InfoNCELoss", "LogDetInfomaxLoss", "SupervisedContrastiveLoss",
    "VarianceLoss", "covariance_loss", "info_nce", "logdet_infomax", "multi_positive_nce", "variance_loss",
]


class AlignDisentangleLoss(nn.Module):
    """Alignment (InfoNCE between views) plus disentanglement (log-det or VICReg terms)."""

    def __init__(self, config: LossConfig):
        super().__init__()
        self.weights: dict[str, float] = {}
        self.terms = nn.ModuleDict()
        candidates = {
            "align_loss": (config.align_weight, lambda: InfoNCELoss(config.temperature)),
            "infomax_loss": (config.infomax_weight, lambda: LogDetInfomaxLoss(config.infomax_eps)),
            "variance_loss": (config.variance_weight, lambda: VarianceLoss(config.vicreg_gamma)),
            "covariance_loss": (config.covariance_weight, CovarianceLoss),
        }
        for name, (weight, build) in candidates.items():
            if weight > 0:
                self.weights[name] = float(weight)
                self.terms[name] = build()
        if not self.terms:
            raise ValueError("every loss weight is 0: nothing to train")

    def forward(self, a: torch.Tensor, b: torch.Tensor, negatives: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """a, b: (B, D) embeddings of two views of the same B images; negatives: (M, D) or None."""
        terms = {}
        for name, term in self.terms.items():
            terms[name] = term(a, b, negatives) if name == "align_loss" else term(a, b)
        terms["loss"] = sum(self.weights[name] * value for name, value in terms.items())
        return terms
