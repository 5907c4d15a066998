"""The engines: each maps float32 pixels (B, 3, S, S) on the CPU to float32 pooled features (B, D)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn


class Engine(Protocol):
    name: str

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor: ...


def cpu_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class TorchEngine:
    name = "torch"

    def __init__(self, backbone: nn.Module):
        self.backbone = backbone

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixels).float()


class OnnxEngine:
    """ONNX Runtime's CPU provider, all graph optimisations, one intra-op thread per core.
    `InferenceSession.run` may be called from many threads at once."""

    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads or cpu_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(pixels.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input: array})[0])


class OpenVinoEngine:
    """OpenVINO's CPU plugin in fp32, latency hint, one thread per core. Infer requests are not
    thread-safe, so each calling thread gets its own."""

    name = "openvino"

    def __init__(self, path: Path, threads: int | None = None):
        import openvino as ov

        config = {"INFERENCE_NUM_THREADS": threads or cpu_threads(), "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self._local = threading.local()

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        array = np.ascontiguousarray(pixels.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(np.array(request.infer({0: array})[0], dtype=np.float32))


OPENERS = {"onnx": OnnxEngine, "openvino": OpenVinoEngine}
