"""Each loss against a direct reference computation, plus symmetry and gradient flow."""

import numpy as np
import pytest
import torch

from training.config import LossConfig
from training.losses import (
    AlignDisentangleLoss, covariance_loss, info_nce, logdet_infomax, multi_positive_nce, variance_loss,
)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_nt_xent(a, b, t, neg=None):
    views = unit(np.concatenate([a, b]))
    n = len(a)
    losses = []
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        candidates = [j for j in range(2 * n) if j != i]
        logits = [views[i] @ views[j] / t for j in candidates]
        if neg is not None:
            logits += list(unit(neg) @ views[i] / t)
        positive = views[i] @ views[partner] / t
        losses.append(-positive + np.log(np.sum(np.exp(logits))))
    return np.mean(losses)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_info_nce_matches_reference(rng):
    a, b, neg = rng.normal(size=(6, 5)), rng.normal(size=(6, 5)), rng.normal(size=(4, 5))
    for negatives in (None, neg):
        got = info_nce(torch.tensor(a), torch.tensor(b), 0.3, None if negatives is None else torch.tensor(negatives))
        assert float(got) == pytest.approx(reference_nt_xent(a, b, 0.3, negatives), rel=1e-9)


def test_info_nce_is_symmetric_and_rewards_alignment(rng):
    a, b = torch.tensor(rng.normal(size=(8, 16))), torch.tensor(rng.normal(size=(8, 16)))
    assert float(info_nce(a, b, 0.1)) == pytest.approx(float(info_nce(b, a, 0.1)))
    assert float(info_nce(a, a + 0.01 * b, 0.1)) < float(info_nce(a, b, 0.1))


def test_info_nce_checks_shapes():
    with pytest.raises(ValueError):
        info_nce(torch.zeros(4, 3), torch.zeros(5, 3), 0.1)
    with pytest.raises(ValueError):
        info_nce(torch.zeros(4, 3), torch.zeros(4, 3), 0.1, torch.zeros(2, 4))


def test_logdet_infomax_matches_reference(rng):
    z = unit(rng.normal(size=(32, 6)))
    scaled = z * np.sqrt(6)
    cov = np.cov(scaled, rowvar=False)
    expected = -np.linalg.slogdet(cov + 0.1 * np.eye(6))[1] / 6
    assert float(logdet_infomax(torch.tensor(z), 0.1)) == pytest.approx(expected, rel=1e-9)


def test_logdet_infomax_prefers_spread_embeddings(rng):
    spread = torch.tensor(unit(rng.normal(size=(64, 8))))
    collapsed = torch.tensor(unit(rng.normal(size=(64, 8)) * [1, 1, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01]))
    assert float(logdet_infomax(spread)) < float(logdet_infomax(collapsed))


def test_vicreg_terms_match_reference(rng):
    z = unit(rng.normal(size=(20, 4)) * [3, 1, 0.2, 0.1])
    scaled = z * 2.0
    std = np.sqrt(scaled.var(axis=0, ddof=1) + 1e-4)
    assert float(variance_loss(torch.tensor(z), 1.0)) == pytest.approx(np.maximum(0, 1 - std).mean(), rel=1e-9)
    cov = np.cov(scaled, rowvar=False)
    off = cov - np.diag(np.diag(cov))
    assert float(covariance_loss(torch.tensor(z))) == pytest.approx((off**2).sum() / 4, rel=1e-9)


def test_multi_positive_nce_matches_reference(rng):
    q, s, neg = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(2, 4))
    positive = np.array([[1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 1]], dtype=bool)
    logits = unit(q) @ unit(np.concatenate([s, neg])).T / 0.2
    expected = np.mean([
        np.log(np.exp(logits[i]).sum()) - np.log(np.exp(logits[i, :5][positive[i]]).sum()) for i in range(3)
    ])
    got = multi_positive_nce(torch.tensor(q), torch.tensor(s), torch.tensor(positive), 0.2, torch.tensor(neg))
    assert float(got) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="positive"):
        multi_positive_nce(torch.tensor(q), torch.tensor(s), torch.zeros(3, 5, dtype=torch.bool), 0.2)


def test_combined_loss_is_the_weighted_sum_of_named_terms(rng):
    config = LossConfig(align_weight=1.0, infomax_weight=0.5, variance_weight=2.0, covariance_weight=0.25)
    loss = AlignDisentangleLoss(config)
    a = torch.tensor(unit(rng.normal(size=(16, 8))), requires_grad=True)
    b = torch.tensor(unit(rng.normal(size=(16, 8))))
    terms = loss(a, b)
    assert set(terms) == {"align_loss", "infomax_loss", "variance_loss", "covariance_loss", "loss"}
    expected = terms["align_loss"] + 0.5 * terms["infomax_loss"] + 2.0 * terms["variance_loss"] + 0.25 * terms["covariance_loss"]
    assert float(terms["loss"].detach()) == pytest.approx(float(expected.detach()))
    terms["loss"].backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_zero_weight_terms_are_never_built(monkeypatch):
    import training.losses.infomax as infomax

    def boom(*_args, **_kwargs):
        raise AssertionError("a zero-weight term was computed")

    monkeypatch.setattr(infomax, "logdet_infomax", boom)
    loss = AlignDisentangleLoss(LossConfig(infomax_weight=0.0))
    assert list(loss.terms) == ["align_loss"]
    terms = loss(torch.randn(4, 8), torch.randn(4, 8))
    assert set(terms) == {"align_loss", "loss"}
    with pytest.raises(ValueError):
        AlignDisentangleLoss(LossConfig(align_weight=0.0, infomax_weight=0.0))


def test_gradients_reach_the_head_through_every_term():
    head = torch.nn.Linear(8, 8)
    x, y = torch.randn(16, 8), torch.randn(16, 8)
    for config in (LossConfig(infomax_weight=0), LossConfig(align_weight=0, infomax_weight=1), LossConfig(align_weight=0, infomax_weight=0, variance_weight=1, covariance_weight=1)):
        head.zero_grad()
        terms = AlignDisentangleLoss(config)(torch.nn.functional.normalize(head(x)), torch.nn.functional.normalize(head(y)), torch.randn(3, 8))
        terms["loss"].backward()
        assert head.weight.grad.abs().sum() > 0
