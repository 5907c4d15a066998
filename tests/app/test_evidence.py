"""Region evidence over HTTP on both databases: `evidence=regions` on answers and cases, the
correspondence of a case and a source as JSON and as a PNG, and what is refused."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from index.auth import create_key
from tests.app.conftest import jpeg_bytes
from training.derivations import box_iou, derive


@pytest.fixture
def desk(start_api, corpus):
    api = start_api(write_rate_per_minute=0)
    assert api.index(corpus[:6]).status_code == 200
    api.reviewer = {"X-API-Key": create_key(api.app.state.catalog.sessions, "rita", "reviewer")[1]}
    return api


def mirrored_crop(path):
    source = Image.open(path).convert("RGB")
    w, h = source.size
    box = (w // 6, h // 5, w * 5 // 6, h * 4 // 5)
    return jpeg_bytes(derive(source, box, scale=0.8, mirrored=True).image, quality=85), box


def source_ids(answer, space="copy"):
    return {s["id"]: s for s in answer["spaces"][space]["concepts"][0]["sources"]}


def test_answers_carry_regions_when_asked(desk, corpus):
    query, box = mirrored_crop(corpus[3])
    plain = desk.attribute(query).json()
    assert all(s["regions"] is None for s in source_ids(plain).values()) and plain["timings_ms"]["regions"] is None
    answer = desk.attribute(query, params={"evidence": "regions"}).json()
    sources = source_ids(answer)
    best = sources[answer["verdict"]["source"]["id"]]
    assert answer["verdict"]["concept"] == corpus[3].stem and best["regions"] == answer["verdict"]["source"]["regions"]
    assert best["regions"]["mirrored"] and best["regions"]["inliers"] >= 20
    assert box_iou(best["regions"]["source_region"], box) >= 0.5
    second = answer["spaces"]["copy"]["concepts"][1]["sources"][0]  # only the first concept's sources
    assert second["regions"] is None and answer["timings_ms"]["regions"] > 0
    bad = desk.attribute(query, params={"evidence": "heatmap"})
    assert bad.status_code == 422 and "evidence" in bad.text


def test_a_case_and_a_source_side_by_side(desk, corpus):
    query, box = mirrored_crop(corpus[2])
    created = desk.client.post("/cases", files={"file": ("q.jpg", query)}, params={"evidence": "regions"},
                               headers=desk.reviewer)
    assert created.status_code == 201, created.text
    case = created.json()
    source_id = case["answer"]["verdict"]["source"]["id"]
    assert case["answer"]["verdict"]["source"]["regions"]["inliers"] >= 20
    rescored = desk.client.post(f"/cases/{case['id']}/rescore", headers=desk.reviewer).json()  # asked once, kept
    assert rescored["answer"]["verdict"]["source"]["regions"] == case["answer"]["verdict"]["source"]["regions"]
    evidence = desk.client.get(f"/cases/{case['id']}/evidence/{source_id}", headers=desk.reviewer)
    assert evidence.status_code == 200, evidence.text
    found = evidence.json()
    assert found["matched"] and found["mirrored"] and box_iou(found["source_region"], box) >= 0.5
    assert found["query_size"] == list(Image.open(io.BytesIO(query)).size)
    assert len(found["transform"]) == 2 and len(found["source_quad"]) == 4
    assert len(found["query_points"]) == len(found["source_points"]) >= 20

    png = desk.client.get(found["overlay_url"], headers=desk.reviewer)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    overlay = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB")).astype(int)
    assert overlay.shape[0] == 480
    frame = (abs(overlay - [250, 200, 0]).sum(axis=2) < 30).sum()  # the query's frame, drawn in the source
    assert frame > 200

    other = next(s["id"] for c in case["answer"]["spaces"]["copy"]["concepts"][1:] for s in c["sources"])
    unrelated = desk.client.get(f"/cases/{case['id']}/evidence/{other}", headers=desk.reviewer).json()
    assert unrelated["inliers"] < found["inliers"] / 3 and unrelated["source_id"] == other


REFUSED = [
    ("/cases/1/evidence/99999", 404, "source_not_found"),
    ("/cases/99999/evidence/1", 404, "case_not_found"),
    ("/cases/0/evidence/1", 422, "invalid_request"),
    ("/cases/1/evidence/99999999999999999999", 422, "invalid_request"),
    ("/cases/1/evidence/1/overlay.png?x=1", 422, "unknown_parameter"),
]


def test_what_is_refused(desk, corpus):
    query, _ = mirrored_crop(corpus[1])
    assert desk.client.post("/cases", files={"file": ("q.jpg", query)}, headers=desk.reviewer).status_code == 201
    for path, status, code in REFUSED:
        response = desk.client.get(path, headers=desk.reviewer)
        assert response.status_code == status and response.json()["error"]["code"] == code, (path, response.text)
    ingest = {"X-API-Key": create_key(desk.app.state.catalog.sessions, "bot", "ingest")[1]}
    assert desk.client.get("/cases/1/evidence/1", headers=ingest).status_code == 403
    assert desk.client.get("/cases/1/evidence/1").status_code == 401
    assert desk.client.get("/cases/1/evidence/1", headers=desk.reviewer).status_code == 200


def test_a_taken_down_source_has_no_evidence(desk, corpus):
    query, _ = mirrored_crop(corpus[4])
    case = desk.client.post("/cases", files={"file": ("q.jpg", query)}, headers=desk.reviewer).json()
    source_id = case["answer"]["verdict"]["source"]["id"]
    assert desk.client.delete(f"/sources/{source_id}", headers=desk.auth).status_code == 200
    response = desk.client.get(f"/cases/{case['id']}/evidence/{source_id}/overlay.png", headers=desk.reviewer)
    assert response.status_code == 404 and response.json()["error"]["code"] == "source_not_found"


def test_the_service_address_opens_the_reviewer_page(desk):
    response = desk.client.get("/", follow_redirects=False)
    assert response.status_code in (302, 307) and response.headers["location"] == "/ui"


def test_the_report_shows_the_decided_source_side_by_side(desk, corpus):
    query, _ = mirrored_crop(corpus[5])
    case = desk.client.post("/cases", files={"file": ("q.jpg", query)}, headers=desk.reviewer).json()
    report = desk.client.get(case["report_url"], headers=desk.reviewer).text
    assert "Matched regions" not in report  # no decision yet
    source_id = case["answer"]["verdict"]["source"]["id"]
    body = {"decision": "match", "concepts": [corpus[5].stem], "note": "mirrored crop"}
    assert desk.client.post(f"/cases/{case['id']}/decision", json=body, headers=desk.reviewer).status_code == 201
    report = desk.client.get(case["report_url"], headers=desk.reviewer).text
    figure = re.search(r"<figure class=regions><img alt='the query and source #(\d+) side by side' "
                       r"src='data:image/jpeg;base64,([^']+)'>", report)
    assert figure and int(figure[1]) == source_id and "(the query is mirrored)" in report
    image = Image.open(io.BytesIO(base64.b64decode(figure[2])))
    assert image.format == "JPEG" and image.width > image.height
    assert desk.client.delete(f"/sources/{source_id}", headers=desk.auth).status_code == 200
    report = desk.client.get(case["report_url"], headers=desk.reviewer).text
    assert f"No figure for source #{source_id}: no source with id {source_id}" in report


def test_an_unreadable_stored_source_has_no_regions_and_spoils_nothing(desk, corpus):
    from app import evidence

    query, _ = mirrored_crop(corpus[0])
    first = desk.attribute(query, params={"evidence": "regions"}).json()["verdict"]["source"]
    sha256 = desk.client.get(f"/sources/{first['id']}", headers=desk.auth).json()["sha256"]
    desk.app.state.catalog.blobs.path(sha256).write_bytes(b"not an image any more")
    evidence._cache.clear()  # features are cached by content hash, from any earlier test too
    answer = desk.attribute(query, params={"evidence": "regions"})
    assert answer.status_code == 200 and answer.json()["verdict"]["source"]["regions"] is None
    others = [s for c in answer.json()["spaces"]["style"]["concepts"][:1] for s in c["sources"] if s["id"] != first["id"]]
    assert all(s["regions"] is not None for s in others)
