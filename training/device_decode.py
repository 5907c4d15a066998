"""JPEGs decoded on the inference device, in batches: nvJPEG on CUDA through
`torchvision.io.decode_jpeg(..., device=...)`; on the CPU the same call runs libjpeg, which is how
the path is tested without a GPU.

Only JPEGs that `training.images.probe_jpeg` passes come here (8-bit RGB or greyscale, upright,
header already checked against the pixel limit); everything else is decoded by Pillow. The crop
and the colour normalisation run on the device too (`Preprocess.resize_crop_tensor`,
`normalize_batch`), and the forward runs under bf16 autocast on CUDA (`Encoder.features_of_pixels`).
Pixels differ from Pillow's by rounding (a different IDCT and resampler): cosine ≥ 0.99 between
the two paths' features, checked in tests/training/test_device_decode.py.
"""

from __future__ import annotations

import numpy as np
import torch


def decode_jpegs(datas: list[bytes], device: torch.device) -> list[torch.Tensor | None]:
    """(3, H, W) uint8 RGB tensors on `device`, one per file; None for a file that fails. The
    files go in one batch; when the batch fails, each is decoded alone so only the bad ones fail."""
    from torchvision.io import ImageReadMode, decode_jpeg

    tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
    try:
        return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        decoded: list[torch.Tensor | None] = []
        for tensor in tensors:
            try:
                decoded.append(decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                decoded.append(None)
        return decoded


def jpeg_features(encoder, datas: list[bytes]) -> tuple[np.ndarray, list[bool]]:
    """Raw backbone features of the JPEGs that decode (rows in order), and which ones did."""
    images = decode_jpegs(datas, encoder.device)
    ok = [image is not None for image in images]
    crops = [encoder.preprocess.resize_crop_tensor(image) for image in images if image is not None]
    if not crops:
        return np.zeros((0, encoder.feature_dim), np.float32), ok
    return encoder.features_of_pixels(torch.stack(crops)), ok
