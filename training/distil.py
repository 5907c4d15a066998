"""One backbone forward per query: the view-averaged query embedding distilled into a linear
query head.

A head with query views (training/query_views.py) embeds a query as the normalised sum of its
embeddings over the clean view and V augmented views: V + 1 backbone forwards. Here a linear map Q
is fitted so that the clean view alone gives that embedding,

    teacher(x) = unit(f(x) + sum_v f(x_v)),   student(x) = unit(Q (unit(x) - c)),
    Q = argmin sum_i ||Q u_i - teacher_i||^2 + lambda * mean_eig(U^T U) * ||Q||^2,

with f the space's head, c its centre and u_i = unit(x_i) - c over the training images whose views
are cached. This is knowledge distillation (Hinton, Vinyals and Dean, *Distilling the Knowledge in
a Neural Network*, 2015) of the test-time-augmented teacher into a student of the same cost as
the plain head, solved in closed form (ridge regression) instead of by gradient steps. Sources
keep the head's plain embedding f(x); only queries go through Q.
"""

from __future__ import annotations

import numpy as np
import torch

from training.projection import build_query_head
from training.query_views import average_view_embeddings

DEFAULT_RIDGE = 1e-2


def teacher_embeddings(encoder, clean: np.ndarray, views: np.ndarray) -> np.ndarray:
    """(N, dim) unit view-averaged embeddings of clean (N, D) and views (N, V, D) features."""
    with torch.inference_mode():
        plain = encoder.project(torch.from_numpy(clean).float()).numpy()
        flat = torch.from_numpy(views.reshape(-1, views.shape[-1])).float()
        viewed = encoder.project(flat).numpy().reshape(len(views), views.shape[1], -1)
    return average_view_embeddings(plain, viewed)


def ridge_map(inputs: np.ndarray, targets: np.ndarray, ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """The (out, in) matrix Q minimising ||inputs Q^T - targets||^2 + ridge * mean_eig * ||Q||^2."""
    if ridge <= 0:
        raise ValueError("ridge must be > 0")
    gram = inputs.T @ inputs
    gram[np.diag_indices_from(gram)] += ridge * max(np.trace(gram) / len(gram), 1e-12)
    return np.linalg.solve(gram, inputs.T @ targets).T


def fit_query_head(encoder, clean: np.ndarray, views: np.ndarray, ridge: float = DEFAULT_RIDGE) -> dict:
    """Give `encoder` a query head distilled from its view-averaged embeddings of the images with
    features clean (N, D) and views (N, V, D); returns a summary with the fit's agreement."""
    targets = teacher_embeddings(encoder, clean, views)
    unit = clean / np.maximum(np.linalg.norm(clean, axis=1, keepdims=True), 1e-12)
    inputs = unit.astype(np.float64) - encoder.center.detach().cpu().numpy().astype(np.float64)
    matrix = ridge_map(inputs, targets, ridge)
    encoder.head_config = {**encoder.head_config, "query_head": True}
    encoder.query_head = build_query_head(encoder.head_config)
    with torch.no_grad():
        encoder.query_head.weight.copy_(torch.from_numpy(matrix).float())
    encoder.invalidate_id()
    student = inputs @ matrix.T
    student /= np.maximum(np.linalg.norm(student, axis=1, keepdims=True), 1e-12)
    agreement = float(np.mean(np.sum(student * targets, 1)))
    return {"images": len(clean), "ridge": ridge, "mean_cosine_to_teacher": round(agreement, 4)}
