"""Backbone registry, the Lite0 key mapping, encoder ids and checkpoint files."""

import numpy as np
import pytest
import torch
from PIL import Image

from training.backbones import build_backbone, lite0_weights_path, map_lite0_state_dict, resolve_backbone
from training.encoders import create_encoder, load_checkpoint, load_encoder
from training.errors import EncoderError


@pytest.fixture(scope="module")
def images(photos):
    return [Image.open(p).convert("RGB") for p in photos[:4]]


def test_lite0_key_mapping_fits_timm_by_position_and_shape():
    import timm

    source = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    mapped = map_lite0_state_dict(source, target)
    assert "conv_stem.weight" in mapped and "classifier.weight" in mapped
    assert not any(k.endswith("num_batches_tracked") for k in mapped)
    assert torch.equal(mapped["conv_stem.weight"], source["_conv_stem.weight"])
    assert len(mapped) == len([k for k in target if not k.endswith("num_batches_tracked")])


def test_lite0_key_mapping_refuses_a_shape_mismatch():
    import timm

    source = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    source["_conv_stem.weight"] = torch.zeros(8, 3, 3, 3)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    with pytest.raises(EncoderError, match="_conv_stem.weight"):
        map_lite0_state_dict(source, target)
    del source["_fc.bias"]
    with pytest.raises(EncoderError, match="tensors"):
        map_lite0_state_dict(source, target)


def test_default_encoder_gives_unit_float32_vectors_and_knows_imagenet(encoder, images, photos):
    vectors = encoder.embed_images(images)
    assert vectors.dtype == np.float32 and vectors.shape == (4, 1280)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # real ImageNet weights: the classifier (dropped for embedding) would get most samples right
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(map_lite0_state_dict(torch.load(lite0_weights_path(), weights_only=True), model.state_dict()), strict=False)
    model.eval()
    batch = torch.stack([encoder.preprocess(Image.open(p).convert("RGB")) for p in photos[:20]])
    with torch.no_grad():
        predicted = model(batch).argmax(1).tolist()
    assert sum(p == i for i, p in enumerate(predicted)) >= 14


def test_encoder_id_is_a_content_hash(encoder):
    assert encoder.encoder_id == load_encoder("default").encoder_id
    assert encoder.encoder_id.startswith("efficientnet_lite0-")
    with_head = create_encoder(head_config={"type": "linear"})
    assert with_head.encoder_id != encoder.encoder_id
    before = with_head.encoder_id
    with torch.no_grad():
        with_head.head.weight[0, 0] += 1e-3
    with_head.invalidate_id()
    assert with_head.encoder_id != before


def test_identity_linear_head_keeps_the_backbone_embedding(encoder, images):
    with_head = create_encoder(head_config={"type": "linear"})
    assert np.allclose(with_head.embed_images(images), encoder.embed_images(images), atol=1e-5)


@pytest.mark.parametrize("head", [None, {"type": "linear"}, {"type": "mlp", "hidden_dim": 64, "out_dim": 32}])
def test_checkpoint_round_trip(tmp_path, images, head):
    original = create_encoder(head_config=head)
    if head:
        with torch.no_grad():
            original.center.normal_()
    path = original.save(tmp_path / "encoder.pt")
    loaded = load_checkpoint(path)
    assert loaded.encoder_id == original.encoder_id
    assert loaded.config == original.config and loaded.dim == original.dim
    assert np.allclose(loaded.embed_images(images), original.embed_images(images), atol=1e-6)
    assert load_encoder(str(path)).encoder_id == original.encoder_id


def test_damaged_or_foreign_checkpoints_are_refused(tmp_path):
    path = create_encoder(head_config={"type": "linear"}).save(tmp_path / "encoder.pt")
    payload = torch.load(path, weights_only=True)
    payload["head_state"]["weight"][0, 0] = 5.0
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(EncoderError, match="damaged"):
        load_checkpoint(tmp_path / "tampered.pt")
    torch.save({"some": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(EncoderError, match="not an attrib encoder checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(EncoderError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")


def test_missing_weights_are_an_error_never_random(tmp_path):
    for name in ("open_clip:RN50", "timm:resnet10t"):
        with pytest.raises(EncoderError, match="needs a local weights file") as caught:
            load_encoder(name)
        assert caught.value.code == "weights_missing"
    with pytest.raises(EncoderError, match="weights file not found"):
        load_encoder("timm:resnet10t", tmp_path / "nope.pth")
    with pytest.raises(EncoderError, match="checkpoint not found"):
        load_encoder(str(tmp_path / "nope.pt"))
    with pytest.raises(EncoderError, match="unknown backbone"):
        resolve_backbone("vgg16")


def test_timm_backbone_loads_a_local_checkpoint(tmp_path, images):
    import timm

    reference = timm.create_model("resnet10t", pretrained=False, num_classes=0).eval()
    torch.save(reference.state_dict(), tmp_path / "resnet10t.pth")
    encoder = load_encoder("timm:resnet10t", tmp_path / "resnet10t.pth")
    pixels = torch.stack([encoder.preprocess(im) for im in images])
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference(pixels), dim=-1).numpy()
    assert np.allclose(encoder.embed_images(images), expected, atol=1e-5)
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    with pytest.raises(EncoderError, match="does not fit"):
        load_encoder("timm:resnet10t", tmp_path / "wrong.pth")


def test_open_clip_backbone_loads_a_local_checkpoint(tmp_path, images):
    import open_clip

    reference = open_clip.create_model("RN50", pretrained=None).eval()
    torch.save(reference.state_dict(), tmp_path / "rn50.pt")
    encoder = load_encoder("open_clip:RN50", tmp_path / "rn50.pt")
    assert encoder.spec.input_size == 224 and encoder.dim == 1024
    pixels = torch.stack([encoder.preprocess(im) for im in images[:2]])
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference.encode_image(pixels), dim=-1).numpy()
    assert np.allclose(encoder.embed_images(images[:2]), expected, atol=1e-4)


def test_random_init_is_only_by_request():
    module, dim = build_backbone(resolve_backbone("timm:resnet10t"), random_init=True)
    assert dim == 512 and isinstance(module, torch.nn.Module)


def test_checkpoints_are_written_atomically_and_readable_by_others(tmp_path):
    path = create_encoder().save(tmp_path / "encoder.pt")
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["encoder.pt"]
