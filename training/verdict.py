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


def design(evidence: dict[str, SpaceEvidence], spaces: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(candidates, (m, S + 1) candidate features, (S,) none features); a space that did not
    answer reads as undecided (logit 0)."""
    names = candidates(evidence)
    features = np.zeros((len(names), len(spaces) + 1))
    none = np.zeros(len(spaces))
    for j, space in enumerate(spaces):
        if space in evidence:
            features[:, j] = _logit([evidence[space].probabilities.get(c, 0.0) for c in names])
            none[j] = _logit(evidence[space].none)
    features[:, -1] = [sum(e.top == c for e in evidence.values()) - 1 for c in names]
    return names, features, none


def _theta(params: dict[str, float], spaces: list[str]) -> np.ndarray:
    keys = ["b0", *(f"b_{s}" for s in spaces), "b_agree", "g0", *(f"g_{s}" for s in spaces)]
    return np.array([params.get(key, 0.0) for key in keys])


def _utilities(theta, features, mask, none):
    """(n, m + 2) utilities [candidates..., none, else] for (n, m, S + 1) features."""
    lib = torch if isinstance(theta, torch.Tensor) else np
    s = none.shape[1]
    u = theta[0] + (features * theta[1:s + 2]).sum(-1)
    u = lib.where(mask, u, lib.full_like(u, -np.inf))
    u_none = theta[s + 2] + (none * theta[s + 3:]).sum(-1)
    zero = u_none * 0
    return lib.concatenate([u, u_none[:, None], zero[:, None]], 1) if lib is np else \
        torch.cat([u, u_none[:, None], zero[:, None]], 1)


def predict(model: VerdictModel | None, evidence: dict[str, SpaceEvidence]) -> Verdict | None:
    """The verdict of one query (None when no space answered)."""
    if not candidates(evidence):
        return None
    if model is None:
        return max_rule(evidence)
    names, features, none = design(evidence, model.spaces)
    u = _utilities(_theta(model.params, model.spaces), features[None], np.ones((1, len(names)), bool), none[None])[0]
    p = np.exp(u - u.max())
    p /= p.sum()
    best = int(np.argmax(p[:len(names)]))
    return _verdict(names[best], float(p[best]), float(p[len(names)]), evidence)


def max_rule(evidence: dict[str, SpaceEvidence]) -> Verdict:
    best = max(candidates(evidence), key=lambda c: max(e.probabilities.get(c, 0.0) for e in evidence.values()))
    probability = max(e.probabilities.get(best, 0.0) for e in evidence.values())
    return _verdict(best, probability, min(e.none for e in evidence.values()), evidence)


def _verdict(concept: str, probability: float, none: float, evidence: dict[str, SpaceEvidence]) -> Verdict:
    carried = [name for name, e in evidence.items() if e.top == concept]
    return Verdict("match" if probability >= none else "none", concept, probability, none, carried)


# -- fitting -------------------------------------------------------------------------------------


def _tensors(examples: list[dict[str, SpaceEvidence]], truths: list[str | None], spaces: list[str]):
    """Padded features (n, S, S + 1), mask, none features (n, S) and labels: the candidate's
    column, S for none, S + 1 for a source that no space ranks first."""
    n, s = len(examples), len(spaces)
    features, mask, none = np.zeros((n, s, s + 1)), np.zeros((n, s), bool), np.zeros((n, s))
    labels = np.zeros(n, np.int64)
    for i, (evidence, truth) in enumerate(zip(examples, truths)):
        names, f, g = design(evidence, spaces)
        features[i, :len(names)], mask[i, :len(names)], none[i] = f, True, g
        labels[i] = s if truth is None else names.index(truth) if truth in names else s + 1
    return features, mask, none, labels


def _fit_theta(features, mask, none, labels, only: int | None) -> np.ndarray:
    s = none.shape[1]
    if only is not None:  # read one space: the others' columns are zero
        keep = np.zeros(s + 1, bool)
        keep[[only, s]] = True
        features, none = features * keep, none * (np.arange(s) == only)
    t = [torch.as_tensor(v) for v in (features, mask, none)]
    target = torch.as_tensor(labels)
    theta = torch.zeros(2 * s + 3, dtype=torch.float64)
    theta[1:s + 1], theta[s + 3:] = 1.0 / s, 1.0 / s
    theta.requires_grad_(True)
    optimiser = torch.optim.LBFGS([theta], lr=1.0, max_iter=300, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(_utilities(theta, *t), target) + RIDGE / len(target) * (theta ** 2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return theta.detach().numpy()


def _log_loss(theta, features, mask, none, labels) -> float:
    u = _utilities(theta, features, mask, none)
    u = u - u.max(axis=1, keepdims=True)
    log_p = u - np.log(np.exp(u).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit(examples: list[dict[str, SpaceEvidence]], truths: list[str | None], groups: np.ndarray, spaces: list[str],
        method: str, fitted_on: str, key: str = "", sources: int = 0) -> VerdictModel:
    """Fit the fused model and one per space, keep the one with the lowest held-out log-loss (two
    folds by `groups`: the examples of one query stay together), refitted on everything."""
    tensors = _tensors(examples, truths, spaces)
    labels = tensors[3]
    if not (labels == len(spaces)).any() or not (labels != len(spaces)).any():
        raise ValueError("a verdict needs examples of both kinds: with a source in the catalog and without")
    fold = np.asarray(groups) % 2 == 0
    variants = {FUSED: None, **{space: j for j, space in enumerate(spaces)}}
    held_out = {}
    for name, only in variants.items():
        losses = [_log_loss(_fit_theta(*[v[part] for v in tensors], only), *[v[~part] for v in tensors])
                  for part in (fold, ~fold) if part.any() and (~part).any()]
        held_out[name] = float(np.mean(losses)) if losses else float("inf")
    chosen = min(held_out, key=held_out.get)
    theta = _fit_theta(*tensors, variants[chosen])
    keys = ["b0", *(f"b_{s}" for s in spaces), "b_agree", "g0", *(f"g_{s}" for s in spaces)]
    model = VerdictModel(list(spaces), method, chosen, dict(zip(keys, map(float, theta))), fitted_on, key, sources,
                         datetime.now().astimezone())
    model.summary = {"examples": len(labels), "none_examples": int((labels == len(spaces)).sum()),
                     "held_out_log_loss": {k: round(v, 4) for k, v in held_out.items()}} | _fit_figures(model, examples, truths)
    return model


def _fit_figures(model: VerdictModel, examples, truths) -> dict:
    verdicts = [predict(model, e) for e in examples]
    none = np.array([v.none_probability for v in verdicts])
    right = np.array([v.concept == t for v, t in zip(verdicts, truths)])
    return {"fit_none_auroc": auroc(none, np.array([t is None for t in truths])),
            "fit_match_ece": expected_calibration_error(np.array([v.probability for v in verdicts]), right)}
