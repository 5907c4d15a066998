"""A content head on the copy backbone's descriptors (`--backbone sscd_distilled`), and `--backbone
auto` (the default): both backbones fitted, the self-checks keep one. Real SSCD model, real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training import train
from training.backbone_choice import backbone_candidates, compare
from training.config import ConfigError, TrainConfig, merge, validate
from training.encoders import create_encoder, load_checkpoint
from training.errors import EncoderError
from training.sscd import load_copy_backbone
from tests.training.test_train import manifest  # noqa: F401 - the fixture


def test_an_encoder_on_the_copy_backbone_gives_the_copy_space_s_descriptors(photos, tmp_path):
    encoder = create_encoder("sscd_distilled", head_config={"type": "linear", "out_dim": 8})
    copy = load_copy_backbone("sscd_distilled")
    images = [Image.open(p).convert("RGB") for p in photos[:5]]
    np.testing.assert_array_equal(encoder.embed_features(images), copy.embed_features(images))
    assert encoder.backbone_id == copy.backbone_id and encoder.feature_dim == copy.feature_dim == 512
    assert encoder.use_engine("openvino") == copy.engine_name and encoder.engine is None
    loaded = load_checkpoint(encoder.save(tmp_path / "head.pt"))
    assert loaded.encoder_id == encoder.encoder_id and loaded.backbone_id == copy.backbone_id
    np.testing.assert_allclose(loaded.embed_images(images), encoder.embed_images(images), atol=1e-6)

    payload = torch.load(tmp_path / "head.pt", weights_only=True)
    payload["backbone_state"]["model_digest"] = torch.zeros_like(payload["backbone_state"]["model_digest"])
    torch.save(payload, tmp_path / "other-model.pt")
    with pytest.raises(EncoderError, match="another sscd_distilled model file") as refused:
        load_checkpoint(tmp_path / "other-model.pt")
    assert refused.value.code == "backbone_mismatch"
    with pytest.raises(EncoderError, match="takes no weights"):
        create_encoder("sscd_distilled", weights=tmp_path / "head.pt")


def test_what_the_copy_backbone_cannot_do_is_refused_at_load_time():
    for change in ({"head": {"recipe": "views"}}, {"unfreeze_blocks": 1, "head": {"fit": "sgd"}}, {"weights": "w.pt"}):
        with pytest.raises(ConfigError):
            validate(merge(TrainConfig(), {"backbone": "sscd_distilled", **change}))
    assert backbone_candidates(TrainConfig()) == ["efficientnet_lite0", "sscd_distilled"]
    assert backbone_candidates(merge(TrainConfig(), {"head": {"recipe": "views"}})) == ["efficientnet_lite0"]
    assert backbone_candidates(merge(TrainConfig(), {"backbone": "sscd"})) == ["sscd"]


def _run(kept: str, worst: float, mean: float, weights: dict | None = None) -> dict:
    figures = {"worst_kind": worst, "mean_over_kinds": mean, "kinds_mAP": {"a": worst, "b": 2 * mean - worst}}
    return {"recipe": {"kept": kept, "self_check": {"candidates": {kept: figures}, "kind_weights": weights}}}


def test_the_backbones_compare_by_the_self_check_rule():
    lite0, copy = _run("distilled", 9.9, 44.8), _run("raw", 0.5, 62.3)
    chosen, comparison = compare({"efficientnet_lite0": lite0, "sscd_distilled": copy})
    assert chosen == "efficientnet_lite0"  # the copy backbone collapsed on one kind of edit
    assert comparison["candidates"]["sscd_distilled"]["recipe"] == "raw"
    assert compare({"efficientnet_lite0": _run("raw", 1.1, 54.5), "sscd_distilled": copy})[0] == "sscd_distilled"
    assert compare({"efficientnet_lite0": _run("raw", 1.0, 50.0), "sscd_distilled": _run("raw", 1.0, 50.0)})[0] == \
        "efficientnet_lite0", "the encoder's backbone wins ties"
    # with a pool: the mean of the runs' kind weights; here kind b decides
    weighted = compare({"efficientnet_lite0": _run("head", 10, 20, {"a": 0.9, "b": 0.1}),
                        "sscd_distilled": _run("distilled", 5, 40, {"a": 0.1, "b": 0.9})})
    assert weighted[0] == "sscd_distilled" and weighted[1]["kind_weights"] == {"a": 0.5, "b": 0.5}
    assert weighted[1]["candidates"]["sscd_distilled"]["weighted_mAP"] == 40.0  # (5 + 75) / 2, under the mean weights
    no_check = {"efficientnet_lite0": {"recipe": {"kept": "head"}}, "sscd_distilled": copy}
    assert compare(no_check)[0] == "efficientnet_lite0"


def test_the_default_run_fits_both_backbones_and_keeps_one_checkpoint(manifest, tmp_path, capsys):  # noqa: F811
    ckpt = tmp_path / "auto.pt"
    told = []
    assert train.main([str(manifest), "--output", str(ckpt), "--cache-dir", str(tmp_path / "cache"), "--views", "2"],
                      progress=told.append) == 0
    summary = json.loads(capsys.readouterr().out)
    choice = summary["backbone_choice"]
    assert set(choice["candidates"]) == {"efficientnet_lite0", "sscd_distilled"}
    encoder = load_checkpoint(ckpt)
    assert encoder.name == choice["kept"] and encoder.encoder_id == summary["encoder_id"]
    sidecar = json.loads(Path(f"{ckpt}.config.json").read_text())
    assert sidecar["backbone_choice"] == choice and sidecar["checkpoint"] == str(ckpt)
    assert sidecar["config"]["backbone"] == choice["kept"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["auto.pt", "auto.pt.config.json"]
    assert sum(told) == 7, "the job counts each image once over both runs"
