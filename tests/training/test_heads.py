"""Heads over stored features: ids, application, and the checks that refuse a head."""

import numpy as np
import pytest
import torch

from training.encoders import create_encoder, load_encoder
from training.heads import Head, HeadError, load_head


def perturbed_head(out_dim=64, seed=0):
    encoder = create_encoder(head_config={"type": "linear", "out_dim": out_dim})
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        encoder.head.weight.add_(0.05 * torch.randn(encoder.head.weight.shape, generator=generator))
    encoder.invalidate_id()
    return encoder


def test_backbone_id_is_the_raw_encoders_id_and_survives_a_head(encoder):
    assert encoder.backbone_id == encoder.encoder_id
    trained = perturbed_head()
    assert trained.backbone_id == encoder.backbone_id and trained.encoder_id != encoder.encoder_id


def test_a_loaded_head_maps_features_as_the_whole_encoder_does(encoder, photos, tmp_path):
    from index.images import decode_image

    trained = perturbed_head()
    path = trained.save(tmp_path / "head.pt")
    head = load_head(path, encoder.backbone_id, encoder.feature_dim)
    images = [decode_image(p.read_bytes()).image for p in photos[:3]]
    features = encoder.embed_features(images)
    assert head.head_id == trained.encoder_id and head.dim == 64
    assert np.allclose(head.apply(features), trained.embed_images(images), atol=1e-5)
    identity = Head.identity(encoder.backbone_id, encoder.feature_dim)
    assert np.allclose(identity.apply(features), encoder.embed_images(images), atol=1e-5)


def test_bad_heads_are_refused_with_a_code(encoder, tmp_path):
    other = create_encoder(random_init=True, head_config={"type": "linear"}).save(tmp_path / "other.pt")
    with pytest.raises(HeadError) as caught:
        load_head(other, encoder.backbone_id, encoder.feature_dim)
    assert caught.value.code == "backbone_mismatch"
    assert encoder.backbone_id in caught.value.message and "efficientnet_lite0-" in caught.value.message

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(perturbed_head().save(tmp_path / "good.pt").read_bytes()[:5000])
    with pytest.raises(HeadError) as caught:
        load_head(corrupt, encoder.backbone_id, encoder.feature_dim)
    assert caught.value.code == "head_unreadable"

    narrow = load_encoder("default")
    narrow.head_config = {"type": "linear", "in_dim": 640, "out_dim": 32}
    narrow.head = torch.nn.Linear(640, 32, bias=False)
    narrow.invalidate_id()
    with pytest.raises(HeadError) as caught:
        load_head(narrow.save(tmp_path / "narrow.pt"), encoder.backbone_id, encoder.feature_dim)
    assert caught.value.code == "head_dim_mismatch"
