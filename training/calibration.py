"""Calibrated attribution: P(the query derives from concept c) and P(no catalog concept explains it).

A query's evidence is its ranked concept scores s_1 >= s_2 >= ... (a concept's score is the best
cosine similarity among its sources, as attribution ranks them). One multinomial logit over the
outcomes of a query turns them into probabilities:

  listed concept i   u_i    = a * x_i                       x = s / SCORE_UNIT
  none               u_none = b + w_mu * mu + w_sd * sd     mu, sd: mean and std of x_2..x_W, the
                                                            query's background (W = WINDOW)
  elsewhere          u_else = c + a * x_m + log(n - m)      a catalog concept below the m listed
                                                            ones (n concepts in the catalog)

P = softmax(u), so the listed probabilities plus none plus elsewhere sum to 1, and the listed
ones plus none never exceed 1. `none` is high when the best score does not stand out from the
query's own background; `elsewhere` keeps the listed probabilities honest when the true concept
is often ranked below the list (weak encoders). Every utility is linear in the five parameters,
so the negative log-likelihood is convex; it is minimised with L-BFGS and a small ridge term
(worth RIDGE queries), which keeps the fit finite on tiny or separable fit sets.

Fit data: for each labelled query its top WINDOW concept scores, the number of concepts it was
ranked against, and its truth: 0 for `none` (its concept is not in the catalog) or the 1-based
rank of its true concept (any rank; ranks past the list count as `elsewhere`).

The prior matters: none probabilities assume the share of no-source queries of the fit data
(`none_rate`, 0.5 for the catalog self-fit and the benchmark).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import torch

from training.reliability import auroc, expected_calibration_error

WINDOW = 20  # concept scores that describe a query (the list, and its background)
SCORE_UNIT = 0.05  # scores are divided by this, so that parameters are of order 1
RIDGE = 0.05  # the ridge term weighs as much as this many queries: it matters only for tiny fits
PARAMS = ("a", "b", "w_mu", "w_sd", "c")
CATALOG, MANIFEST, DECISIONS, UNINFORMED = "catalog", "manifest", "decisions", "uninformed"  # how a fit was made


@dataclass
class CalibrationData:
    """Labelled queries, as ranked concept scores."""

    scores: np.ndarray  # (n, WINDOW) float32, descending; -inf where fewer concepts were ranked
    concepts: np.ndarray  # (n,) int: concepts each query was ranked against
    truth: np.ndarray  # (n,) int: 0 none, r >= 1 the rank of the true concept

    def __post_init__(self):
        scores = np.asarray(self.scores, np.float32)
        self.scores = scores.reshape(len(self.truth), -1) if scores.size else scores.reshape(0, WINDOW)
        self.concepts = np.asarray(self.concepts, np.int64)
        self.truth = np.asarray(self.truth, np.int64)

    def __len__(self) -> int:
        return len(self.truth)

    @classmethod
    def concat(cls, parts: list["CalibrationData"]) -> "CalibrationData":
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls(np.zeros((0, WINDOW), np.float32), np.zeros(0), np.zeros(0))
        return cls(np.concatenate([p.scores for p in parts]), np.concatenate([p.concepts for p in parts]),
                   np.concatenate([p.truth for p in parts]))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores, "concepts": self.concepts, "truth": self.truth}


def group_max(scores: np.ndarray, codes: np.ndarray, groups: int) -> np.ndarray:
    """(n, groups) column-wise max of (n, items) scores over the items of each group code
    (-inf for a group with no item): a concept's score is its best source's."""
    out = np.full((len(scores), groups), -np.inf, np.float32)
    if scores.shape[1] == 0:
        return out
    order = np.argsort(codes, kind="stable")
    unique, starts = np.unique(np.asarray(codes)[order], return_index=True)
    out[:, unique] = np.maximum.reduceat(np.asarray(scores, np.float32)[:, order], starts, axis=1)
    return out


def left_out(concept_scores: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The same queries with their own concept removed from the catalog: no source."""
    out = np.array(concept_scores, np.float32, copy=True)
    out[np.arange(len(codes)), codes] = -np.inf
    return out


def ranked(concept_scores: np.ndarray, truth_column: np.ndarray | None = None,
           window: int = WINDOW) -> CalibrationData:
    """From a (n, C) matrix of concept scores (-inf: not in the catalog for that query) and each
    query's true concept column (-1: none), the fit data of `window` best scores per query."""
    concept_scores = np.asarray(concept_scores, np.float32)
    n, total = concept_scores.shape
    order = np.argsort(-concept_scores, axis=1, kind="stable")
    top = np.take_along_axis(concept_scores, order[:, :window], axis=1)
    if top.shape[1] < window:
        top = np.concatenate([top, np.full((n, window - top.shape[1]), -np.inf, np.float32)], axis=1)
    concepts = np.isfinite(concept_scores).sum(axis=1)
    truth = np.zeros(n, np.int64)
    if truth_column is not None:
        for i, column in enumerate(truth_column):
            if column >= 0 and np.isfinite(concept_scores[i, column]):
                truth[i] = 1 + int(np.flatnonzero(order[i] == column)[0])
    return CalibrationData(top, concepts, truth)


@dataclass
class Calibration:
    """A fitted calibration, stored per head id."""

    head_id: str
    method: str  # "catalog" (self-fit), "manifest", "decisions" (reviewers' verdicts) or "uninformed"
    fitted_on: str
    params: dict[str, float]
    background: tuple[float, float]  # (mu, sd) used when a query has fewer than 2 background scores
    none_rate: float
    sources: int = 0  # catalog size at the fit (a catalog self-fit is redone when it drifts)
    fitted_at: datetime | None = None
    summary: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = asdict(self)
        out["fitted_at"] = self.fitted_at.isoformat() if self.fitted_at else None
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Calibration":
        data = dict(data)
        data["background"] = tuple(data["background"])
        data["fitted_at"] = datetime.fromisoformat(data["fitted_at"]) if data.get("fitted_at") else None
        return cls(**data)


def uninformed(head_id: str, why: str) -> Calibration:
    """What a space answers with when nothing can be fitted (fewer than two concepts): even odds
    between `none` and the listed concepts, split among them by a softmax of x."""
    return Calibration(head_id, UNINFORMED, why, dict.fromkeys(PARAMS, 0.0), (0.0, 0.0), 0.5)


# -- the model ---------------------------------------------------------------------------------


def _background(x: np.ndarray, default: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of x_2..x_W per row (finite entries); rows with fewer than 2 use `default`."""
    back = x[:, 1:WINDOW]
    finite = np.isfinite(back)
    count = finite.sum(axis=1)
    filled = np.where(finite, back, 0.0)
    mean = filled.sum(axis=1) / np.maximum(count, 1)
    var = (np.where(finite, (back - mean[:, None]) ** 2, 0.0)).sum(axis=1) / np.maximum(count, 1)
    ok = count >= 2
    return np.where(ok, mean, default[0]), np.where(ok, np.sqrt(var), default[1])


def _design(scores: np.ndarray, concepts: np.ndarray, default: tuple[float, float]):
    """(x, finite mask, mu, sd, log of unlisted concepts (or -inf), x of the last listed)."""
    x = np.asarray(scores, np.float64) / SCORE_UNIT
    finite = np.isfinite(x)
    listed = finite.sum(axis=1)
    mu, sd = _background(x, default)
    last = np.take_along_axis(np.where(finite, x, 0.0), np.maximum(listed - 1, 0)[:, None], axis=1)[:, 0]
    rest = np.asarray(concepts, np.float64) - listed
    log_rest = np.where(rest > 0, np.log(np.maximum(rest, 1)), -np.inf)
    return np.where(finite, x, 0.0), finite, mu, sd, log_rest, last


def _utilities(theta, x, finite, mu, sd, log_rest, last):
    """(n, m + 2): [none, listed..., elsewhere]; works on numpy arrays and torch tensors alike."""
    lib = torch if isinstance(theta, torch.Tensor) else np
    a, b, w_mu, w_sd, c = theta[0], theta[1], theta[2], theta[3], theta[4]
    minus_inf = lib.full_like(x, -np.inf)
    listed = lib.where(finite, a * x, minus_inf)
    none = (b + w_mu * mu + w_sd * sd)[:, None]
    elsewhere = (c + a * last + log_rest)[:, None]
    return lib.concatenate([none, listed, elsewhere], 1) if lib is np else torch.cat([none, listed, elsewhere], 1)


def predict(calibration: Calibration, scores: np.ndarray, concepts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities for queries given their ranked concept scores (n, m), descending, -inf
    padded, m >= 1, and the number of concepts each was ranked against: (listed (n, m), none
    (n,), elsewhere (n,)). m may exceed WINDOW (a longer list); the background uses x_2..x_W."""
    scores = np.atleast_2d(np.asarray(scores, np.float64))
    concepts = np.broadcast_to(np.asarray(concepts, np.float64), (len(scores),))
    if calibration.method == UNINFORMED:
        x = np.where(np.isfinite(scores), scores / SCORE_UNIT, -np.inf)
        weights = np.exp(x - x.max(axis=1, keepdims=True))
        half = np.full(len(scores), 0.5)
        return 0.5 * weights / weights.sum(axis=1, keepdims=True), half, np.zeros(len(scores))
    theta = np.array([calibration.params[p] for p in PARAMS])
    u = _utilities(theta, *_design(scores, concepts, calibration.background))
    u = u - u.max(axis=1, keepdims=True)
    p = np.exp(u)
    p /= p.sum(axis=1, keepdims=True)
    return p[:, 1:-1], p[:, 0], p[:, -1]


def fit(data: CalibrationData, head_id: str, method: str, fitted_on: str, sources: int = 0) -> Calibration:
    """Maximum-likelihood fit of the five parameters (ridge RIDGE) on labelled queries."""
    if len(data) == 0 or not (data.truth == 0).any() or not (data.truth > 0).any():
        raise ValueError("calibration needs queries of both kinds: with a source in the catalog and without")
    scores = data.scores[:, :WINDOW]
    x_all = np.asarray(scores, np.float64) / SCORE_UNIT
    mu0, sd0 = _background(x_all, (0.0, 0.0))
    has_back = np.isfinite(x_all[:, 1:]).sum(axis=1) >= 2
    default = (float(mu0[has_back].mean()), float(sd0[has_back].mean())) if has_back.any() else (0.0, 0.0)
    design = _design(scores, data.concepts, default)
    listed = design[1].sum(axis=1)
    # columns: none, the listed concepts (padded to WINDOW), elsewhere (the last)
    label = np.where(data.truth == 0, 0, np.where(data.truth <= listed, data.truth, scores.shape[1] + 1))
    t = [torch.as_tensor(v, dtype=torch.float64) for v in design]
    t[1] = torch.as_tensor(design[1])
    target = torch.as_tensor(label, dtype=torch.int64)
    theta = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([theta], lr=1.0, max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        u = _utilities(theta, *t)
        loss = torch.nn.functional.cross_entropy(u, target) + RIDGE / len(target) * (theta ** 2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    params = {name: float(value) for name, value in zip(PARAMS, theta.detach().numpy())}
    calibration = Calibration(head_id, method, fitted_on, params, default, float(np.mean(data.truth == 0)),
                              sources, datetime.now().astimezone())
    listed_p, none_p, _ = predict(calibration, scores, data.concepts)
    calibration.summary = {
        "queries": int(len(data)), "none_queries": int((data.truth == 0).sum()),
        "top1_correct": int((data.truth == 1).sum()),
        "fit_none_auroc": auroc(none_p, data.truth == 0),
        "fit_top1_ece": expected_calibration_error(listed_p[:, 0], data.truth == 1),
    }
    return calibration
