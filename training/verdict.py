"""One verdict per query: is the source in the catalog, and which concept is it?

Each space answers on its own, with its own calibration (`training.calibration`): a probability
for each concept of its list and a `none` probability. The verdict fuses them. Its candidates are
the concepts that some space ranks first; for a candidate c and a query answered by spaces s:

  u_c    = b0 + sum_s b_s * logit P_s(c) + b_agree * (spaces that rank c first - 1)
  u_none = g0 + sum_s g_s * logit none_s
  u_else = 0                       (the source is a concept that no space ranks first)

and P = softmax(u). P_s(c) is the space's calibrated probability of c (EPS when c is not in the
space's list). The verdict is `match` (the best candidate, its probability, the spaces that rank
it first) when that probability is at least `none`'s, else `none`.

Every utility is linear in the parameters, so the negative log-likelihood is convex; it is
minimised with L-BFGS and a small ridge. The fit checks itself: besides the fused model it fits
one model per space that reads only that space, scores all of them by their log-loss on held-out
halves of the fit data (two folds, grouped by query), and keeps the best. So the verdict never
trusts a space that misleads on this catalog, and it is no worse than its best space there.

Match strength (issue 26): where a query's regions were matched against its candidates' sources
(`/attribute?evidence=regions`, training/regions.py), a candidate's utility can also read
b_regions * log(1 + inliers), the most RANSAC inliers between the query and the candidate's
first source in a space that ranks it first. The fit makes this variant only when its data carry
inlier counts (a refit on reviewers' decisions answered with regions: the label-free fit's
derivations match their sources by construction), on top of the variant it kept, and keeps it
(`regions`) only when its held-out log-loss is lower by more than two standard errors; answers
without matched regions never read it.

Without a fit (`max_rule`): the candidate with the highest probability in any space, with that
probability, and the lowest `none` of any space.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import torch

from training.reliability import auroc, expected_calibration_error

EPS = 1e-4
RIDGE = 0.05  # as in training.calibration: matters only for tiny fits
FUSED, MAX_RULE = "fused", "max_rule"


@dataclass
class SpaceEvidence:
    """One space's calibrated answer to one query."""

    probabilities: dict[str, float]  # concept -> probability, best first
    none: float

    @property
    def top(self) -> str | None:
        return next(iter(self.probabilities), None)


@dataclass
class Verdict:
    kind: str  # "match" or "none"
    concept: str | None  # the best candidate (also when the verdict is none)
    probability: float  # that the best candidate is the source
    none_probability: float  # that no catalog concept is
    spaces: list[str]  # the spaces that rank the candidate first
    read_regions: bool = False  # whether the candidates' match strength was read


@dataclass
class VerdictModel:
    spaces: list[str]  # the spaces the weights read, in order
    method: str  # how the fit data was made: "catalog" (self-fit) or "decisions"
    chosen: str  # FUSED, or the one space it trusts
    params: dict[str, float]
    fitted_on: str
    key: str = ""  # the live heads it was fitted for
    sources: int = 0  # catalog size at the fit
    fitted_at: datetime | None = None
    summary: dict = field(default_factory=dict)
    regions: dict[str, float] | None = None  # the variant that also reads match strength, where it helped

    def to_json(self) -> dict:
        return asdict(self) | {"fitted_at": self.fitted_at.isoformat() if self.fitted_at else None}

    @classmethod
    def from_json(cls, data: dict) -> "VerdictModel":
        data = dict(data)
        data["fitted_at"] = datetime.fromisoformat(data["fitted_at"]) if data.get("fitted_at") else None
        return cls(**data)


def candidates(evidence: dict[str, SpaceEvidence]) -> list[str]:
    return list(dict.fromkeys(e.top for e in evidence.values() if e.top is not None))


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def design(evidence: dict[str, SpaceEvidence], spaces: list[str], strength: dict[str, int] | None = None
           ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(candidates, (m, S + 1) candidate features, (S,) none features); a space that did not
    answer reads as undecided (logit 0). With `strength` ({concept: inliers}; 0 where missing),
    one more candidate column: log(1 + inliers)."""
    names = candidates(evidence)
    features = np.zeros((len(names), len(spaces) + 1 + (strength is not None)))
    none = np.zeros(len(spaces))
    for j, space in enumerate(spaces):
        if space in evidence:
            features[:, j] = _logit([evidence[space].probabilities.get(c, 0.0) for c in names])
            none[j] = _logit(evidence[space].none)
    features[:, len(spaces)] = [sum(e.top == c for e in evidence.values()) - 1 for c in names]
    if strength is not None:
        features[:, -1] = np.log1p([max(0, strength.get(c, 0)) for c in names])
    return names, features, none


def _keys(spaces: list[str], regions: bool = False) -> list[str]:
    return ["b0", *(f"b_{s}" for s in spaces), "b_agree", *(["b_regions"] if regions else []),
            "g0", *(f"g_{s}" for s in spaces)]


def _theta(params: dict[str, float], spaces: list[str], regions: bool = False) -> np.ndarray:
    return np.array([params.get(key, 0.0) for key in _keys(spaces, regions)])


def _utilities(theta, features, mask, none):
    """(n, m + 2) utilities [candidates..., none, else] for (n, m, C) features: theta is
    [b0, b_1..b_C, g0, g_1..g_S]."""
    lib = torch if isinstance(theta, torch.Tensor) else np
    c = features.shape[-1]
    u = theta[0] + (features * theta[1:c + 1]).sum(-1)
    u = lib.where(mask, u, lib.full_like(u, -np.inf))
    u_none = theta[c + 1] + (none * theta[c + 2:]).sum(-1)
    zero = u_none * 0
    return lib.concatenate([u, u_none[:, None], zero[:, None]], 1) if lib is np else \
        torch.cat([u, u_none[:, None], zero[:, None]], 1)


def predict(model: VerdictModel | None, evidence: dict[str, SpaceEvidence],
            strength: dict[str, int] | None = None) -> Verdict | None:
    """The verdict of one query (None when no space answered). `strength` ({concept: inliers}, the
    candidates' matched regions) is read by a model that kept its regions variant."""
    if not candidates(evidence):
        return None
    if model is None:
        return max_rule(evidence)
    regions = strength is not None and model.regions is not None
    names, features, none = design(evidence, model.spaces, strength if regions else None)
    theta = _theta(model.regions if regions else model.params, model.spaces, regions)
    u = _utilities(theta, features[None], np.ones((1, len(names)), bool), none[None])[0]
    p = np.exp(u - u.max())
    p /= p.sum()
    best = int(np.argmax(p[:len(names)]))
    verdict = _verdict(names[best], float(p[best]), float(p[len(names)]), evidence)
    verdict.read_regions = regions
    return verdict


def max_rule(evidence: dict[str, SpaceEvidence]) -> Verdict:
    best = max(candidates(evidence), key=lambda c: max(e.probabilities.get(c, 0.0) for e in evidence.values()))
    probability = max(e.probabilities.get(best, 0.0) for e in evidence.values())
    return _verdict(best, probability, min(e.none for e in evidence.values()), evidence)


def _verdict(concept: str, probability: float, none: float, evidence: dict[str, SpaceEvidence]) -> Verdict:
    carried = [name for name, e in evidence.items() if e.top == concept]
    return Verdict("match" if probability >= none else "none", concept, probability, none, carried)


# -- fitting -------------------------------------------------------------------------------------


def _tensors(examples: list[dict[str, SpaceEvidence]], truths: list[str | None], spaces: list[str],
             strengths: list[dict[str, int]] | None = None):
    """Padded features (n, S, C), mask, none features (n, S) and labels: the candidate's column,
    S for none, S + 1 for a source that no space ranks first. C is S + 1, or S + 2 with strengths."""
    n, s = len(examples), len(spaces)
    features = np.zeros((n, s, s + 1 + (strengths is not None)))
    mask, none, labels = np.zeros((n, s), bool), np.zeros((n, s)), np.zeros(n, np.int64)
    for i, (evidence, truth) in enumerate(zip(examples, truths)):
        names, f, g = design(evidence, spaces, None if strengths is None else strengths[i])
        features[i, :len(names)], mask[i, :len(names)], none[i] = f, True, g
        labels[i] = s if truth is None else names.index(truth) if truth in names else s + 1
    return features, mask, none, labels


def _fit_theta(features, mask, none, labels, only: int | None) -> np.ndarray:
    s, c = none.shape[1], features.shape[-1]
    if only is not None:  # read one space: the other spaces' columns are zero
        keep = np.ones(c, bool)
        keep[:s] = np.arange(s) == only
        features, none = features * keep, none * (np.arange(s) == only)
    t = [torch.as_tensor(v) for v in (features, mask, none)]
    target = torch.as_tensor(labels)
    theta = torch.zeros(c + s + 2, dtype=torch.float64)
    theta[1:s + 1], theta[c + 2:] = 1.0 / s, 1.0 / s
    theta.requires_grad_(True)
    optimiser = torch.optim.LBFGS([theta], lr=1.0, max_iter=300, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(_utilities(theta, *t), target) + RIDGE / len(target) * (theta ** 2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return theta.detach().numpy()


def _log_losses(theta, features, mask, none, labels) -> np.ndarray:
    u = _utilities(theta, features, mask, none)
    u = u - u.max(axis=1, keepdims=True)
    log_p = u - np.log(np.exp(u).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels]


def _held_out(tensors, fold: np.ndarray, only: int | None) -> np.ndarray:
    """Each example's log-loss under a fit on the other fold (inf where a fold is empty)."""
    losses = np.full(len(fold), np.inf)
    for part in (fold, ~fold):
        if part.any() and (~part).any():
            losses[~part] = _log_losses(_fit_theta(*[v[part] for v in tensors], only), *[v[~part] for v in tensors])
    return losses


def _clearly_lower(losses: np.ndarray, than: np.ndarray, groups: np.ndarray) -> bool:
    """Whether `losses` beat `than` by more than two standard errors of the difference, summed
    per query (`groups`), so that a column that carries nothing is not kept by chance."""
    _, group = np.unique(groups, return_inverse=True)
    gain = np.bincount(group, than - losses)
    if len(gain) < 2 or not np.isfinite(gain).all():
        return False
    return bool(gain.mean() > 2 * gain.std(ddof=1) / np.sqrt(len(gain)))


def fit(examples: list[dict[str, SpaceEvidence]], truths: list[str | None], groups: np.ndarray, spaces: list[str],
        method: str, fitted_on: str, key: str = "", sources: int = 0,
        strengths: list[dict[str, int]] | None = None) -> VerdictModel:
    """Fit the fused model and one per space, keep the one with the lowest held-out log-loss (two
    folds by `groups`: the examples of one query stay together), refitted on everything. With
    `strengths` (each example's {candidate: inliers}), the kept variant is fitted again reading
    them too, and that one is kept beside it as `regions` if its held-out log-loss is clearly lower
    (by more than two standard errors)."""
    tensors = _tensors(examples, truths, spaces)
    labels = tensors[3]
    if not (labels == len(spaces)).any() or not (labels != len(spaces)).any():
        raise ValueError("a verdict needs examples of both kinds: with a source in the catalog and without")
    fold = np.asarray(groups) % 2 == 0
    variants = {FUSED: None, **{space: j for j, space in enumerate(spaces)}}
    losses = {name: _held_out(tensors, fold, only) for name, only in variants.items()}
    held_out = {name: float(value.mean()) for name, value in losses.items()}
    chosen = min(held_out, key=held_out.get)
    theta = _fit_theta(*tensors, variants[chosen])
    model = VerdictModel(list(spaces), method, chosen, dict(zip(_keys(spaces), map(float, theta))), fitted_on, key,
                         sources, datetime.now().astimezone())
    if strengths is not None:
        with_strength = _tensors(examples, truths, spaces, strengths)
        read = _held_out(with_strength, fold, variants[chosen])
        held_out[f"{chosen}+regions"] = float(read.mean())
        if _clearly_lower(read, losses[chosen], groups):
            theta = _fit_theta(*with_strength, variants[chosen])
            model.regions = dict(zip(_keys(spaces, True), map(float, theta)))
    model.summary = {"examples": len(labels), "none_examples": int((labels == len(spaces)).sum()),
                     "held_out_log_loss": {k: round(v, 4) for k, v in held_out.items()}} | _fit_figures(model, examples, truths)
    if model.regions is not None:
        model.summary["regions"] = _fit_figures(model, examples, truths, strengths)
    return model


def _fit_figures(model: VerdictModel, examples, truths, strengths=None) -> dict:
    verdicts = [predict(model, e, None if strengths is None else strengths[i]) for i, e in enumerate(examples)]
    none = np.array([v.none_probability for v in verdicts])
    right = np.array([v.concept == t for v, t in zip(verdicts, truths)])
    return {"fit_none_auroc": auroc(none, np.array([t is None for t in truths])),
            "fit_match_ece": expected_calibration_error(np.array([v.probability for v in verdicts]), right)}
