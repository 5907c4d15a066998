"""Building an engine: the cached ONNX export of a backbone, a check against torch, the fallback.

The export is made once per backbone from the loaded torch module (never downloaded) and cached
at `<cache_dir>/<backbone_id>/onnx-v<EXPORT_VERSION>-opset<OPSET>.onnx`, written atomically, so
every process on the same ATTRIB_HOME reuses it across restarts. Every engine is checked against
torch on a fixed probe batch before use; a cached file that cannot be opened or disagrees is
exported again. If the export or the check fails, the backbone runs in torch and a warning says
why. torch.onnx's TorchScript exporter needs the `onnx` package. Heads are not exported: one or
two small matrix products on pooled features, about 1% of an embedding's work.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.engines.names import AUTO_ENGINE, EngineError, check_engine_name, missing_package
from training.engines.runtimes import OPENERS, Engine, TorchEngine
from training.fileio import atomic_write

log = logging.getLogger(__name__)

EXPORT_VERSION = 1
OPSET = 17
PROBE_MIN_COSINE = 0.999


def export_path(cache_dir: str | Path, backbone_id: str) -> Path:
    return Path(cache_dir) / backbone_id / f"onnx-v{EXPORT_VERSION}-opset{OPSET}.onnx"


def export_onnx(backbone: nn.Module, input_size: int, path: Path) -> Path:
    """Export the backbone (eval mode, dynamic batch axis) to `path`, atomically."""
    dummy = torch.zeros(2, 3, input_size, input_size)

    def write(tmp: str) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            # torch 2.14 calls the TorchScript exporter legacy; the dynamo one needs onnxscript
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                backbone.eval(), (dummy,), tmp, input_names=["pixels"], output_names=["features"],
                dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                opset_version=OPSET, dynamo=False,
            )

    log.info("exporting the backbone to ONNX: %s", path)
    return atomic_write(path, write)


def build_engine(name: str, backbone: nn.Module, input_size: int, backbone_id: str,
                 cache_dir: str | Path | None) -> Engine:
    """The engine `name` asks for (see names.py). An explicitly named engine whose package is
    missing is an `engine_unavailable` error; for `auto` that, and for any engine a failed export
    or check, gives torch with the reason logged. Without `cache_dir` the export is not kept."""
    if name != "auto":
        check_engine_name(name)
    if name == "torch":
        return TorchEngine(backbone)
    wanted = AUTO_ENGINE if name == "auto" else name
    missing = missing_package(wanted)
    if missing:
        log.warning("ATTRIB_ENGINE=auto: the %r package is not installed; the backbone runs in torch", missing)
        return TorchEngine(backbone)
    try:
        if cache_dir is None:
            with tempfile.TemporaryDirectory(prefix="attrib-engine-") as tmp:
                return _load_or_export(wanted, backbone, input_size, export_path(tmp, backbone_id))
        return _load_or_export(wanted, backbone, input_size, export_path(cache_dir, backbone_id))
    except Exception as exc:  # noqa: BLE001 - an export fails in many ways; torch always works
        log.warning("ATTRIB_ENGINE=%s: the %s engine could not be built (%s: %s); the backbone runs in torch",
                    name, wanted, type(exc).__name__, exc)
        return TorchEngine(backbone)


def _load_or_export(name: str, backbone: nn.Module, input_size: int, path: Path) -> Engine:
    if path.is_file():
        try:
            return _open_checked(name, backbone, input_size, path)
        except Exception as exc:  # noqa: BLE001 - a damaged cache file is exported again, not fatal
            log.warning("cached engine file %s is unusable (%s: %s); exporting it again",
                        path, type(exc).__name__, exc)
    export_onnx(backbone, input_size, path)
    return _open_checked(name, backbone, input_size, path)


def _open_checked(name: str, backbone: nn.Module, input_size: int, path: Path) -> Engine:
    engine = OPENERS[name](path)
    agreement = probe_agreement(engine, backbone, input_size)
    if agreement < PROBE_MIN_COSINE:
        raise EngineError(f"{name} disagrees with torch on the probe batch (cosine {agreement:.5f})",
                          code="engine_mismatch")
    return engine


@torch.inference_mode()
def probe_agreement(engine: Engine, backbone: nn.Module, input_size: int) -> float:
    """Lowest cosine between the engine's and torch's features on a fixed batch of two images."""
    ramp = torch.linspace(-1, 1, input_size).expand(3, input_size, input_size)
    noise = torch.rand(3, input_size, input_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pixels = torch.stack([ramp, noise]).contiguous()
    expected = backbone(pixels).float()
    got = engine(pixels)
    if got.shape != expected.shape:
        raise EngineError(f"engine output {tuple(got.shape)} differs from torch's {tuple(expected.shape)}",
                          code="engine_mismatch")
    return float(F.cosine_similarity(got, expected, dim=-1).min())
