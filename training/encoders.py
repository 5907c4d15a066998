"""An encoder is a backbone plus an optional projection head, with one preprocessing definition.

It outputs L2-normalised float32 vectors. Its `encoder_id` is a content hash of its config and
all of its weights, so an index built with one encoder is never searched with another.

Checkpoint file (torch.save of a plain dict, loaded with weights_only=True):
  format, version, encoder_id, config {"backbone": BackboneSpec, "head": head config | None},
  backbone_state, head_state, center
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image
from torch import nn

from training.backbones import (
    COPY_FAMILY,
    DEFAULT_BACKBONE,
    BackboneSpec,
    build_backbone,
    resolve_backbone,
)
from training.encoder_ids import compute_backbone_id, compute_encoder_id
from training.engines.names import DEFAULT_ENGINE_BATCH
from training.errors import EncoderError
from training.fileio import atomic_write
from training.preprocess import Preprocess
from training.projection import build_head, build_query_head, project_features

CHECKPOINT_FORMAT = "attrib.encoder"
CHECKPOINT_VERSION = 1


class Encoder(nn.Module):
    def __init__(
        self,
        spec: BackboneSpec,
        backbone: nn.Module,
        feature_dim: int,
        head_config: dict | None = None,
        center: torch.Tensor | None = None,
    ):
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.head_config = head_config
        self.head = build_head(head_config) if head_config else None
        self.query_head = build_query_head(head_config)  # a query's one-forward embedding (training/distil.py)
        self.register_buffer("center", center if center is not None else torch.zeros(feature_dim))
        self.preprocess = Preprocess(spec)
        self._encoder_id: str | None = None
        self._backbone_id: str | None = None
        self.engine = None  # a training.engines engine for CPU inference; None: the eager backbone
        self.engine_batch = DEFAULT_ENGINE_BATCH  # images per engine call; a larger batch runs in parts
        self.eval()

    @property
    def dim(self) -> int:
        return int(self.head_config["out_dim"]) if self.head_config else self.feature_dim

    @property
    def query_views(self):
        """(count, AugmentConfig) of the views queries are embedded with; (0, None): clean view only."""
        from training.query_views import view_settings

        return view_settings(self.head_config)

    @property
    def name(self) -> str:
        """The backbone's name, as spaces and `attrib reindex --backbone` call it."""
        return self.spec.name

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    def crop(self, image: Image.Image) -> np.ndarray:
        """The backbone's input for one RGB image before normalisation: (size, size, 3) uint8."""
        return np.asarray(self.preprocess.resize_crop(image), dtype=np.uint8)

    @property
    def device(self) -> torch.device:
        return self.center.device

    @property
    def config(self) -> dict:
        return {"backbone": self.spec.to_dict(), "head": self.head_config}

    @property
    def on_copy_backbone(self) -> bool:
        """A head on a copy backbone's descriptors (training/sscd.py): the ONNX model is its engine."""
        return self.spec.family == COPY_FAMILY

    @property
    def engine_name(self) -> str:
        if self.on_copy_backbone:
            return self.backbone.copy.engine_name
        return self.engine.name if self.engine is not None else "torch"

    def use_engine(self, name: str, cache_dir: str | Path | None = None) -> str:
        """Run the backbone with engine `name` (see training/engines.py) for CPU inference; the
        exported model is cached under `cache_dir`. Returns the engine actually used."""
        from training.engines.build import build_engine

        if self.on_copy_backbone:
            return self.engine_name
        engine = build_engine(name, self.backbone, self.spec.input_size, self.backbone_id, cache_dir)
        self.engine = None if engine.name == "torch" else engine
        return self.engine_name

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Raw pooled backbone features: what the training cache stores. Inference on the CPU
        (no gradients, eval mode) runs on the engine when one is set."""
        if (self.engine is not None and pixels.device.type == "cpu" and not self.training
                and not torch.is_grad_enabled()):
            if len(pixels) <= self.engine_batch:
                return self.engine(pixels)
            return torch.cat([self.engine(part) for part in pixels.split(self.engine_batch)])
        return self.backbone(pixels).float()

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Backbone features -> the final L2-normalised embedding."""
        return project_features(features, self.head, self.center)

    def project_query(self, features: torch.Tensor) -> torch.Tensor:
        """A query's embedding from its clean-view features: the query head where there is one."""
        return project_features(features, self.head if self.query_head is None else self.query_head, self.center)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(pixels))

    def embed_images(self, images: Iterable[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Embed RGB PIL images; returns float32 (N, dim) with unit rows."""
        return self._run_batches(self, images, batch_size, self.dim)

    def embed_features(self, images: Iterable[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Raw pooled backbone features of RGB PIL images, float32 (N, feature_dim): what the
        catalog's feature store keeps, and what every head maps to its space."""
        return self._run_batches(self.features, images, batch_size, self.feature_dim)

    @torch.inference_mode()
    def features_of_pixels(self, pixels: list[np.ndarray] | torch.Tensor) -> np.ndarray:
        """Raw features of cropped uint8 RGB images (size x size x 3) in one forward, as the
        ingestion decoders (index/ingest/prepare.py, training/device_decode.py) hand them over."""
        batch = pixels if isinstance(pixels, torch.Tensor) else np.stack(pixels)
        return self._forward_batch(self.features, self.preprocess.normalize_batch(batch))

    @torch.inference_mode()
    def _run_batches(self, forward, images: Iterable[Image.Image], batch_size: int, dim: int) -> np.ndarray:
        chunks, batch = [], []
        for image in images:
            batch.append(self.preprocess(image))
            if len(batch) == batch_size:
                chunks.append(self._forward_batch(forward, batch))
                batch = []
        if batch:
            chunks.append(self._forward_batch(forward, batch))
        if not chunks:
            return np.zeros((0, dim), dtype=np.float32)
        return np.concatenate(chunks)

    def _forward_batch(self, forward, tensors: list[torch.Tensor] | torch.Tensor) -> np.ndarray:
        pixels = (tensors if isinstance(tensors, torch.Tensor) else torch.stack(tensors)).to(self.device)
        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return forward(pixels).float().cpu().numpy()
        return forward(pixels).cpu().numpy().astype(np.float32, copy=False)

    @property
    def encoder_id(self) -> str:
        if self._encoder_id is None:
            self._encoder_id = compute_encoder_id(self.spec, self.backbone, self.head, self.head_config, self.center,
                                                  self.query_head)
        return self._encoder_id

    @property
    def backbone_id(self) -> str:
        """Content hash of the backbone alone: equal to the encoder_id of the same backbone
        without a head, so a head trained on a frozen backbone matches the raw encoder's id."""
        if self._backbone_id is None and self.on_copy_backbone:  # the copy space's features are these
            self._backbone_id = self.backbone.copy.backbone_id
        if self._backbone_id is None:
            self._backbone_id = compute_backbone_id(self.spec, self.backbone, self.feature_dim)
        return self._backbone_id

    def invalidate_id(self) -> None:
        """Call after changing weights in place (training) so the id is recomputed; an exported
        engine no longer matches the weights and is dropped."""
        self._encoder_id = None
        self._backbone_id = None
        self.engine = None

    def save(self, path: str | Path) -> Path:
        """Write the self-describing checkpoint atomically."""
        self.invalidate_id()
        payload = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "encoder_id": self.encoder_id,
            "config": self.config,
            "backbone_state": _cpu_state(self.backbone),
            "head_state": _cpu_state(self.head) if self.head is not None else None,
            "query_head_state": _cpu_state(self.query_head) if self.query_head is not None else None,
            "center": self.center.detach().cpu(),
        }
        return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def create_encoder(
    backbone: str = DEFAULT_BACKBONE,
    weights: str | Path | None = None,
    head_config: dict | None = None,
    *,
    random_init: bool = False,
) -> Encoder:
    """A fresh encoder from a backbone name (and local weights), with an untrained head if asked."""
    spec = resolve_backbone(backbone)
    module, dim = build_backbone(spec, weights, random_init=random_init)
    if head_config is not None:
        head_config = {"in_dim": dim, "out_dim": dim, **head_config}
    return Encoder(spec, module, dim, head_config)


def load_checkpoint(path: str | Path) -> Encoder:
    path = Path(path)
    if not path.is_file():
        raise EncoderError(f"encoder checkpoint not found: {path}", code="weights_missing")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise EncoderError(f"cannot read encoder checkpoint {path}: {exc}", code="weights_unreadable") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise EncoderError(f"{path} is not an attrib encoder checkpoint", code="weights_unreadable")
    spec = BackboneSpec.from_dict(payload["config"]["backbone"])
    module, dim = build_backbone(spec, random_init=True)
    module.load_state_dict(payload["backbone_state"])
    if spec.family == COPY_FAMILY:
        module.check_model()
    encoder = Encoder(spec, module, dim, payload["config"]["head"], payload["center"])
    if encoder.head is not None:
        encoder.head.load_state_dict(payload["head_state"])
    if encoder.query_head is not None:
        if not payload.get("query_head_state"):
            raise EncoderError(f"checkpoint {path} names a query head but holds none", code="weights_unreadable")
        encoder.query_head.load_state_dict(payload["query_head_state"])
    encoder.eval()
    if encoder.encoder_id != payload["encoder_id"]:
        raise EncoderError(
            f"checkpoint {path} is damaged: its content hash does not match its encoder_id",
            code="weights_unreadable",
        )
    return encoder


def load_encoder(name: str = "default", weights: str | Path | None = None, device: str = "cpu",
                 engine: str = "torch", engine_cache: str | Path | None = None,
                 engine_batch: int = DEFAULT_ENGINE_BATCH) -> Encoder:
    """What ATTRIB_ENCODER names: 'default', a backbone name, or a checkpoint file. On the CPU,
    `engine` (ATTRIB_ENGINE) picks what runs the backbone, its export cached in `engine_cache`,
    in forwards of at most `engine_batch` images (ATTRIB_ENGINE_BATCH)."""
    if name in ("", "default"):
        encoder = create_encoder(DEFAULT_BACKBONE, weights)
    elif name.endswith((".pt", ".pth", ".ckpt")) or Path(name).is_file():
        encoder = load_checkpoint(name)
    else:
        encoder = create_encoder(name, weights)
    encoder = encoder.to(resolve_device(device))
    if engine != "torch" and encoder.device.type == "cpu":
        encoder.use_engine(engine, engine_cache)
    encoder.engine_batch = engine_batch
    return encoder


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EncoderError(f"device {device!r} asked for, but CUDA is not available", code="bad_config")
    return torch.device(device)
