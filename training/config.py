"""Typed, layered training configuration: defaults < `--config FILE` (JSON) < command-line flags.

Every section is a dataclass, so a misspelled key fails loudly instead of being ignored. The
final, fully resolved config is written beside the checkpoint (`<ckpt>.config.json`), as dinov2's
`utils/config.py` does.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.errors import AttribError
from training.sscd import COPY_BACKBONES


class ConfigError(AttribError):
    code = "bad_config"


# auto: the self-check keeps the best of raw, head, distilled and (on the copy backbone) rendered;
# one-forward: all but rendered; views: queries averaged over their views at serving time
# (query_views + 1 forwards, no query head); the others force that candidate
RECIPES = ("auto", "one-forward", "raw", "head", "distilled", "rendered", "views")
RENDERING_NAMES = ("sketch", "silhouette")  # AugmentConfig.renderings; the drawings are training/views.py's RENDERINGS


@dataclass
class HeadConfig:
    type: str = "linear"  # "linear" (identity-initialised, out_dim = feature dim) or "mlp"
    fit: str = "whiten"  # "whiten": closed-form linear A&D (training/whitening.py); "sgd": loss terms, `steps` steps
    whiten_eps: float = 0.1  # ridge of the nuisance covariance, relative to its mean eigenvalue
    query_views: int = 8  # views the teacher averages a query over (distilled into the query head; 0: none)
    recipe: str = "auto"  # auto: the self-check keeps the best of raw, head, distilled, rendered (copy backbone);
    # one-forward: the best but rendered (one forward per query and backbone); or force one, or "views"
    distil_ridge: float = 1e-2  # ridge of the query head's fit, relative to the mean eigenvalue (training/distil.py)
    out_dim: int = 512  # mlp only
    hidden_dim: int = 2048  # mlp only


@dataclass
class LossConfig:
    """Weights of the named loss terms; a term with weight 0 is never built."""

    align_weight: float = 1.0  # InfoNCE between views of the same image
    temperature: float = 0.1
    pairing: str = "clean"  # "clean": clean view vs an augmented view; "random": two augmented views
    infomax_weight: float = 0.1  # CorInfoMax log-determinant of the embedding covariance
    infomax_eps: float = 0.1
    variance_weight: float = 0.0  # VICReg variance hinge (the alternative infomax)
    covariance_weight: float = 0.0  # VICReg off-diagonal covariance
    vicreg_gamma: float = 1.0


@dataclass
class AugmentConfig:
    """Views that bridge media: geometry, strong colour, blur/solarise/invert, sketch, silhouette."""

    crop_scale: tuple[float, float] = (0.35, 1.0)
    p_flip: float = 0.5
    p_sketch: float = 0.35  # edge-map view (Canny on a blurred grey image, black lines on white)
    sketch_sigma: tuple[float, float] = (2.5, 4.5)
    p_silhouette: float = 0.15  # filled two-tone view (Otsu threshold of a heavily blurred image)
    silhouette_blur: tuple[float, float] = (3.0, 8.0)
    jitter: float = 0.8  # brightness/contrast/saturation strength; hue moves by jitter / 4
    p_jitter: float = 0.8
    p_grayscale: float = 0.2
    p_blur: float = 0.5
    p_solarize: float = 0.2
    p_invert: float = 0.1
    # when set, view i is renderings[i % n] of the image's centre crop, with nothing random (the
    # query renderings of training/recipe.py's `rendered` candidate); names in training/views.py's RENDERINGS
    renderings: tuple[str, ...] = ()
    # the renderings' size in px (0: the backbone's input size): the copy backbone's rendered head
    # draws and embeds them at 192, 0.56x the pixels of its 256 px input (training/recipe.py)
    render_size: int = 0


@dataclass
class TrainConfig:
    backbone: str = "auto"  # auto: Lite0 and the copy backbone, the self-check keeps one (training/backbone_choice.py)
    weights: str | None = None  # local backbone weights (open_clip:/timm: backbones)
    views: int = 8  # augmented views per anchor image, extracted once and cached
    cache_dir: str | None = None  # default: $ATTRIB_HOME/feature-cache, else ./var/feature-cache
    batch_size: int = 256
    negatives: int = 1024  # negative-only (distractor) features drawn per step
    pool_share: float = 0.0  # share of each batch's anchors drawn from the pool (0: all anchors alike)
    steps: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 30
    seed: int = 0
    device: str = "auto"  # "auto", "cpu" or "cuda"
    unfreeze_blocks: int = 0  # CUDA only: train the last N backbone blocks end to end (autocast)
    image_batch_size: int = 32  # images per backbone forward pass
    supervised: bool = False  # Wang et al. (ICCV 2023) baseline on labelled manifest pairs
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_cache_dir() -> Path:
    home = os.environ.get("ATTRIB_HOME")
    return Path(home) / "feature-cache" if home else Path("var") / "feature-cache"


def merge(config: Any, overrides: dict, where: str = "config") -> Any:
    """A copy of dataclass `config` with `overrides` applied; unknown keys and bad types fail."""
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes = {}
    for key, value in overrides.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown {where} key {key!r}{hint}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key} must be a JSON object")
            changes[key] = merge(current, value, f"{where}.{key}")
        else:
            changes[key] = _coerce(value, hints[key], f"{where}.{key}")
    return dataclasses.replace(config, **changes)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if option is type(None):
            continue
        try:
            return _coerce_one(value, option)
        except (TypeError, ValueError):
            continue
    raise ConfigError(f"{where}: {value!r} is not a valid {_name(hint)}")


def _coerce_one(value: Any, option: Any) -> Any:
    if typing.get_origin(option) is tuple:
        kinds = typing.get_args(option)
        items = ([v for v in value.split(",") if v] if isinstance(value, str) else list(value))
        if len(kinds) == 2 and kinds[1] is Ellipsis:
            return tuple(_coerce_one(item, kinds[0]) for item in items)
        if len(items) != len(kinds):
            raise ValueError("wrong length")
        return tuple(_coerce_one(item, kind) for item, kind in zip(items, kinds))
    if option is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError("not a bool")
    if option is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
        raise ValueError("not an int")
    if option is str and not isinstance(value, str):
        raise TypeError("not a str")
    return option(value)


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def parse_assignment(text: str) -> dict:
    """'loss.temperature=0.2' -> {"loss": {"temperature": "0.2"}} (values coerced by `merge`)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}")
    nested: dict = {}
    node = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = None if value.strip().lower() in ("none", "null") else value.strip()
    return nested


def load_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return data


def validate(config: TrainConfig) -> TrainConfig:
    checks = [
        (config.head.type in ("linear", "mlp"), "head.type must be 'linear' or 'mlp'"),
        (config.head.fit in ("whiten", "sgd"), "head.fit must be 'whiten' or 'sgd'"),
        (config.head.fit == "sgd" or config.head.type == "linear", "head.fit 'whiten' needs head.type 'linear' (use head.fit=sgd for mlp)"),
        (config.head.fit == "sgd" or not config.unfreeze_blocks, "unfreeze_blocks (end to end) needs head.fit=sgd"),
        (config.head.whiten_eps > 0, "head.whiten_eps must be > 0"),
        (0 <= config.head.query_views <= 64, "head.query_views must be in [0, 64]"),
        (config.head.recipe in RECIPES, f"head.recipe must be one of {', '.join(RECIPES)}"),
        (config.head.recipe != "views" or config.backbone not in COPY_BACKBONES,
         "head.recipe=views embeds query views with the catalog's encoder; on a copy backbone use auto, raw, "
         "head or distilled"),
        (config.backbone not in COPY_BACKBONES or not config.unfreeze_blocks and config.weights is None,
         f"the copy backbone {config.backbone} comes from its package and does not train: no weights, no unfreeze_blocks"),
        (config.head.distil_ridge > 0, "head.distil_ridge must be > 0"),
        (config.loss.pairing in ("clean", "random"), "loss.pairing must be 'clean' or 'random'"),
        (config.loss.temperature > 0, "loss.temperature must be > 0"),
        (config.loss.infomax_eps > 0, "loss.infomax_eps must be > 0"),
        (config.batch_size >= 2, "batch_size must be at least 2"),
        (config.steps >= 1, "steps must be at least 1"),
        (config.views >= 1, "views must be at least 1"),
        (config.negatives >= 0 and config.unfreeze_blocks >= 0, "negatives and unfreeze_blocks must be >= 0"),
        (config.device in ("auto", "cpu", "cuda"), "device must be 'auto', 'cpu' or 'cuda'"),
        (0 <= config.pool_share < 1, "pool_share must be in [0, 1)"),
        (0 < config.augment.crop_scale[0] <= config.augment.crop_scale[1] <= 1, "augment.crop_scale: 0 < lo <= hi <= 1"),
        (set(config.augment.renderings) <= set(RENDERING_NAMES), f"augment.renderings: names of {', '.join(RENDERING_NAMES)}"),
        (config.augment.render_size == 0 or 64 <= config.augment.render_size <= 1024,
         "augment.render_size must be 0 (the backbone's input size) or in [64, 1024]"),
    ]
    weights = [config.loss.align_weight, config.loss.infomax_weight, config.loss.variance_weight, config.loss.covariance_weight]
    checks.append((all(w >= 0 for w in weights) and any(w > 0 for w in weights), "loss weights must be >= 0, one > 0"))
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return config
