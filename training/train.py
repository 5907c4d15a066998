"""`attrib train`: the Alignment-and-Disentanglement encoder (arXiv 2601.22663), and the
supervised baseline it is compared with.

Unsupervised (the product):
  attrib train INPUT... --output CKPT [--config FILE] [flags] [--set section.key=value ...]
INPUT is an image folder, an image, or a benchmark manifest (labels ignored; `distractor` rows are
negative-only). `--from-catalog` trains on the catalog's stored sources. The frozen backbone's
features of a clean view and `views` augmented views per anchor image are cached on disk; a
projection head (on L2-normalised, centred features) is then trained with InfoNCE between the
clean view and an augmented view (alignment) plus a log-det covariance term (disentanglement).

Supervised baseline (Wang et al., ICCV 2023), for comparison only:
  attrib train --supervised MANIFEST... --output CKPT
trains identity-initialised linear query and source mappers on the manifest's (query, source)
pairs. CKPT holds the source mapper (what the catalog would index with); `<CKPT stem>.query.pt`
holds the query mapper, and `<CKPT>.config.json` names it, so `attrib eval --encoder CKPT` embeds
queries with it.

Outputs: CKPT (a self-describing encoder checkpoint ATTRIB_ENCODER can point to),
`<CKPT>.config.json` (the final config and a run summary) and `<CKPT>.losses.png`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.config import (
    ConfigError, TrainConfig, default_cache_dir, load_config_file, merge, parse_assignment, validate,
)
from training.data import DataError, FeatureCache, FeatureExtractor, backbone_key, collect_training_images, read_manifest
from training.errors import run_as_script
from training.losses import AlignDisentangleLoss, SupervisedContrastiveLoss

# flag -> dotted config key; each flag overrides the config file
FLAGS = {
    "backbone": ("backbone", str), "weights": ("weights", str), "views": ("views", int),
    "cache_dir": ("cache_dir", str), "batch_size": ("batch_size", int), "negatives": ("negatives", int),
    "steps": ("steps", int), "lr": ("lr", float), "seed": ("seed", int), "device": ("device", str),
    "unfreeze_blocks": ("unfreeze_blocks", int), "head": ("head.type", str), "out_dim": ("head.out_dim", int),
    "hidden_dim": ("head.hidden_dim", int), "temperature": ("loss.temperature", float),
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


def main(argv: list[str] | None = None, catalog_images: list[Path] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    config = resolve_config(args)
    training_device(config)  # fail early on a CUDA-only option without CUDA
    if args.from_catalog and not catalog_images:
        raise DataError("catalog is empty: index source images first, or pass INPUT folders")
    if not args.inputs and not args.from_catalog:
        raise DataError("no training input: give image folders or manifests, or --from-catalog")
    seed_everything(config.seed)
    if config.supervised:
        summary = train_supervised(config, [Path(p) for p in args.inputs], args.output)
    else:
        images = collect_training_images(args.inputs, catalog_images if args.from_catalog else None, args.negative_input)
        summary = train_unsupervised(config, images, args.output)
    print(json.dumps(summary, indent=2))
    return 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# -- shared pieces -----------------------------------------------------------------------------


def make_encoder(config: TrainConfig, head_type: str | None = None, out_dim: int | None = None):
    from training.encoders import create_encoder

    head = {"type": head_type or config.head.type, "hidden_dim": config.head.hidden_dim}
    if head["type"] == "mlp" or out_dim is not None:
        head["out_dim"] = out_dim or config.head.out_dim
    return create_encoder(config.backbone, config.weights, head_config=head)


def training_device(config: TrainConfig) -> torch.device:
    from training.encoders import resolve_device

    if config.unfreeze_blocks and not torch.cuda.is_available():
        raise ConfigError("unfreeze_blocks > 0 (end-to-end training) needs a CUDA device; use 0 on the CPU")
    return resolve_device(config.device)


def extractor_for(encoder, config: TrainConfig) -> FeatureExtractor:
    cache = FeatureCache(config.cache_dir or default_cache_dir(), backbone_key(encoder))
    return FeatureExtractor(encoder, cache, config.augment, config.image_batch_size)


def normalised_mean(*arrays: np.ndarray) -> torch.Tensor:
    """The centring vector: mean of the L2-normalised clean features."""
    rows = torch.from_numpy(np.concatenate(arrays)).float()
    return torch.nn.functional.normalize(rows, dim=-1).mean(dim=0)


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 0."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(list(params), lr=config.lr, weight_decay=config.weight_decay)


# -- unsupervised A&D --------------------------------------------------------------------------


@dataclass
class History:
    steps: list[int] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)

    def add(self, step: int, terms: dict[str, torch.Tensor]) -> None:
        self.steps.append(step)
        for name, value in terms.items():
            self.terms.setdefault(name, []).append(float(value.detach()))

    def last(self, window: int = 20) -> dict[str, float]:
        return {name: float(np.mean(values[-window:])) for name, values in self.terms.items()}


def train_unsupervised(config: TrainConfig, images, output: Path) -> dict:
    if not images.anchors:
        raise DataError("no anchor images to train on (distractors alone are negatives only)")
    device = training_device(config)
    encoder = make_encoder(config)
    extractor = extractor_for(encoder, config)
    started = time.perf_counter()
    anchors = extractor.extract(images.anchors, views=config.views, desc="anchor features")
    negatives = extractor.extract(images.negatives, desc="negative features").clean if images.negatives else None
    extract_s = time.perf_counter() - started
    if len(anchors.paths) < 2:
        raise DataError("need at least 2 readable anchor images")
    with torch.no_grad():
        encoder.center.copy_(normalised_mean(anchors.clean, *([negatives] if negatives is not None else [])))
    started = time.perf_counter()
    if config.unfreeze_blocks:
        history = fit_end_to_end(encoder, images, config, device)
    else:
        history = fit_head(encoder, anchors.clean, anchors.views, negatives, config, device)
    train_s = time.perf_counter() - started
    summary = {
        "anchors": len(anchors.paths), "negatives": 0 if negatives is None else len(negatives),
        "feature_seconds": round(extract_s, 1), "train_seconds": round(train_s, 1), "final_terms": history.last(),
    }
    return save_outputs(encoder.cpu(), config, history, output, summary)


def fit_head(encoder, clean: np.ndarray, views: np.ndarray, negatives: np.ndarray | None, config: TrainConfig,
             device: torch.device | str = "cpu") -> History:
    """Train `encoder.head` on cached features: clean (N, D), views (N, V, D), negatives (M, D)."""
    generator = torch.Generator().manual_seed(config.seed)
    clean_t, views_t = torch.from_numpy(clean).float(), torch.from_numpy(views).float()
    neg_t = torch.from_numpy(negatives).float() if negatives is not None and len(negatives) else None
    encoder.to(device).train()
    encoder.backbone.eval()
    criterion = AlignDisentangleLoss(config.loss)
    optimizer = make_optimizer(encoder.head.parameters(), config)
    history, batch = History(), min(config.batch_size, len(clean_t))
    order = torch.randperm(len(clean_t), generator=generator)
    cursor = 0
    for step in tqdm(range(config.steps), desc="training head", unit="step", file=sys.stderr, dynamic_ncols=True):
        if cursor + batch > len(order):
            order, cursor = torch.randperm(len(clean_t), generator=generator), 0
        idx = order[cursor : cursor + batch]
        cursor += batch
        a, b = pair_views(clean_t, views_t, idx, config.loss.pairing, generator)
        neg = sample_rows(neg_t, config.negatives, generator)
        terms = head_step(encoder, criterion, optimizer, [a, b, neg], lr_at(step, config), device)
        history.add(step, terms)
    encoder.eval()
    encoder.invalidate_id()
    return history


def pair_views(clean: torch.Tensor, views: torch.Tensor, idx: torch.Tensor, pairing: str, generator) -> tuple:
    """clean: the clean view vs one random augmented view; random: two distinct augmented views."""
    count = views.shape[1]
    first = torch.randint(count, (len(idx),), generator=generator)
    if pairing == "clean":
        return clean[idx], views[idx, first]
    if count < 2:
        raise ConfigError("pairing 'random' needs views >= 2")
    second = (first + torch.randint(1, count, (len(idx),), generator=generator)) % count
    return views[idx, first], views[idx, second]


def sample_rows(rows: torch.Tensor | None, count: int, generator) -> torch.Tensor | None:
    if rows is None or count == 0:
        return None
    if len(rows) <= count:
        return rows
    return rows[torch.randperm(len(rows), generator=generator)[:count]]


def head_step(encoder, criterion, optimizer, inputs: list, lr: float, device) -> dict[str, torch.Tensor]:
    """One optimiser step: project [a; b; negatives] through the head in one batch."""
    stacked, sizes = stack_inputs(inputs)
    return optimise(criterion, optimizer, encoder.project(stacked.to(device)), sizes, lr)


def stack_inputs(inputs: list) -> tuple[torch.Tensor, list[int]]:
    """[a, b, negatives or None] -> one batch and the sizes to split it back."""
    return torch.cat([x for x in inputs if x is not None]), [0 if x is None else len(x) for x in inputs]


def optimise(criterion, optimizer, embedded: torch.Tensor, sizes: list[int], lr: float) -> dict[str, torch.Tensor]:
    """Split the embedded batch into (a, b, negatives), take one step; a group's `scale` scales lr."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("scale", 1.0)
    a, b, neg = torch.split(embedded, sizes)
    terms = criterion(a, b, neg if len(neg) else None)
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    optimizer.step()
    return terms


# -- end to end (CUDA) -------------------------------------------------------------------------


class _ViewPairs(torch.utils.data.Dataset):
    """(clean, augmented) pixel tensors of anchor images, with fresh random views each epoch."""

    def __init__(self, paths: list[Path], encoder, config: TrainConfig):
        from training.data import ViewMaker

        self.paths, self.preprocess = paths, encoder.preprocess
        self.views = ViewMaker(config.augment, encoder.spec.input_size)
        self.seed = config.seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from training.data import load_rgb

        image = load_rgb(self.paths[i])
        rng = np.random.default_rng([self.seed, i, torch.randint(1 << 30, ()).item()])
        return self.preprocess(image), self.preprocess.to_tensor(self.views(image, rng))


def backbone_blocks(backbone: torch.nn.Module) -> list[torch.nn.Module]:
    """The backbone's blocks in order: timm `blocks` (EfficientNet stages flattened, ViT blocks)
    or an open_clip tower's `transformer.resblocks`."""
    model = getattr(backbone, "model", None)
    visual = getattr(backbone, "visual", None)
    if model is not None and hasattr(model, "blocks"):
        blocks = [b for stage in model.blocks for b in (stage if isinstance(stage, torch.nn.Sequential) else [stage])]
        return blocks
    if visual is not None and hasattr(getattr(visual, "transformer", None), "resblocks"):
        return list(visual.transformer.resblocks)
    raise ConfigError("unfreeze_blocks: this backbone's block list is not known")


def unfreeze_last_blocks(encoder, count: int) -> list[torch.nn.Parameter]:
    """Freeze the backbone, then unfreeze its last `count` blocks and every layer after them."""
    for param in encoder.backbone.parameters():
        param.requires_grad_(False)
    blocks = backbone_blocks(encoder.backbone)
    chosen = {id(p) for block in blocks[-count:] for p in block.parameters()}
    in_blocks = {id(p) for block in blocks for p in block.parameters()}
    params = list(encoder.backbone.named_parameters())
    last = max(i for i, (_, p) in enumerate(params) if id(p) in in_blocks)
    # after the blocks: final norm / conv head; open_clip keeps its output projection as `visual.proj`
    trainable = [p for i, (name, p) in enumerate(params) if id(p) in chosen or i > last or name == "visual.proj"]
    for param in trainable:
        param.requires_grad_(True)
    return trainable


def fit_end_to_end(encoder, images, config: TrainConfig, device: torch.device) -> History:
    """Train the head and the last `unfreeze_blocks` backbone blocks on pixels (bfloat16 autocast
    on CUDA). Views are drawn fresh every epoch; negatives are un-augmented distractors."""
    backbone_params = unfreeze_last_blocks(encoder, config.unfreeze_blocks)
    encoder.to(device).train()
    for module in encoder.backbone.modules():  # frozen normalisation statistics
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    optimizer = torch.optim.AdamW([
        {"params": list(encoder.head.parameters()), "scale": 1.0},
        {"params": backbone_params, "scale": 0.1},
    ], lr=config.lr, weight_decay=config.weight_decay)
    criterion = AlignDisentangleLoss(config.loss)
    pairs = _loader(_ViewPairs(images.anchors, encoder, config), config.batch_size, config.seed)
    negatives = _negative_loader(images.negatives, encoder, config)
    history, step = History(), 0
    with tqdm(total=config.steps, desc="training end to end", unit="step", file=sys.stderr, dynamic_ncols=True) as bar:
        while step < config.steps:
            for clean, augmented in pairs:
                neg = next(negatives) if negatives is not None else None
                terms = _pixel_step(encoder, criterion, optimizer, [clean, augmented, neg], lr_at(step, config), device)
                history.add(step, terms)
                step += 1
                bar.update(1)
                if step >= config.steps:
                    break
    for param in encoder.backbone.parameters():
        param.requires_grad_(False)
    encoder.eval()
    encoder.invalidate_id()
    return history


def _loader(dataset, batch_size: int, seed: int) -> torch.utils.data.DataLoader:
    workers = min(8, max(0, (torch.multiprocessing.cpu_count() or 1) - 1))
    return torch.utils.data.DataLoader(
        dataset, batch_size=min(batch_size, len(dataset)), shuffle=True, drop_last=True, num_workers=workers,
        generator=torch.Generator().manual_seed(seed), pin_memory=torch.cuda.is_available(),
    )


def _negative_loader(paths: list[Path], encoder, config: TrainConfig):
    if not paths or config.negatives == 0:
        return None
    from training.data import load_rgb

    class _Clean(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            return encoder.preprocess(load_rgb(paths[i]))

    def forever():
        while True:
            yield from _loader(_Clean(), config.negatives, config.seed + 1)

    return forever()


def _pixel_step(encoder, criterion, optimizer, inputs: list, lr: float, device) -> dict[str, torch.Tensor]:
    pixels, sizes = stack_inputs(inputs)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        features = encoder.features(pixels.to(device, non_blocking=True))
    return optimise(criterion, optimizer, encoder.project(features.float()), sizes, lr)


# -- supervised baseline (Wang et al., ICCV 2023) ----------------------------------------------


@dataclass
class LabelledFeatures:
    queries: np.ndarray  # (Q, D)
    query_concepts: np.ndarray  # (Q,) concept index
    sources: np.ndarray  # (S, D)
    source_concepts: np.ndarray  # (S,)
    negatives: np.ndarray | None


def train_supervised(config: TrainConfig, manifests: list[Path], output: Path) -> dict:
    if not manifests or any(p.suffix.lower() != ".csv" for p in manifests):
        raise DataError("--supervised trains on labelled benchmark manifests (.csv): give at least one")
    if config.unfreeze_blocks:
        raise ConfigError("the supervised baseline trains linear mappers on frozen features; use unfreeze_blocks 0")
    device = training_device(config)
    source_enc, query_enc = make_encoder(config, "linear"), make_encoder(config, "linear")
    started = time.perf_counter()
    data = labelled_features(extractor_for(source_enc, config), manifests)
    extract_s = time.perf_counter() - started
    center = normalised_mean(data.queries, data.sources, *([data.negatives] if data.negatives is not None else []))
    for enc in (source_enc, query_enc):
        enc.center.copy_(center)
    started = time.perf_counter()
    history = fit_mappers(query_enc, source_enc, data, config, device)
    summary = {
        "queries": len(data.queries), "sources": len(data.sources),
        "negatives": 0 if data.negatives is None else len(data.negatives),
        "feature_seconds": round(extract_s, 1), "train_seconds": round(time.perf_counter() - started, 1),
        "final_terms": history.last(),
    }
    query_path = output.with_name(f"{output.stem}.query{output.suffix or '.pt'}")
    query_enc.cpu().save(query_path)
    summary["query_encoder"] = query_path.name
    return save_outputs(source_enc.cpu(), config, history, output, summary)


def labelled_features(extractor: FeatureExtractor, manifests: list[Path]) -> LabelledFeatures:
    rows = [row for m in manifests for row in read_manifest(m)]
    source_concepts = sorted({r.concept for r in rows if r.role == "source"})
    index = {c: i for i, c in enumerate(source_concepts)}
    queries = [r for r in rows if r.role == "query" and r.concept in index]
    sources = [r for r in rows if r.role == "source"]
    if not queries:
        raise DataError("the supervised baseline needs query rows whose concept has source rows")
    negatives = [r.path for r in rows if r.role == "distractor"]
    q = extractor.extract([r.path for r in queries], desc="query features")
    s = extractor.extract([r.path for r in sources], desc="source features")
    if len(q.paths) != len(queries) or len(s.paths) != len(sources):
        raise DataError("some labelled images could not be read")
    n = extractor.extract(negatives, desc="negative features").clean if negatives else None
    return LabelledFeatures(
        q.clean, np.array([index[r.concept] for r in queries]), s.clean, np.array([index[r.concept] for r in sources]), n,
    )


def fit_mappers(query_enc, source_enc, data: LabelledFeatures, config: TrainConfig, device) -> History:
    """Contrastive training of both linear mappers: each query against the batch's sources
    (positives: its concept's sources) plus sampled negatives."""
    generator = torch.Generator().manual_seed(config.seed)
    q_all, s_all = torch.from_numpy(data.queries).float(), torch.from_numpy(data.sources).float()
    q_concepts, s_concepts = torch.from_numpy(data.query_concepts), torch.from_numpy(data.source_concepts)
    neg_all = torch.from_numpy(data.negatives).float() if data.negatives is not None else None
    for enc in (query_enc, source_enc):
        enc.to(device).train()
    criterion = SupervisedContrastiveLoss(config.loss.temperature)
    optimizer = make_optimizer([*query_enc.head.parameters(), *source_enc.head.parameters()], config)
    history = History()
    for step in tqdm(range(config.steps), desc="training mappers", unit="step", file=sys.stderr, dynamic_ncols=True):
        qi = torch.randint(len(q_all), (min(config.batch_size, len(q_all)),), generator=generator)
        positive = q_concepts[qi][:, None] == s_concepts[None, :]
        neg = sample_rows(neg_all, config.negatives, generator)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        queries = query_enc.project(q_all[qi].to(device))
        gallery = source_enc.project(torch.cat([s_all] + ([neg] if neg is not None else [])).to(device))
        loss = criterion(queries, gallery[: len(s_all)], positive.to(device), gallery[len(s_all):] if neg is not None else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.add(step, {"supervised_loss": loss, "loss": loss})
    for enc in (query_enc, source_enc):
        enc.eval()
        enc.invalidate_id()
    return history


# -- outputs -----------------------------------------------------------------------------------


def save_outputs(encoder, config: TrainConfig, history: History, output: Path, summary: dict) -> dict:
    """Checkpoint, `<ckpt>.config.json` (config + summary) and `<ckpt>.losses.png`."""
    output = Path(output)
    encoder.save(output)
    summary = {"checkpoint": str(output), "encoder_id": encoder.encoder_id, **summary}
    sidecar = {"config": config.to_dict(), **summary}
    Path(f"{output}.config.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    plot_history(history, Path(f"{output}.losses.png"))
    summary["config_file"] = f"{output}.config.json"
    summary["loss_plot"] = f"{output}.losses.png"
    return summary


def plot_history(history: History, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(history.terms)
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.2 * len(names)), sharex=True, squeeze=False)
    for axis, name in zip(axes[:, 0], names):
        axis.plot(history.steps, history.terms[name], linewidth=0.8)
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    run_as_script(main)
