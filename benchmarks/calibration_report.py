"""Tables and the reliability-diagram PNG of benchmarks/calibration.py (the report, apart from
the runs that make it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.reliability import BINS, auroc, expected_calibration_error, reliability_bins


def summary_table(report: dict) -> str:
    """Mean (min-max) over both removals and both directions."""
    lines = ["| gallery | encoder | calibration | none AUROC | top-1 ECE | top-1 accuracy, source present |",
             "|---|---|---|---|---|---|"]
    keys = list(dict.fromkeys((r["gallery"], r["encoder"], r["fit"]) for r in report["rows"]))
    for gallery, encoder, how in keys:
        rows = [r for r in report["rows"] if (r["gallery"], r["encoder"], r["fit"]) == (gallery, encoder, how)]
        cells = []
        for metric in ("none_auroc", "top1_ece", "top1_accuracy_present"):
            values = [r[metric] for r in rows]
            cells.append(f"{np.mean(values):.3f} ({min(values):.3f}–{max(values):.3f})")
        fitted = "labelled, other half" if how == "labelled half" else "catalog self-fit, no labels"
        lines.append(f"| {gallery} | {encoder} | {fitted} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_table(report: dict) -> str:
    lines = ["| gallery | encoder | calibration fitted on | removal | reported half | none AUROC | top-1 ECE | top-1 acc. (present) "
             "| mean P(top-1) | mean none: present / gone | AUROC of -s1 / -(s1-s2) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        fitted = f"labelled half {r['fitted']}" if r["fit"] == "labelled half" else "catalog self-fit (no labels)"
        lines.append(f"| {r['gallery']} | {r['encoder']} | {fitted} | {r['removal']} | {r['reported']} | {r['none_auroc']:.3f} | "
                     f"{r['top1_ece']:.3f} | {r['top1_accuracy_present']:.3f} | {r['mean_top1_probability']:.3f} | "
                     f"{r['mean_none_present']:.2f} / {r['mean_none_gone']:.2f} | {r['auroc_minus_s1']:.3f} / {r['auroc_minus_gap']:.3f} |")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["raw", "A&D", "A&D transductive"]
    fig, axes = plt.subplots(2, len(labels), figsize=(4 * len(labels), 7.2))
    for column, label in enumerate(labels):
        rows = [r for r in report["rows"] if r["encoder"] == label and r["fit"] == "labelled half"
                and r["gallery"] == "sources"]
        confidence = np.concatenate([r["_confidence"] for r in rows])
        correct = np.concatenate([r["_correct"] for r in rows])
        bins = reliability_bins(confidence, correct)
        ax = axes[0, column]
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
        ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=1 / BINS, align="edge",
               edgecolor="black", alpha=0.7, label="accuracy")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="black", markersize=3)
        ece = expected_calibration_error(confidence, correct)
        ax.set(title=f"{label}: top-1 (ECE {ece:.3f}, n={len(confidence)})", xlabel="top-1 probability",
               ylabel="fraction correct", xlim=(0, 1), ylim=(0, 1))
        none = np.concatenate([r["_none"] for r in rows])
        gone = np.concatenate([r["_gone"] for r in rows]).astype(bool)
        ax = axes[1, column]
        ax.hist([none[~gone], none[gone]], bins=20, range=(0, 1), label=["source present", "source gone"])
        ax.set(title=f"{label}: none (AUROC {auroc(none, gone):.3f})", xlabel="none_probability", ylabel="queries")
        ax.legend(fontsize=8)
    fig.suptitle("tvs-dev-content: calibration fitted on one half of the classes, reported on the other")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
