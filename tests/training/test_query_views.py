"""Query views: the averaged query embedding against a direct computation, the recipe round trip
through a checkpoint, and one computation shared by the service's head and `attrib eval`."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from training.config import AugmentConfig, ConfigError, TrainConfig, merge, validate
from training.encoders import create_encoder, load_checkpoint
from training.heads import Head
from training.query_views import average_view_embeddings, query_view_images, view_settings, with_view_settings
from training.views import ViewMaker, recipe_key, rendering_crop, silhouette, sketch, view_rng


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_average_matches_a_loop():
    rng = np.random.default_rng(0)
    clean, views = unit(rng.normal(size=(4, 6))), unit(rng.normal(size=(4, 3, 6)))
    expected = []
    for i in range(4):
        total = clean[i].copy()
        for v in range(3):
            total += views[i, v]
        expected.append(total / np.linalg.norm(total))
    out = average_view_embeddings(clean, views)
    assert out.dtype == np.float32 and np.allclose(out, np.array(expected), atol=1e-6)
    with pytest.raises(ValueError):
        average_view_embeddings(clean, views[:3])


def test_settings_round_trip_and_zero_means_none():
    augment = AugmentConfig(p_sketch=0.5)
    config = with_view_settings({"type": "linear", "in_dim": 4, "out_dim": 4}, 3, augment)
    assert view_settings(config) == (3, augment)
    assert view_settings(with_view_settings(config, 0, augment)) == (0, None)
    assert view_settings(None) == (0, None)


def test_query_views_are_the_training_views():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (80, 96, 3), dtype=np.uint8))
    augment = AugmentConfig()
    made = query_view_images(image, "ab" * 32, 3, augment, 64)
    maker = ViewMaker(augment, 64)
    for i, view in enumerate(made):
        assert view.size == (64, 64)
        assert np.array_equal(np.asarray(view), np.asarray(maker(image, view_rng("ab" * 32, i, recipe_key(augment)))))


def test_service_head_and_checkpoint_carry_the_query_views(tmp_path):
    encoder = create_encoder("efficientnet_lite0", head_config={"type": "linear"}, random_init=True)
    encoder.head_config = with_view_settings(encoder.head_config, 2, AugmentConfig())
    with torch.no_grad():
        encoder.head.weight.copy_(torch.randn_like(encoder.head.weight))
    encoder.save(tmp_path / "h.pt")
    loaded = load_checkpoint(tmp_path / "h.pt")
    assert loaded.query_views == (2, AugmentConfig())
    head = Head.of_encoder(loaded)
    assert head.query_views == (2, AugmentConfig())
    rng = np.random.default_rng(2)
    feats, views = rng.normal(size=(3, encoder.feature_dim)).astype(np.float32), rng.normal(size=(3, 2, encoder.feature_dim)).astype(np.float32)
    with torch.no_grad():
        direct = [loaded.project(torch.from_numpy(x)).numpy() for x in (feats, views.reshape(6, -1))]
    expected = average_view_embeddings(direct[0], direct[1].reshape(3, 2, -1))
    assert np.allclose(head.apply_query(feats, views), expected, atol=1e-5)
    assert np.allclose(head.apply_query(feats), head.apply(feats))


def test_service_view_features_equal_the_training_cache(tmp_path):
    from training.data import FeatureCache, FeatureExtractor, file_sha256, load_rgb
    from training.query_views import query_view_features

    path = tmp_path / "q.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(path)
    encoder = create_encoder("efficientnet_lite0", random_init=True)
    augment = AugmentConfig()
    cached = FeatureExtractor(encoder, FeatureCache(None, "k"), augment).extract([path], views=2).views[0]
    served = query_view_features(encoder, load_rgb(path), file_sha256(path), 2, augment)
    assert served.shape == cached.shape and np.allclose(served, cached, atol=1e-5)


def test_renderings_are_the_centre_crop_drawn_as_a_sketch_and_a_silhouette(photos):
    image = Image.open(photos[0]).convert("RGB").resize((1000, 700))  # large enough for the reducing gap
    renderings = AugmentConfig(renderings=("sketch", "silhouette"))
    made = query_view_images(image, "a" * 64, 2, renderings, 224)
    crop = rendering_crop(image, 224)
    fitted = np.asarray(ImageOps.fit(image, (224, 224), Image.Resampling.BICUBIC).convert("L"), np.float32)
    assert crop.size == (224, 224) and np.abs(np.asarray(crop, np.float32) - fitted).mean() < 1.0  # the centre square
    for view, expected in zip(made, (sketch(crop), silhouette(crop))):
        assert np.array_equal(np.asarray(view), np.asarray(expected))
    assert all(np.array_equal(np.asarray(a), np.asarray(b))  # nothing random: the image's hash does not matter
               for a, b in zip(made, query_view_images(image, "b" * 64, 2, renderings, 224)))
    maker = ViewMaker(renderings, 224)  # training's view i is the same as the query's
    assert all(np.array_equal(np.asarray(maker(image, None, i)), np.asarray(made[i])) for i in range(2))
    # a smaller render size: drawn from the crop at that size, whatever the backbone's input size
    small = AugmentConfig(renderings=("sketch", "silhouette"), render_size=192)
    for view, expected in zip(query_view_images(image, "a" * 64, 2, small, 256), (sketch, silhouette)):
        assert view.size == (192, 192)
        assert np.array_equal(np.asarray(view), np.asarray(expected(rendering_crop(image, 192))))
    # the head config round trip (JSON lists); views drawn before OpenCV's drawings (v1) never share a cache key
    assert view_settings(with_view_settings({"type": "linear"}, 2, small)) == (2, small)
    assert len({recipe_key(AugmentConfig()), "5909f9137c14", recipe_key(renderings), recipe_key(small)}) == 4
    for size in (32, 2048):
        with pytest.raises(ConfigError, match="render_size"):
            validate(merge(TrainConfig(), {"augment": {"render_size": size}}))
    with pytest.raises(ConfigError, match="renderings"):
        validate(merge(TrainConfig(), {"augment": {"renderings": ["sketch", "oil painting"]}}))


def test_the_drawings_find_a_known_shape():
    """A light square on a dark ground: the sketch inks its outline and nothing else, the silhouette
    is the square itself (the side that owns less of the border), and a flat image has no figure."""
    pixels = np.full((224, 224, 3), 40, np.uint8)
    pixels[60:160, 70:170] = 220
    square = np.zeros((224, 224), bool)
    square[60:160, 70:170] = True
    outline = square ^ np.pad(square[1:-1, 1:-1] & square[:-2, 1:-1] & square[2:, 1:-1] & square[1:-1, :-2]
                              & square[1:-1, 2:], 1)
    near = np.zeros_like(outline)
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            near |= np.roll(outline, (dy, dx), axis=(0, 1))
    ink = np.asarray(sketch(Image.fromarray(pixels)))[..., 0] == 0
    assert ink[near].mean() > 0.3 and not ink[~near].any()
    # every side is inked along its whole length: each column of the top and bottom bands, each row of the left and right
    assert all(band.any(axis=0).all() for band in (ink[56:64, 80:160], ink[156:164, 80:160]))
    assert all(band.any(axis=1).all() for band in (ink[70:150, 66:74], ink[70:150, 166:174]))
    figure = np.asarray(silhouette(Image.fromarray(pixels)))[..., 0] == 0
    assert (figure & square).sum() / (figure | square).sum() > 0.95
    inverted = np.asarray(silhouette(Image.fromarray(255 - pixels)))[..., 0] == 0
    assert np.array_equal(inverted, figure)
    assert np.asarray(silhouette(Image.fromarray(np.full((64, 64, 3), 90, np.uint8)))).min() == 255


def test_a_rendered_heads_input_shape_is_compiled_when_the_head_is_loaded():
    """The copy backbone's OpenVINO runner compiles one model per input shape. A rendered head's
    192 px views are a shape that clean crops never have, so `warm_up_views` (called where spaces
    are opened or built) compiles it at load; a head without views of another size adds nothing."""
    from training.query_views import warm_up_views
    from training.sscd import CopyBackbone

    backbone = CopyBackbone("sscd_distilled")  # not the process-wide cached one: nothing compiled yet
    if backbone.engine_name != "openvino":
        pytest.skip("only OpenVINO compiles per input shape")
    compiled = backbone._runner._compiled  # noqa: SLF001 - what the runner has compiled is the behaviour here
    plain = Head.of_encoder(create_encoder("sscd_distilled", head_config={"type": "linear", "out_dim": 8}))
    warm_up_views(backbone, plain)
    assert set(compiled) == {(1, 256, 256, 3)}
    renderings = {"query_views": 2, "query_augment": {"renderings": ["sketch", "silhouette"], "render_size": 192}}
    rendered = Head.of_encoder(create_encoder("sscd_distilled", head_config={"type": "linear", "out_dim": 8, **renderings}))
    warm_up_views(backbone, rendered)
    assert set(compiled) == {(1, 256, 256, 3), (2, 192, 192, 3)}
