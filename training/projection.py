"""What turns pooled backbone features into a space's unit vectors: the projection head (linear or
MLP), the centring, and the optional query head (a linear map that gives a query, from its one
clean view, the embedding its views would have given; training/distil.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.errors import EncoderError


def build_head(config: dict) -> nn.Module:
    """Projection head from its config: {"type": "linear"|"mlp", "in_dim", "out_dim", "hidden_dim"}."""
    kind, in_dim, out_dim = config["type"], int(config["in_dim"]), int(config["out_dim"])
    if kind == "linear":
        head = nn.Linear(in_dim, out_dim, bias=False)
        with torch.no_grad():
            head.weight.copy_(torch.eye(out_dim, in_dim))
        return head
    if kind == "mlp":
        hidden = int(config.get("hidden_dim") or 2048)
        return nn.Sequential(
            nn.Linear(in_dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )
    raise EncoderError(f"unknown head type {kind!r}: use 'linear' or 'mlp'", code="bad_config")


def build_query_head(config: dict | None) -> nn.Linear | None:
    """The query head a head config asks for (`"query_head": true`), or None."""
    if not config or not config.get("query_head"):
        return None
    return nn.Linear(int(config["in_dim"]), int(config["out_dim"]), bias=False)


def project_features(features: torch.Tensor, head: nn.Module | None, center: torch.Tensor) -> torch.Tensor:
    """Pooled backbone features -> unit embedding: normalise, centre, head (if any), normalise."""
    features = F.normalize(features.float(), dim=-1)
    if head is not None:
        features = head(features - center)
    return F.normalize(features, dim=-1)
