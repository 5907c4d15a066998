"""Engine names and their packages. Imports no torch: the settings validate ATTRIB_ENGINE with it.

  torch      the backbone module itself, eager (what training uses)
  onnx       ONNX Runtime on an ONNX export of the backbone
  openvino   OpenVINO's CPU plugin on the same ONNX export
  auto       AUTO_ENGINE, the measured winner (docs/performance.md), when its package imports and
             the export works; otherwise torch, with the reason logged
"""

from __future__ import annotations

import importlib.util

from training.errors import AttribError

ENGINE_NAMES = ("auto", "torch", "onnx", "openvino")
AUTO_ENGINE = "openvino"  # measured by benchmarks/perf.py; see docs/performance.md
PACKAGES = {"onnx": "onnxruntime", "openvino": "openvino"}
# An engine on a small CPU is fastest at a few images a forward (EfficientNet-Lite0 on OpenVINO,
# 2 cores: 197-207 img/s at batch 4 against 174-181 at 16-32), so a larger batch (ingestion's,
# the server's shared batches) runs as forwards of at most this many (ATTRIB_ENGINE_BATCH).
DEFAULT_ENGINE_BATCH = 4


class EngineError(AttribError):
    code = "engine_unavailable"
    status = 500


def check_engine_name(name: str) -> str:
    """The engine name, or an error: `unknown_engine` for a name not in ENGINE_NAMES,
    `engine_unavailable` for an explicitly named engine whose package is not installed."""
    if name not in ENGINE_NAMES:
        raise EngineError(f"unknown engine {name!r}: use one of {', '.join(ENGINE_NAMES)}", code="unknown_engine")
    missing = missing_package(name)
    if missing:
        raise EngineError(f"engine {name!r} needs the {missing!r} package, which is not installed "
                          "(use ATTRIB_ENGINE=auto or torch)")
    return name


def missing_package(name: str) -> str | None:
    """The package an engine needs and cannot import (None for torch and auto)."""
    package = PACKAGES.get(name)
    return package if package and importlib.util.find_spec(package) is None else None
