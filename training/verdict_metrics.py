"""How good a service's answers are on a manifest whose queries may have no source: each space,
and the verdict across them, scored as DISC21 scores copy detection (training/copy_metrics.py),
plus the AUROC of the none probability and the ECE of each answer's own claim.

Input: the answers (the JSON of POST /attribute) and each query's truth (its concept, or None for
a query whose concept has no source in the gallery). Per space:
- `<space>, plain cosine`: its top-1 concept, with the score as the confidence (AUROC of 1 - score);
- `<space>, calibrated`: the top-1 concept's `probability` as the confidence, the AUROC of the
  space's `none_probability`, and the ECE of the space's own claim (its top concept at its
  probability, or none at `none_probability`, whichever is larger).
The verdict: `verdict.probability` as the confidence, AUROC of `verdict.none_probability`, ECE of
its claim (the concept for a match, none for `none`). µAP and R@P90 in percent, AUROC and ECE in
[0, 1] (15 bins). Used by `attrib eval --service` and benchmarks/verdict.py.
"""

from __future__ import annotations

import numpy as np

from training.copy_metrics import copy_detection
from training.reliability import auroc, expected_calibration_error

FIGURES = ("µAP", "R@P90", "none_AUROC", "ECE")


def score_answers(answers: list[dict], truth: list[str | None]) -> dict[str, dict]:
    """{label: figures} for every space that answered every query, and for the verdict."""
    result = {}
    for space in answers[0]["spaces"] if answers else []:
        blocks = [answer["spaces"][space] for answer in answers]
        if all(block["available"] and block["concepts"] for block in blocks):
            top = [block["concepts"][0] for block in blocks]
            result[f"{space}, plain cosine"] = disc(np.array([t["score"] for t in top]), [t["concept"] for t in top], truth)
            claims = [(t["concept"], t["probability"], block["none_probability"]) for t, block in zip(top, blocks)]
            result[f"{space}, calibrated"] = claimed(claims, truth)
    verdicts = [answer.get("verdict") for answer in answers]
    if verdicts and all(verdicts):
        result["verdict"] = claimed([(v["concept"], v["probability"], v["none_probability"]) for v in verdicts], truth)
    return result


def claimed(claims: list[tuple[str, float, float]], truth: list) -> dict:
    """Figures of (concept, probability, none probability) answers."""
    figures = disc(np.array([p for _, p, _ in claims]), [c for c, _, _ in claims], truth,
                   none=np.array([n for _, _, n in claims]))
    return figures | {"ECE": expected_calibration_error(*claim_reliability(claims, truth))}


def claim_reliability(claims: list[tuple[str, float, float]], truth: list) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, right) of each answer's own claim: its concept, or none, whichever is surer."""
    confidence, right = [], []
    for (concept, probability, none), t in zip(claims, truth):
        match = probability >= none
        confidence.append(probability if match else none)
        right.append(concept == t if match else t is None)
    return np.array(confidence, np.float64), np.array(right, bool)


def disc(confidence: np.ndarray, predicted: list, truth: list, none: np.ndarray | None = None) -> dict:
    sourced = np.array([t is not None for t in truth])
    correct = np.array([p == t for p, t in zip(predicted, truth)])
    figures = copy_detection(confidence, correct, sourced)
    if none is not None:
        figures["none_AUROC"] = auroc(none, ~sourced)
    return figures


def format_table(report: dict[str, dict[str, dict]]) -> list[str]:
    """Markdown rows: | manifest | answer | µAP | R@P90 | none_AUROC | ECE |."""
    lines = ["| manifest | answer | " + " | ".join(FIGURES) + " |", "|---|---|" + "---|" * len(FIGURES)]
    for name, result in report.items():
        for label, figures in result.items():
            cells = ["-" if figures.get(f) is None else f"{figures[f]:.3f}" if f in ("none_AUROC", "ECE")
                     else f"{figures[f]:.1f}" for f in FIGURES]
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return lines
