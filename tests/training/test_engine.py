"""Inference engines: agreement with torch on real photos, dynamic batches, the export cache,
recovery from a damaged cache file, the fallback to torch, and engine names."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from training.engines import build as engine_build
from training.engines import names as engine_names
from training.engines.build import build_engine, export_path
from training.engines.names import check_engine_name
from training.errors import AttribError

RUNTIMES = [name for name in ("onnx", "openvino") if engine_names.missing_package(name) is None]


@pytest.fixture(scope="module")
def images(photos):
    return [Image.open(p).convert("RGB") for p in photos[:5]]


@pytest.fixture(scope="module")
def pixels(encoder, images):
    return torch.stack([encoder.preprocess(im) for im in images])


@pytest.fixture(scope="module")
def expected(encoder, pixels):
    with torch.inference_mode():
        return encoder.backbone(pixels).float()


@pytest.fixture(scope="module")
def cache(encoder, tmp_path_factory):
    """One export shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("engines")
    engine_build.export_onnx(encoder.backbone, encoder.spec.input_size, export_path(root, encoder.backbone_id))
    return root


def build(encoder, name, cache_dir):
    return build_engine(name, encoder.backbone, encoder.spec.input_size, encoder.backbone_id, cache_dir)


def cosines(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).numpy()


@pytest.mark.parametrize("name", RUNTIMES)
def test_engine_agrees_with_torch_on_real_photos(encoder, cache, pixels, expected, name):
    engine = build(encoder, name, cache)
    assert engine.name == name
    got = engine(pixels)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert cosines(got, expected).min() >= 0.999


@pytest.mark.parametrize("name", RUNTIMES)
def test_batch_of_one_and_batch_of_five_agree(encoder, cache, pixels, name):
    engine = build(encoder, name, cache)
    singles = torch.cat([engine(pixels[i : i + 1]) for i in range(len(pixels))])
    assert cosines(singles, engine(pixels)).min() >= 0.9999


def test_encoder_embeds_with_its_engine_and_keeps_its_api(encoder, cache, images):
    reference = encoder.embed_features(images, batch_size=2)
    try:
        assert encoder.use_engine(RUNTIMES[0], cache) == RUNTIMES[0]
        got = encoder.embed_features(images, batch_size=2)
        assert got.dtype == np.float32 and got.shape == reference.shape
        assert cosines(torch.from_numpy(got), torch.from_numpy(reference)).min() >= 0.999
        pixels = torch.stack([encoder.preprocess(im) for im in images[:2]])
        assert encoder.features(pixels).requires_grad  # with gradients the torch backbone runs
        encoder.invalidate_id()  # weights changed in place: the export no longer fits
        assert encoder.engine is None and encoder.engine_name == "torch"
    finally:
        encoder.engine = None


def test_a_batch_larger_than_engine_batch_runs_in_parts(encoder, cache, pixels):
    engine, sizes = build(encoder, RUNTIMES[0], cache), []

    def counted(part):
        sizes.append(len(part))
        return engine(part)

    previous = encoder.engine_batch
    try:
        encoder.engine, encoder.engine_batch = counted, 2
        with torch.inference_mode():
            parts = encoder.features(pixels)
            whole = engine(pixels)
    finally:
        encoder.engine, encoder.engine_batch = None, previous
    assert sizes == [2, 2, 1]  # five images, at most two a forward, in order
    assert parts.shape == whole.shape and cosines(parts, whole).min() >= 0.9999


def test_a_cached_export_is_reused_not_exported_again(encoder, cache, monkeypatch):
    path = export_path(cache, encoder.backbone_id)
    before = path.stat().st_mtime_ns
    exports = []
    monkeypatch.setattr(engine_build, "export_onnx", lambda *a: exports.append(a))
    engine = build(encoder, RUNTIMES[0], cache)
    assert engine.name == RUNTIMES[0]
    assert exports == [] and path.stat().st_mtime_ns == before


def test_a_damaged_cache_file_is_exported_again(encoder, cache, tmp_path, pixels, expected, caplog):
    shutil.copytree(cache, tmp_path, dirs_exist_ok=True)
    path = export_path(tmp_path, encoder.backbone_id)
    path.write_bytes(path.read_bytes()[:5000])  # truncated, as by a full disk
    with caplog.at_level(logging.WARNING):
        engine = build(encoder, RUNTIMES[0], tmp_path)
    assert engine.name == RUNTIMES[0]
    assert "unusable" in caplog.text
    assert path.stat().st_size > 5000
    assert cosines(engine(pixels), expected).min() >= 0.999


@pytest.mark.parametrize("name", ["auto", RUNTIMES[0]])
def test_a_failed_export_falls_back_to_torch_and_says_why(encoder, tmp_path, monkeypatch, caplog, name):
    def fail(*args):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(engine_build, "export_onnx", fail)
    with caplog.at_level(logging.WARNING):
        engine = build(encoder, name, tmp_path)
    assert engine.name == "torch"
    assert "exporter exploded" in caplog.text and "runs in torch" in caplog.text


def test_an_engine_that_disagrees_with_torch_is_not_used(encoder, cache, tmp_path, monkeypatch, caplog):
    shutil.copytree(cache, tmp_path, dirs_exist_ok=True)
    monkeypatch.setattr(engine_build, "PROBE_MIN_COSINE", 1.5)  # nothing can pass
    with caplog.at_level(logging.WARNING):
        engine = build(encoder, RUNTIMES[0], tmp_path)
    assert engine.name == "torch" and "disagrees with torch" in caplog.text


def test_auto_without_its_package_uses_torch(encoder, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(engine_names.PACKAGES, engine_names.AUTO_ENGINE, "attrib_no_such_package")
    with caplog.at_level(logging.WARNING):
        engine = build(encoder, "auto", tmp_path)
    assert engine.name == "torch" and "attrib_no_such_package" in caplog.text
    assert not any(tmp_path.iterdir())  # nothing was exported


def test_engine_names_are_checked(monkeypatch):
    assert check_engine_name("torch") == "torch" and check_engine_name("auto") == "auto"
    with pytest.raises(AttribError) as unknown:
        check_engine_name("tensorrt")
    assert unknown.value.code == "unknown_engine" and "auto, torch, onnx, openvino" in unknown.value.message
    monkeypatch.setitem(engine_names.PACKAGES, "onnx", "attrib_no_such_package")
    with pytest.raises(AttribError) as missing:
        check_engine_name("onnx")
    assert missing.value.code == "engine_unavailable"


def test_an_explicit_engine_without_its_package_is_an_error(encoder, tmp_path, monkeypatch):
    monkeypatch.setitem(engine_names.PACKAGES, "onnx", "attrib_no_such_package")
    with pytest.raises(AttribError) as error:
        build(encoder, "onnx", tmp_path)
    assert error.value.code == "engine_unavailable"
