"""Region matching on derivations with known geometry (training/derivations.py): the predicted
source region overlaps the true crop, the transform maps the crop's corners home, a mirror is
found, and unrelated photos or blank images give no region."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.derivations import box_iou, derive
from training.regions import MIN_INLIERS, features, match_regions, query_features


@pytest.fixture(scope="module")
def sources(photos):
    return [Image.open(p).convert("RGB") for p in photos[300:306]]


def crop_box(image, left=0.15, top=0.2, right=0.8, bottom=0.85):
    w, h = image.size
    return (round(w * left), round(h * top), round(w * right), round(h * bottom))


@pytest.mark.parametrize("scale, mirrored, rotation, filter", [
    (1.0, False, 0.0, "none"),
    (0.6, False, 0.0, "none"),
    (1.3, True, 0.0, "none"),
    (0.8, False, 8.0, "none"),
    (0.9, True, -6.0, "paint"),
    (1.0, False, 0.0, "pencil"),
])
def test_the_source_region_is_found(sources, scale, mirrored, rotation, filter):
    found = 0
    for source in sources:
        derivation = derive(source, crop_box(source), scale, mirrored, rotation, filter)
        match = match_regions(query_features(derivation.image), features(source))
        if match.matched and box_iou(match.source_region, derivation.box) >= 0.5:
            found += 1
            assert match.mirrored == mirrored
    assert found >= len(sources) - 1, f"{found} of {len(sources)}"


def test_the_transform_maps_the_query_onto_its_crop(sources):
    source = sources[0]
    box = crop_box(source)
    derivation = derive(source, box, scale=0.7, mirrored=True)
    match = match_regions(query_features(derivation.image), features(source))
    w, h = derivation.image.size
    model = np.array(match.transform)
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], float) @ model.T
    mirrored_crop = [[box[2], box[1]], [box[0], box[1]], [box[0], box[3]], [box[2], box[3]]]  # x runs backwards
    assert np.abs(corners - mirrored_crop).max() < 0.03 * max(source.size)
    assert match.scale == pytest.approx(1 / 0.7, rel=0.05) and abs(match.rotation) < 2
    assert len(match.query_points) == len(match.source_points) <= 200 and match.inliers >= 20


def test_a_reduced_decode_reports_pixels_of_the_original(sources):
    source = sources[1]
    box = crop_box(source)
    derivation = derive(source, box, scale=2.0)
    small = derivation.image.resize((derivation.image.width // 2, derivation.image.height // 2))
    match = match_regions(query_features(small, derivation.image.size), features(source))
    assert box_iou(match.source_region, box) >= 0.7
    x0, y0, x1, y1 = match.query_box
    assert x1 > derivation.image.width * 0.6 and y1 > derivation.image.height * 0.6  # not the reduced size


def test_unrelated_photos_and_blank_images_claim_no_region(sources, photos):
    others = [Image.open(p).convert("RGB") for p in photos[500:506]]
    inliers = [match_regions(query_features(a), features(b)).inliers for a, b in zip(sources, others)]
    related = [match_regions(query_features(derive(s, crop_box(s), 0.8).image), features(s)).inliers for s in sources]
    assert max(inliers) < min(related), (inliers, related)
    blank = Image.new("RGB", (300, 200), (128, 128, 128))
    for a, b in [(blank, sources[0]), (sources[0], blank), (blank, blank)]:
        match = match_regions(query_features(a), features(b))
        assert match.inliers < MIN_INLIERS and not match.matched and match.source_region is None
        assert match.summary()["source_region"] is None
