"""The one-forward content recipe: the distilled query head, its checkpoint round trip, the
self-check's edits, scores and choice."""

import numpy as np
import pytest
import torch
from PIL import Image

from training.check_views import KINDS, derive_for_check
from training.distil import fit_query_head, ridge_map, teacher_embeddings
from training.encoders import create_encoder, load_checkpoint
from training.heads import load_head
from training.heads import Head
from training.self_check import RAW, choose, score


def test_ridge_map_recovers_a_linear_map_and_shrinks_with_the_ridge():
    rng = np.random.default_rng(0)
    inputs, truth = rng.normal(size=(400, 12)), rng.normal(size=(5, 12))
    assert np.allclose(ridge_map(inputs, inputs @ truth.T, 1e-9), truth, atol=1e-6)
    assert np.linalg.norm(ridge_map(inputs, inputs @ truth.T, 10.0)) < 0.5 * np.linalg.norm(truth)
    with pytest.raises(ValueError):
        ridge_map(inputs, inputs @ truth.T, 0.0)


def test_query_head_gives_the_view_average_from_the_clean_view_and_survives_a_checkpoint(tmp_path):
    encoder = create_encoder(head_config={"type": "linear"}, random_init=True)
    rng = np.random.default_rng(1)
    dim = encoder.feature_dim
    # views that move every image along the same direction: the teacher is a linear function of the clean view
    clean = rng.normal(size=(3 * dim, dim)).astype(np.float32)
    views = np.stack([clean + 0.5 * rng.normal(size=clean.shape[1]).astype(np.float32) for _ in range(4)], axis=1)
    summary = fit_query_head(encoder, clean, views, ridge=1e-6)
    assert summary["mean_cosine_to_teacher"] > 0.95
    teacher = teacher_embeddings(encoder, clean[:5], views[:5])
    student = encoder.project_query(torch.from_numpy(clean[:5])).detach().numpy()
    assert np.sum(student * teacher, 1).min() > 0.9
    plain = encoder.project(torch.from_numpy(clean[:5])).detach().numpy()
    assert not np.allclose(student, plain, atol=1e-3)  # sources keep the plain head
    path = encoder.save(tmp_path / "distilled.pt")
    loaded = load_checkpoint(path)
    assert loaded.encoder_id == encoder.encoder_id and loaded.head_config["query_head"] is True
    assert np.allclose(loaded.project_query(torch.from_numpy(clean[:5])).detach().numpy(), student, atol=1e-6)
    head = load_head(path, encoder.backbone_id, dim)
    assert np.allclose(head.apply_query(clean[:5]), student, atol=1e-5)  # one forward: no views needed
    assert np.allclose(head.apply(clean[:5]), plain, atol=1e-5)
    with torch.no_grad():
        encoder.query_head.weight.mul_(2)
    encoder.invalidate_id()
    assert encoder.encoder_id != loaded.encoder_id  # the query head is part of the id


def test_check_derivations_are_deterministic_and_cover_every_kind():
    rng = np.random.default_rng(2)
    image = Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8))
    donor = Image.fromarray(rng.integers(0, 255, (100, 100, 3), dtype=np.uint8))
    kinds = set()
    for index in range(60):
        kind, first = derive_for_check(image, donor, "ab" * 32, index)
        again = derive_for_check(image, donor, "ab" * 32, index)[1]
        assert np.array_equal(np.asarray(first), np.asarray(again)) and first.size == (256, 256) and first.mode == "RGB"
        kinds.add(kind)
    assert kinds == set(KINDS)


def test_score_counts_ties_against_the_source_and_choose_prefers_raw_on_a_tie():
    identity = Head("head", "b", 3, 3, torch.nn.Identity(), torch.zeros(3))
    gallery = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    queries = np.array([[1, 0.1, 0], [0, 1, 1], [0.2, 0, 1]], np.float32)  # ranks 1, tie (2), 1
    figures = score(identity, queries, np.array([0, 1, 2]), ["a", "b", "a"], gallery)
    assert figures["mAP"] == pytest.approx(100 * (1 + 0.5 + 1) / 3, abs=0.1) and figures["R@1"] == pytest.approx(66.7, abs=0.1)
    assert figures["kinds_mAP"] == {"a": 100.0, "b": 50.0}
    raw = score(Head.identity("b", 3), queries, np.array([0, 1, 2]), ["a", "b", "a"], gallery)
    assert figures["worst_kind"] == 50.0 and choose({"head": figures, RAW: raw}) == RAW


def test_choose_never_keeps_a_candidate_that_collapses_on_one_kind():
    def figures(kinds):
        return {"kinds_mAP": kinds, "mean_over_kinds": sum(kinds.values()) / len(kinds), "worst_kind": min(kinds.values())}

    raw = figures({"copy": 95.0, "medium": 5.0, "colour": 99.0})  # best mean, collapses on one kind
    head = figures({"copy": 60.0, "medium": 30.0, "colour": 70.0})
    assert choose({RAW: raw, "head": head}) == "head"
    close = figures({"copy": 80.0, "medium": 8.0, "colour": 90.0})  # worst kind within the margin: the mean decides
    assert choose({RAW: raw, "distilled": close}) == RAW
    # a worst kind 25 points down, but measured with a standard error of 10 on both sides: not a collapse
    noisy = {"copy": 2.0, "medium": 10.0, "colour": 2.0}
    assert choose({RAW: raw | {"kinds_se": noisy}, "head": head | {"kinds_se": noisy}}) == RAW
    assert choose({RAW: raw | {"kinds_se": {**noisy, "medium": 3.0}}, "head": head | {"kinds_se": noisy}}) == "head"


def test_pool_images_weight_the_kinds_they_resemble_and_decide():
    from training.self_check import kind_weights, weighted_error

    queries = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    kinds = ["amplitude", "amplitude", "paste", "mosaic"]
    pool = np.array([[1, 0.05, 0], [0.95, 0, 0.1], [0.8, 0.2, 0], [0, 0.1, 1]], np.float32)  # 3 near amplitude, 1 near mosaic
    weights = kind_weights(pool, queries, kinds)
    assert weights == {"amplitude": pytest.approx(4 / 7, abs=1e-4), "mosaic": pytest.approx(2 / 7, abs=1e-4),
                       "paste": pytest.approx(1 / 7, abs=1e-4)}

    def figures(**kinds_map):
        values = list(kinds_map.values())
        return {"kinds_mAP": kinds_map, "mean_over_kinds": sum(values) / 3, "worst_kind": min(values)}

    raw = figures(amplitude=52.0, mosaic=60.0, paste=95.0)
    distilled = figures(amplitude=70.0, mosaic=55.0, paste=70.0)
    assert choose({RAW: raw, "distilled": distilled}) == RAW  # no pool: the mean decides within the margin
    assert choose({RAW: raw, "distilled": distilled}, weights) == "distilled"  # the queries look like amplitude swaps
    # the same lead, measured on too few derived queries to be told from noise: the robust pick stands
    noisy = {k: 12.0 for k in weights}
    assert weighted_error(distilled | {"kinds_se": noisy}, weights) == pytest.approx(12 * np.sqrt(16 + 4 + 1) / 7, abs=0.01)
    assert choose({RAW: raw | {"kinds_se": noisy}, "distilled": distilled | {"kinds_se": noisy}}, weights) == RAW
    steady = {k: 1.0 for k in weights}
    assert choose({RAW: raw | {"kinds_se": steady}, "distilled": distilled | {"kinds_se": steady}}, weights) == "distilled"


def test_a_views_candidate_averages_each_query_over_its_views():
    from training.config import AugmentConfig
    from training.query_views import average_view_embeddings, with_view_settings

    rng = np.random.default_rng(3)
    clean, views = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(4, 3, 6)).astype(np.float32)
    config = with_view_settings({}, 3, AugmentConfig())
    candidate = Head("views", "b", 6, 6, torch.nn.Identity(), torch.zeros(6), config)
    expected = average_view_embeddings(candidate.apply(clean), candidate.apply(views.reshape(-1, 6)).reshape(4, 3, 6))
    assert np.allclose(candidate.apply_query(clean, views), expected, atol=1e-6)
    assert not np.allclose(Head("head", "b", 6, 6, torch.nn.Identity(), torch.zeros(6)).apply_query(clean, views), expected)


def test_attrib_eval_embeds_queries_through_the_query_head(photos, tmp_path):
    from training.evaluate import Embedder

    encoder = create_encoder(head_config={"type": "linear"})
    rng = np.random.default_rng(4)
    clean = rng.normal(size=(64, encoder.feature_dim)).astype(np.float32)
    fit_query_head(encoder, clean, clean[:, None, :] + rng.normal(size=(64, 2, encoder.feature_dim)).astype(np.float32))
    embedder = Embedder(tmp_path / "cache")
    features = embedder.features(encoder, photos[:3], "t")
    queries = embedder.embed_queries(encoder, photos[:3], "t")
    assert np.allclose(queries, encoder.project_query(torch.from_numpy(features)).detach().numpy(), atol=1e-5)
    assert not np.allclose(queries, embedder.embed(encoder, photos[:3], "t"), atol=1e-3)  # sources: the plain head
