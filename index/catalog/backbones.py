"""The backbones of a catalog: the encoder (Lite0, whose features the style and content spaces
map) and an optional copy backbone (SSCD, training/sscd.py, for the copy space). Each has its own
feature store (ATTRIB_HOME/features/<backbone id>/) and every space names the backbone it maps.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class FeatureBackbone(Protocol):
    """What the catalog needs of a backbone: the encoder (Lite0) or a copy backbone (training/sscd.py)."""

    name: str
    backbone_id: str
    feature_dim: int
    input_size: int

    def crop(self, image) -> np.ndarray: ...

    def features_of_pixels(self, pixels) -> np.ndarray: ...

    def embed_features(self, images, batch_size: int = 32) -> np.ndarray: ...


def backbone_name(backbone_id: str) -> str:
    """`efficientnet_lite0-e6c4...` -> `efficientnet_lite0`: the name a backbone id starts with."""
    return backbone_id.rsplit("-", 1)[0]
