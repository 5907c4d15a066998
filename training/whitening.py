"""Head fitting in closed form: the linear Alignment-and-Disentanglement solution.

For a linear head W on centred unit features x, alignment asks that W x and W x' agree for every
augmented view x' (minimise E||W (x - x')||^2) and disentanglement asks that the embedding be
whitened (W Cov(x) W^T = I); together that is canonical correlation analysis between an image and
its views (Hotelling, *Relations between two sets of variates*, Biometrika 1936), the reading of
arXiv 2601.22663 in DESIGN.md. With every direction kept and scored by cosine similarity, the
solution reduces to whitening by the *nuisance* covariance, the covariance of view differences:

    W = (N + eps * mean_eigenvalue(N) * I)^(-1/2),   N = E[(x - x')(x - x')^T]

Directions that augmentations move a lot (texture, colour, medium) are shrunk; directions that
survive them (layout, shape) are kept. It is the whitening step of W-MSE (Ermolov, Siarohin,
Sangineto and Sebe, *Whitening for Self-Supervised Representation Learning*, ICML 2021) applied
to the nuisance rather than to the embedding. It takes one eigendecomposition of a D x D matrix:
seconds on a CPU, with no steps to tune.
"""

from __future__ import annotations

import numpy as np
import torch


def nuisance_covariance(clean: np.ndarray, views: np.ndarray) -> np.ndarray:
    """N = mean over images and views of (u - u')(u - u')^T, with u, u' the unit clean and view
    features; clean (N, D), views (N, V, D). Float64."""
    if clean.ndim != 2 or views.ndim != 3 or views.shape[0] != clean.shape[0] or views.shape[2] != clean.shape[1]:
        raise ValueError(f"expected clean (N, D) and views (N, V, D), got {clean.shape} and {views.shape}")
    u = _unit(clean.astype(np.float64))
    diff = (u[:, None, :] - _unit(views.astype(np.float64))).reshape(-1, clean.shape[1])
    return diff.T @ diff / len(diff)


def whitening_matrix(nuisance: np.ndarray, eps: float) -> np.ndarray:
    """(N + eps * mean eigenvalue * I)^(-1/2), symmetric; eps > 0 keeps it finite where the
    views never move (N is rank-deficient when there are fewer view differences than dimensions)."""
    if eps <= 0:
        raise ValueError("eps must be > 0")
    values, vectors = np.linalg.eigh(nuisance)
    values = np.clip(values, 0.0, None)
    scale = 1.0 / np.sqrt(values + eps * max(values.mean(), 1e-12))
    return (vectors * scale) @ vectors.T


def fit_whitening_head(encoder, clean: np.ndarray, views: np.ndarray, eps: float) -> dict[str, float]:
    """Set the linear head of `encoder` to the nuisance-whitening matrix; returns a summary."""
    head = encoder.head
    if not isinstance(head, torch.nn.Linear) or head.weight.shape[0] != head.weight.shape[1]:
        raise ValueError("the closed-form fit needs a square linear head")
    nuisance = nuisance_covariance(clean, views)
    matrix = whitening_matrix(nuisance, eps)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(matrix).to(head.weight))
    encoder.eval()
    encoder.invalidate_id()
    values = np.linalg.eigvalsh(nuisance)
    return {"nuisance_trace": float(values.sum()), "nuisance_top_share": float(values[-10:].sum() / max(values.sum(), 1e-12))}


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)
