"""`attrib train`: the command line and config of training. The work is done by
`training.unsupervised` (A&D: `training.whitening`, `training.head`, `training.end_to_end`, then
`training.separation`), `training.baseline` (the supervised baseline) and `training.outputs`
(checkpoint sidecar and loss plot).

Unsupervised (the product, arXiv 2601.22663):
  attrib train INPUT... --output CKPT [--pool PATH ...] [--config FILE] [flags] [--set key=value ...]
INPUT is an image folder, an image, or a benchmark manifest (labels ignored; `source` rows are
catalog images, `query` rows pool images, `distractor` rows negative-only). `--from-catalog` trains
on the catalog's stored sources; `--pool` adds unlabeled synthetic images. The frozen backbone's
features of a clean view and `views` augmented views per anchor image are cached on disk; a
projection head on L2-normalised, centred features is then fitted (with `--backbone auto`, the
default, on Lite0 and on the copy backbone, and the self-check keeps the better: training/backbone_choice.py): by default in closed form (a
linear head that whitens the differences between images and their views; the identity when
there are no pool images), or with `--fit sgd` by InfoNCE between the clean view and an augmented
view (alignment) plus a log-det covariance term (disentanglement). A label-free check of whether
the head separates pool images from sources ends every run.

Supervised baseline (Wang et al., ICCV 2023), for comparison only:
  attrib train --supervised MANIFEST... --output CKPT
trains identity-initialised linear query and source mappers on the manifest's (query, source)
pairs. CKPT holds the source mapper (what the catalog would index with); `<CKPT stem>.query.pt`
holds the query mapper, and `<CKPT>.config.json` names it, so `attrib eval --encoder CKPT` embeds
queries with it.

Outputs: CKPT (a self-describing encoder checkpoint ATTRIB_ENCODER can point to),
`<CKPT>.config.json` (the final config and a run summary) and, for an SGD fit, `<CKPT>.losses.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch

from training.baseline import train_supervised
from training.config import TrainConfig, load_config_file, merge, parse_assignment, validate
from training.data import DataError, collect_training_images
from training.errors import run_as_script
from training.loop import training_device
from training.backbone_choice import train_on_best_backbone
from training.backbones import AUTO, DEFAULT_BACKBONE

# flag -> dotted config key; each flag overrides the config file
FLAGS = {
    "backbone": ("backbone", str), "weights": ("weights", str), "views": ("views", int),
    "cache_dir": ("cache_dir", str), "batch_size": ("batch_size", int), "negatives": ("negatives", int),
    "steps": ("steps", int), "lr": ("lr", float), "seed": ("seed", int), "device": ("device", str),
    "unfreeze_blocks": ("unfreeze_blocks", int), "head": ("head.type", str), "out_dim": ("head.out_dim", int),
    "hidden_dim": ("head.hidden_dim", int), "fit": ("head.fit", str), "query_views": ("head.query_views", int),
    "recipe": ("head.recipe", str),
    "temperature": ("loss.temperature", float),
    "pairing": ("loss.pairing", str), "align_weight": ("loss.align_weight", float),
    "infomax_weight": ("loss.infomax_weight", float), "infomax_eps": ("loss.infomax_eps", float),
    "variance_weight": ("loss.variance_weight", float), "covariance_weight": ("loss.covariance_weight", float),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attrib train", description="Train an attribution encoder.")
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image folders, images or manifest CSVs")
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="CKPT", help="checkpoint to write")
    parser.add_argument("--config", type=Path, metavar="FILE", help="JSON config (overrides the defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key, e.g. loss.temperature=0.2")
    parser.add_argument("--negative-input", action="append", default=[], type=Path, metavar="PATH",
                        help="folder, image or manifest whose images are negative-only (repeatable)")
    parser.add_argument("--pool", action="append", default=[], type=Path, metavar="PATH",
                        help="folder, image or manifest of unlabeled synthetic images (the query pool; repeatable)")
    parser.add_argument("--from-catalog", action="store_true", help="train on the catalog's stored sources")
    parser.add_argument("--supervised", action="store_true", help="train the supervised baseline on labelled manifests")
    for flag, (key, kind) in FLAGS.items():
        parser.add_argument(f"--{flag.replace('_', '-')}", type=kind, default=None, metavar=kind.__name__.upper(), help=f"config {key}")
    return parser


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """defaults < --config FILE < flags and --set."""
    config = TrainConfig()
    if args.config is not None:
        config = merge(config, load_config_file(args.config))
    overrides: dict = {}
    for flag, (key, _) in FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            _deep_update(overrides, parse_assignment(f"{key}=x"), value)
    for text in args.set:
        _deep_update(overrides, parse_assignment(text))
    if args.supervised:
        overrides["supervised"] = True
    return validate(merge(config, overrides))


def _deep_update(target: dict, update: dict, leaf=None) -> None:
    for key, value in update.items():
        if isinstance(value, dict):
            _deep_update(target.setdefault(key, {}), value, leaf)
        else:
            target[key] = value if leaf is None else leaf


def main(argv: list[str] | None = None, catalog_images: list[Path] | None = None,
         pool_images: list[Path] | None = None, progress=None) -> int:
    """`catalog_images` serve `--from-catalog`; `pool_images` (the service's query pool) join
    `--pool`; `progress(n)` hears of every n images whose features are ready."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    config = resolve_config(args)
    training_device(config)  # fail early on a CUDA-only option without CUDA
    if args.from_catalog and not catalog_images:
        raise DataError("catalog is empty: index source images first, or pass INPUT folders")
    if not args.inputs and not args.from_catalog and not args.pool and not pool_images:
        raise DataError("no training input: give image folders or manifests, --pool, or --from-catalog")
    seed_everything(config.seed)
    if config.supervised:
        config = config if config.backbone != AUTO else dataclasses.replace(config, backbone=DEFAULT_BACKBONE)
        summary = train_supervised(config, [Path(p) for p in args.inputs], args.output)
    else:
        images = collect_training_images(
            args.inputs, catalog_images if args.from_catalog else None, args.negative_input, args.pool, pool_images,
        )
        summary = train_on_best_backbone(config, images, args.output, progress)
    print(json.dumps(summary, indent=2))
    return 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


if __name__ == "__main__":
    run_as_script(main)
