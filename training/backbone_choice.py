"""`backbone: auto` (the default): the content recipe is fitted on each backbone a catalog runs anyway
(the encoder's Lite0 for `style`, and the copy backbone for `copy` when its wheel is installed) and
the self-checks choose between them, so a content space on the copy backbone's descriptors (A&D on
SSCD features, issue 27) costs no forward of its own when it wins.

Both runs' self-checks rank the same derivations (training/self_check.py draws them from the same
seed, sources and donors) against the same catalog, so the kept candidates' figures compare
directly; `choose` decides with the same rule as within a run (kind weights: the mean of the two
runs' weights, each from its own backbone's raw features). The encoder's backbone wins ties. The
kept run's checkpoint and sidecar become CKPT; the comparison is in the sidecar as
`backbone_choice`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

from training.backbones import AUTO, DEFAULT_BACKBONE
from training.config import TrainConfig
from training.data import TrainingImages
from training.errors import AttribError
from training.self_check import choose, weighted, weighted_error
from training.sscd import model_path
from training.unsupervised import train_unsupervised

COPY_CANDIDATE = "sscd_distilled"


def backbone_candidates(config: TrainConfig) -> list[str]:
    """The backbones a run fits: the configured one, or with `auto` Lite0 and, when its wheel is
    installed and the recipe can run on it, the copy backbone."""
    if config.backbone != AUTO:
        return [config.backbone]
    if config.unfreeze_blocks or config.head.recipe == "views" or config.supervised or not _installed(COPY_CANDIDATE):
        return [DEFAULT_BACKBONE]
    return [DEFAULT_BACKBONE, COPY_CANDIDATE]


def train_on_best_backbone(config: TrainConfig, images: TrainingImages, output: Path, progress=None) -> dict:
    """Train on every candidate backbone and keep the one whose kept head did best on the self-check."""
    names = backbone_candidates(config)
    if len(names) == 1:
        return train_unsupervised(dataclasses.replace(config, backbone=names[0]), images, output, progress)
    share = _Share(progress, len(names))
    runs = {}
    for name in names:
        on = dataclasses.replace(config, backbone=name, weights=config.weights if name == DEFAULT_BACKBONE else None)
        runs[name] = train_unsupervised(on, images, _path_for(output, name), share)
    chosen, comparison = compare(runs)
    print(f"backbones: {_describe(comparison)}; kept {chosen}", file=sys.stderr)
    for name in names:
        for suffix in ("", ".config.json", ".losses.png"):
            made = Path(f"{_path_for(output, name)}{suffix}")
            if name == chosen and made.exists():
                shutil.move(made, f"{output}{suffix}")
            made.unlink(missing_ok=True)
    summary = runs[chosen] | {"checkpoint": str(output), "config_file": f"{output}.config.json",
                              "backbone_choice": comparison | {"kept": chosen}}
    if summary.get("loss_plot"):
        summary["loss_plot"] = f"{output}.losses.png"
    sidecar = json.loads(Path(f"{output}.config.json").read_text())
    sidecar |= {"checkpoint": str(output), "backbone_choice": summary["backbone_choice"]}
    Path(f"{output}.config.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return summary


def compare(runs: dict[str, dict]) -> tuple[str, dict]:
    """(the backbone kept, the figures compared). A run without a self-check (no catalog images)
    cannot be compared: the first backbone is kept."""
    checks = {name: run["recipe"].get("self_check") for name, run in runs.items()}
    first = next(iter(runs))
    if not all(checks.values()):
        return first, {"candidates": {}, "reason": "no self-check (no catalog images): the encoder's backbone"}
    figures = {name: dict(checks[name]["candidates"][runs[name]["recipe"]["kept"]]) for name in runs}
    weights = _mean_weights([c.get("kind_weights") for c in checks.values()])
    for f in figures.values() if weights else ():  # each run weighted its kinds by its own backbone: re-weigh alike
        f |= {"weighted_mAP": weighted(f, weights), "weighted_se": weighted_error(f, weights)}
    kept = {name: {"recipe": runs[name]["recipe"]["kept"], **figures[name]} for name in runs}
    return choose(figures, weights), {"candidates": kept, "kind_weights": weights,
                                      "rule": "weighted by the pool" if weights else "worst kind, then mean"}


def _mean_weights(all_weights: list[dict | None]) -> dict | None:
    if not all(all_weights):
        return None
    return {k: round(sum(w[k] for w in all_weights) / len(all_weights), 4) for k in all_weights[0]}


def _describe(comparison: dict) -> str:
    key = "weighted_mAP" if comparison.get("kind_weights") else "mean_over_kinds"
    return ", ".join(f"{name} ({f['recipe']}) {f[key]}" for name, f in comparison["candidates"].items())


def _path_for(output: Path, backbone: str) -> Path:
    return output.with_name(f".{output.name}.{backbone}")


def _installed(name: str) -> bool:
    try:
        model_path(name)
    except AttribError:
        return False
    return True


class _Share:
    """A job's progress over several runs: each run's images count 1/runs each."""

    def __init__(self, progress, runs: int):
        self.progress, self.runs, self.seen, self.told = progress, runs, 0, 0

    def __call__(self, n: int) -> None:
        if self.progress is None:
            return
        self.seen += n
        due = self.seen // self.runs - self.told
        if due > 0:
            self.told += due
            self.progress(due)
