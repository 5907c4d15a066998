"""A copy backbone (training/sscd.py) as a torch backbone module, so training, the self-check and
checkpoints treat it as any other backbone."""

from __future__ import annotations

import torch
from torch import nn

from training.errors import EncoderError
from training.sscd import CopyBackbone


class CopyModule(nn.Module):
    """A copy backbone behind the torch backbone interface, so `attrib train --backbone sscd_distilled`
    fits a head on the copy space's descriptors: (B, 3, S, S) pixels scaled to [0, 1] (the spec's
    mean 0, std 1) -> descriptors, run by the copy backbone's engine on the CPU. Nothing in it
    trains; its one buffer is the model file's digest, so feature caches and encoder ids follow the
    model, and a checkpoint made with another model file is refused (`check_model`)."""

    def __init__(self, copy: CopyBackbone):
        super().__init__()
        self.copy = copy
        self.register_buffer("model_digest", _digest_tensor(copy.backbone_id))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        rows = pixels.detach().float().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
        return torch.from_numpy(self.copy.features_of_pixels(rows.permute(0, 2, 3, 1).cpu().numpy())).to(pixels.device)

    def check_model(self) -> None:
        if not torch.equal(self.model_digest.cpu(), _digest_tensor(self.copy.backbone_id)):
            raise EncoderError(f"this checkpoint was trained on another {self.copy.name} model file than the one "
                               f"installed ({self.copy.backbone_id}); train it again", code="backbone_mismatch")


def _digest_tensor(backbone_id: str) -> torch.Tensor:
    return torch.tensor(list(backbone_id.rsplit("-", 1)[1].encode()), dtype=torch.uint8)
