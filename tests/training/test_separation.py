"""The label-free separation check: statistics on known geometries, and the warning on a head
that maps every pool image far from every source."""

import numpy as np
import torch

from training.config import TrainConfig, merge
from training.loop import make_encoder
from training.separation import media_statistics, separation_check


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_statistics_tell_mixed_sets_from_separated_ones():
    rng = np.random.default_rng(0)
    mixed = media_statistics(unit(rng.normal(size=(50, 16))), unit(rng.normal(size=(40, 16))))
    offset = np.zeros(16)
    offset[0] = 6.0
    apart = media_statistics(unit(rng.normal(size=(50, 16)) + offset), unit(rng.normal(size=(40, 16)) - offset))
    assert mixed["gap"] < 0.5 < 1.5 < apart["gap"]
    assert apart["pool_to_source"] < mixed["pool_to_source"] and apart["pool_to_pool"] > mixed["pool_to_pool"]


def test_gap_is_the_mean_distance_over_the_spread():
    pool = np.array([[1.0, 0.0], [0.0, 1.0]])
    sources = np.array([[-1.0, 0.0], [0.0, -1.0]])
    # means (.5,.5) and (-.5,-.5): distance sqrt(2); each row sits sqrt(.5) from its mean
    assert media_statistics(pool, sources)["gap"] == round(np.sqrt(2) / np.sqrt(0.5), 3)


def test_check_warns_on_a_head_that_separates_media_and_not_on_the_identity():
    rng = np.random.default_rng(1)
    encoder = make_encoder(merge(TrainConfig(), {"head": {"type": "linear"}}))
    dim = encoder.feature_dim
    shared = rng.normal(size=(60, dim))
    pool, sources = shared[:30] + rng.normal(size=(30, dim)), shared[30:] + rng.normal(size=(30, dim))
    pool[:, 0] += 3.0  # a small medium direction in the raw features
    quiet = separation_check(encoder, pool, sources)
    assert quiet["computed"] and quiet["warning"] is None
    assert quiet["after"]["gap"] == quiet["before"]["gap"]  # identity head, zero centre
    with torch.no_grad():
        encoder.head.weight.zero_()
        encoder.head.weight[0, 0] = 1.0  # keep only the medium direction
        encoder.head.weight[1, 1] = 0.05
    loud = separation_check(encoder, pool, sources)
    assert loud["after"]["gap"] > 1.5 * loud["before"]["gap"] and "separates pool images" in loud["warning"]


def test_check_is_skipped_without_pool_images():
    encoder = make_encoder(merge(TrainConfig(), {"head": {"type": "linear"}}))
    result = separation_check(encoder, None, np.ones((4, encoder.feature_dim)))
    assert result["computed"] is False and result["warning"] is None
