"""The one preprocessing definition: RGB PIL image -> normalised tensor for a backbone.

Evaluation and the catalog use `Preprocess.__call__` (resize the short side, centre crop).
Training augmentations produce their own geometry and then call `to_tensor`, so the colour
normalisation is never written twice.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from training.backbones import BackboneSpec

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


class Preprocess:
    def __init__(self, spec: BackboneSpec):
        self.size = spec.input_size
        self.resample = _RESAMPLE.get(spec.interpolation, Image.Resampling.BICUBIC)
        self.mean = np.asarray(spec.mean, dtype=np.float32)
        self.std = np.asarray(spec.std, dtype=np.float32)

    # Beyond this aspect ratio only the centre crop is resampled: a 50000 x 1 image would otherwise
    # be resized to 11,200,000 x 224 pixels (7.5 GB) first. Below it, results are unchanged.
    MAX_RESIZED_ASPECT = 16

    def resize_crop(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        scale = self.size / min(width, height)
        new_w, new_h = max(self.size, round(width * scale)), max(self.size, round(height * scale))
        left, top = (new_w - self.size) // 2, (new_h - self.size) // 2
        if max(new_w, new_h) > self.MAX_RESIZED_ASPECT * self.size:
            sx, sy = width / new_w, height / new_h
            box = (left * sx, top * sy, (left + self.size) * sx, (top + self.size) * sy)
            return image.resize((self.size, self.size), self.resample, box=box)
        image = image.resize((new_w, new_h), self.resample)
        return image.crop((left, top, left + self.size, top + self.size))

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            image = image.convert("RGB")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), self.resample)
        array = (np.asarray(image, dtype=np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(array.transpose(2, 0, 1).copy())

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.to_tensor(self.resize_crop(image))
