"""The one preprocessing definition: RGB PIL image -> normalised tensor for a backbone.

Evaluation and the catalog use `Preprocess.__call__` (resize the short side, centre crop).
Training augmentations produce their own geometry and then call `to_tensor`; ingestion crops in
its decoding threads and normalises whole batches (`normalize_batch`). Both go through one colour
normalisation. torch is imported only when a tensor is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch


class Geometry(Protocol):
    """What preprocessing reads of a backbone (training/backbones.py's BackboneSpec, or the copy
    backbone's own geometry in training/sscd.py)."""

    input_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


class Preprocess:
    def __init__(self, spec: Geometry):
        self.size = spec.input_size
        self.resample = _RESAMPLE.get(spec.interpolation, Image.Resampling.BICUBIC)
        self.mean = np.asarray(spec.mean, dtype=np.float32)
        self.std = np.asarray(spec.std, dtype=np.float32)

    # Beyond this aspect ratio only the centre crop is resampled: a 50000 x 1 image would otherwise
    # be resized to 11,200,000 x 224 pixels (7.5 GB) first. Below it, results are unchanged.
    MAX_RESIZED_ASPECT = 16

    def _geometry(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The resized size (short side = input size) and the centre crop's top-left corner."""
        scale = self.size / min(width, height)
        new_w, new_h = max(self.size, round(width * scale)), max(self.size, round(height * scale))
        return new_w, new_h, (new_w - self.size) // 2, (new_h - self.size) // 2

    def resize_crop(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        new_w, new_h, left, top = self._geometry(width, height)
        if max(new_w, new_h) > self.MAX_RESIZED_ASPECT * self.size:
            sx, sy = width / new_w, height / new_h
            box = (left * sx, top * sy, (left + self.size) * sx, (top + self.size) * sy)
            return image.resize((self.size, self.size), self.resample, box=box)
        if (new_w, new_h) != (width, height):  # the same size would only be copied
            image = image.resize((new_w, new_h), self.resample)
        return image.crop((left, top, left + self.size, top + self.size))

    def resize_crop_tensor(self, image: torch.Tensor) -> torch.Tensor:
        """`resize_crop` of a (3, H, W) uint8 tensor on any device (the device-decoding path),
        antialiased like Pillow and rounded to 8 bits: (size, size, 3) uint8."""
        import torch
        import torch.nn.functional as F

        new_w, new_h, left, top = self._geometry(image.shape[2], image.shape[1])
        mode = "bicubic" if self.resample == Image.Resampling.BICUBIC else "bilinear"
        resized = F.interpolate(image[None].float(), size=(new_h, new_w), mode=mode, antialias=True)[0]
        crop = resized[:, top:top + self.size, left:left + self.size]
        return crop.round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            image = image.convert("RGB")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), self.resample)
        return self.normalize_batch(np.asarray(image, dtype=np.uint8)[None])[0]

    def normalize_batch(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, size, size, 3) uint8 RGB -> (N, 3, size, size) float32, normalised, on the
        pixels' device. Arrays are normalised by numpy in this thread: torch's intra-op threads
        would spin beside the inference engine's and slow its forward."""
        import torch

        mean, std = self.mean[:, None, None], self.std[:, None, None]
        if isinstance(pixels, torch.Tensor):
            batch = pixels.permute(0, 3, 1, 2).float().div_(255.0)
            return batch.sub_(torch.from_numpy(mean).to(batch.device)).div_(torch.from_numpy(std).to(batch.device))
        out = np.empty((len(pixels), 3, *np.shape(pixels)[1:3]), np.float32)
        np.divide(np.asarray(pixels, np.uint8).transpose(0, 3, 1, 2), np.float32(255.0), out=out)
        out -= mean
        out /= std
        return torch.from_numpy(out)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.to_tensor(self.resize_crop(image))
