"""An encoder's identity: content hashes of its configuration and tensors.

`encoder_id` names an encoder by everything that decides its embeddings (backbone, head, centre);
`backbone_id` names the backbone alone, and equals the encoder_id of that backbone with no head,
so a head trained on a frozen backbone is known to match the raw encoder's stored features.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from training.backbones import BackboneSpec


def compute_backbone_id(spec: BackboneSpec, backbone: nn.Module, feature_dim: int) -> str:
    """The encoder_id the same backbone has with no head and a zero centre."""
    tensors = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    tensors["center"] = torch.zeros(feature_dim)
    config = {"backbone": spec.to_dict(), "head": None}
    return f"{_label(spec)}-{content_hash(config, tensors)}"


def _label(spec: BackboneSpec) -> str:
    return spec.name.replace(":", "-").replace("/", "-")


def compute_encoder_id(spec: BackboneSpec, backbone: nn.Module, head: nn.Module | None, head_config: dict | None,
                       center: torch.Tensor, query_head: nn.Module | None = None) -> str:
    """Content hash of the config (backbone spec and head config) and every tensor (backbone,
    head, centre, query head), in key order."""
    tensors = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    if head is not None:
        tensors |= {f"head.{k}": v for k, v in head.state_dict().items()}
    if query_head is not None:
        tensors |= {f"query_head.{k}": v for k, v in query_head.state_dict().items()}
    tensors["center"] = center
    label = _label(spec)
    if head_config:
        label += f"+{head_config['type']}"
    return f"{label}-{content_hash({'backbone': spec.to_dict(), 'head': head_config}, tensors)}"


def content_hash(config: dict, tensors: dict[str, torch.Tensor]) -> str:
    """16 hex digits of the sha256 of a JSON config and named tensors, in key order."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for key in sorted(tensors):
        tensor = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
