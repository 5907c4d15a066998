"""The closed-form head against a direct computation, and what it does to view directions."""

import numpy as np
import pytest

from training.whitening import nuisance_covariance, whitening_matrix


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_nuisance_covariance_matches_a_loop():
    rng = np.random.default_rng(0)
    clean, views = rng.normal(size=(5, 4)), rng.normal(size=(5, 3, 4))
    expected = np.zeros((4, 4))
    for i in range(5):
        for v in range(3):
            d = unit(clean[i]) - unit(views[i, v])
            expected += np.outer(d, d)
    assert np.allclose(nuisance_covariance(clean, views), expected / 15)
    with pytest.raises(ValueError):
        nuisance_covariance(clean, views[:4])


def test_whitening_matrix_is_the_inverse_square_root():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 6))
    nuisance = a @ a.T
    w = whitening_matrix(nuisance, eps=0.5)
    ridge = nuisance + 0.5 * np.trace(nuisance) / 6 * np.eye(6)
    assert np.allclose(w, w.T) and np.allclose(w @ ridge @ w, np.eye(6), atol=1e-8)


def test_directions_that_views_move_are_shrunk():
    rng = np.random.default_rng(2)
    clean = rng.normal(size=(200, 8)) + 5.0 * np.eye(8)[0]  # all near +e0
    views = clean[:, None, :] + rng.normal(size=(200, 4, 8)) * np.array([0, 0, 0, 0, 0, 0, 0, 3.0])  # views move e7
    w = whitening_matrix(nuisance_covariance(clean, views), eps=0.1)
    gains = np.linalg.norm(w, axis=0)
    assert gains[7] < 0.5 * gains[:7].min()
