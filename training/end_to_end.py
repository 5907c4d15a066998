"""End-to-end fitting (CUDA): the head and the last backbone blocks trained on pixels, with
fresh augmented views every epoch and un-augmented distractors as negatives."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.config import ConfigError, TrainConfig
from training.data import load_rgb
from training.views import ViewMaker
from training.loop import History, lr_at, optimise, stack_inputs
from training.losses import AlignDisentangleLoss


class _ViewPairs(torch.utils.data.Dataset):
    """(clean, augmented) pixel tensors of anchor images, with fresh random views each epoch."""

    def __init__(self, paths: list[Path], encoder, config: TrainConfig):
        self.paths, self.preprocess = paths, encoder.preprocess
        self.views = ViewMaker(config.augment, encoder.spec.input_size)
        self.seed = config.seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
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
    pairs = _loader(_ViewPairs(images.anchors + images.pool, encoder, config), config.batch_size, config.seed)
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


class _Clean(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path], preprocess):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.preprocess(load_rgb(self.paths[i]))


def _negative_loader(paths: list[Path], encoder, config: TrainConfig):
    if not paths or config.negatives == 0:
        return None
    dataset = _Clean(paths, encoder.preprocess)

    def forever():
        while True:
            yield from _loader(dataset, config.negatives, config.seed + 1)

    return forever()


def _pixel_step(encoder, criterion, optimizer, inputs: list, lr: float, device) -> dict[str, torch.Tensor]:
    pixels, sizes = stack_inputs(inputs)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        features = encoder.features(pixels.to(device, non_blocking=True))
    return optimise(criterion, optimizer, encoder.project(features.float()), sizes, lr)
