"""ATTRIB_ENGINE: validated when the settings load, and passed down to the encoder."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.cli import main
from app.services import load_configured_encoder
from app.settings import Settings
from training.engines import names as engine_names
from training.engines.build import export_path


def error_types(exc: ValidationError) -> list[str]:
    return [e["type"] for e in exc.errors()]


def test_engine_defaults_to_auto_and_is_case_insensitive(monkeypatch):
    monkeypatch.delenv("ATTRIB_ENGINE", raising=False)
    assert Settings().engine == "auto"
    assert Settings(engine=" Torch ").engine == "torch"


def test_an_unknown_engine_is_a_clear_error():
    with pytest.raises(ValidationError) as error:
        Settings(engine="tensorrt")
    assert error_types(error.value) == ["unknown_engine"]
    assert "use one of auto, torch, onnx, openvino" in str(error.value)


def test_a_named_engine_without_its_package_is_engine_unavailable(monkeypatch):
    monkeypatch.setitem(engine_names.PACKAGES, "onnx", "attrib_no_such_package")
    with pytest.raises(ValidationError) as error:
        Settings(engine="onnx")
    assert error_types(error.value) == ["engine_unavailable"]
    monkeypatch.setitem(engine_names.PACKAGES, engine_names.AUTO_ENGINE, "attrib_no_such_package")
    assert Settings(engine="auto").engine == "auto"  # auto falls back to torch at load instead


def test_the_cli_names_a_bad_engine(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ATTRIB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ATTRIB_ENGINE", "tensorrt")
    assert main(["reindex"]) == 1
    assert "ATTRIB_ENGINE" in capsys.readouterr().err


def test_the_configured_engine_runs_the_backbone_and_caches_its_export_under_home(tmp_path):
    name = engine_names.AUTO_ENGINE
    if engine_names.missing_package(name):
        pytest.skip(f"{name} is not installed")
    settings = Settings(home=tmp_path, device="cpu", engine="auto", engine_batch=8)
    encoder = load_configured_encoder(settings)
    assert encoder.engine_name == name and encoder.engine_batch == 8
    assert export_path(tmp_path / "engines", encoder.backbone_id).is_file()


@pytest.mark.parametrize("value", [0, -1, 1025, 2**63])
def test_engine_batch_is_bounded(value):
    with pytest.raises(ValidationError):
        Settings(engine_batch=value)
    assert Settings().engine_batch == 4
