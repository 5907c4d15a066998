"""A head trained with query views is served with them: /attribute embeds the query as the
average over its clean view and its augmented views, as `attrib eval` does."""

import torch

from app.attribution import attribute_bytes
from app.batcher import ForwardBatcher
from index.calibration import set_head
from index.images import decode_image
from index.ingest import IngestItem, ingest
from training.config import AugmentConfig
from training.encoders import create_encoder
from training.query_views import query_view_features, with_view_settings


def catalog_with_view_head(make_catalog, photos, tmp_path, views: int):
    """Six real photos, and a perturbed linear head with `views` query views live as `content`."""
    catalog = make_catalog()
    ingest(catalog, [IngestItem(path.name, path.stem, path.read_bytes()) for path in photos[:6]])
    trained = create_encoder("efficientnet_lite0", head_config={"type": "linear"})
    trained.head_config = with_view_settings(trained.head_config, views, AugmentConfig())
    with torch.no_grad():
        trained.head.weight.add_(0.3 * torch.randn_like(trained.head.weight, generator=torch.Generator().manual_seed(0)))
    trained.save(tmp_path / "head.pt")
    set_head(catalog, "content", tmp_path / "head.pt")
    return catalog, catalog.spaces()["content"]


def test_content_answers_use_the_heads_query_views(make_catalog, photos, tmp_path):
    catalog, live = catalog_with_view_head(make_catalog, photos, tmp_path, 3)
    assert live.head.query_views[0] == 3

    data = photos[7].read_bytes()
    decoded = decode_image(data)
    features = catalog.encoder.embed_features([decoded.image])
    views = query_view_features(catalog.encoder, decoded.image, decoded.sha256, 3, AugmentConfig())
    with_views = live.head.apply_query(features, views[None])[0]
    plain = live.head.apply(features)[0]
    best = {name: float(catalog.search(live, vector, 1)[0].score) for name, vector in
            (("views", with_views), ("plain", plain))}
    assert abs(best["views"] - best["plain"]) > 1e-4  # the views change the query's embedding

    answer = attribute_bytes(catalog, data, k=3, space="content")
    assert abs(answer.spaces["content"].concepts[0].score - best["views"]) < 1e-5
    batcher = ForwardBatcher(catalog.encoder.features, max_wait_ms=0)
    try:
        batched = attribute_bytes(catalog, data, k=3, space="content", forward=batcher)
    finally:
        batcher.close()
    assert abs(batched.spaces["content"].concepts[0].score - best["views"]) < 1e-4


def test_a_manifest_fit_sees_the_scores_the_answers_give(make_catalog, photos, tmp_path):
    """`attrib calibrate MANIFEST` scores its queries as /attribute does: with the live head's
    query views, else the fit would be made on other scores than those it is applied to."""
    import numpy as np
    import pytest

    from index.calibration import CalibrationError
    from index.calibration.labelled_fit import embed_queries, embed_query_views, manifest_fit
    from training.data import read_manifest

    catalog, live = catalog_with_view_head(make_catalog, photos, tmp_path, 2)
    manifest = tmp_path / "labelled.csv"
    manifest.write_text("path,role,concept\n" + "".join(f"{photos[7 + i]},query,{photos[i].stem}\n" for i in range(2)))
    queries = read_manifest(manifest)
    paths = [row.path for row in queries]
    features = embed_queries(catalog, paths)
    with pytest.raises(CalibrationError):
        manifest_fit(catalog, live, queries, features)
    seen = {}
    views = embed_query_views(catalog, live.head, paths, seen)
    assert views.shape[:2] == (2, 2) and embed_query_views(catalog, live.head, paths, seen) is views
    assert embed_query_views(catalog, catalog.spaces()["style"].head, paths, seen) is None
    calibration = manifest_fit(catalog, live, queries, features, "labelled.csv", views)
    for i, path in enumerate(paths):
        answer = attribute_bytes(catalog, path.read_bytes(), k=3, space="content")
        assert np.isclose(calibration.data.scores[i, 0], answer.spaces["content"].concepts[0].score, atol=1e-5)


def test_views_are_drawn_and_embedded_once_per_backbone_and_recipe_as_training_makes_them(make_catalog, photos,
                                                                                           tmp_path):
    """/attribute draws a head's query views from the moment the query is decoded and queues their
    forward on the shared batch right after the clean forwards (app/query_views.py): heads that
    ask for the same views share one drawing and one forward, heads without views start none, and
    pixels and features are those that training and `attrib eval` compute."""
    import numpy as np

    from app.query_views import QueryViews, view_key
    from training.query_views import query_view_pixels

    catalog, live = catalog_with_view_head(make_catalog, photos, tmp_path, 3)
    decoded = decode_image(photos[7].read_bytes())
    style = catalog.spaces()["style"].head
    views = QueryViews(catalog, [live.head, style, live.head], decoded)
    assert list(views.drawn) == [view_key(live.head)]
    count, augment = live.head.query_views
    expected = query_view_pixels(decoded.image, decoded.sha256, count, augment, catalog.encoder.input_size)
    pixels = views.drawn[view_key(live.head)].result()
    assert pixels.shape == (3, 224, 224, 3) and pixels.dtype == np.uint8 and np.array_equal(pixels, expected)

    batcher = ForwardBatcher(catalog.encoder.features, max_wait_ms=0)
    try:
        views.embed(catalog, {catalog.backbone_id: batcher})
        queued = views.features(live.head)
    finally:
        batcher.close()
    by_hand = query_view_features(catalog.encoder, decoded.image, decoded.sha256, count, augment)
    assert queued.shape == by_hand.shape == (3, catalog.encoder.feature_dim)
    assert np.allclose(queued, by_hand, atol=1e-4)
    assert QueryViews(catalog, [style], decoded).drawn == {}
