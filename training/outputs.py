"""What a training run leaves beside its checkpoint: `<ckpt>.config.json` (the final config and
the run summary) and `<ckpt>.losses.png` (every loss term over the steps)."""

from __future__ import annotations

import json
from pathlib import Path

from training.config import TrainConfig
from training.loop import History


def save_outputs(encoder, config: TrainConfig, history: History, output: Path, summary: dict) -> dict:
    """Checkpoint, `<ckpt>.config.json` (config + summary) and `<ckpt>.losses.png`."""
    output = Path(output)
    encoder.save(output)
    summary = {"checkpoint": str(output), "encoder_id": encoder.encoder_id, **summary}
    sidecar = {"config": config.to_dict(), **summary}
    Path(f"{output}.config.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    summary["config_file"] = f"{output}.config.json"
    summary["loss_plot"] = None
    if history.terms:  # a closed-form fit has no steps to plot
        plot_history(history, Path(f"{output}.losses.png"))
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
