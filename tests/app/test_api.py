"""The HTTP API end to end: real app, real encoder, real photos, SQLite and PostgreSQL; the
ingest, attribute, takedown and restart tests also on Milvus Lite (`both_stores`)."""

import io
import json
import time

import numpy as np
import pytest
from PIL import Image


def encode(image, fmt, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def error_code(response) -> str:
    return response.json()["error"]["code"]


@pytest.mark.both_stores
def test_index_then_attribute_with_evidence(api, corpus, edit):
    response = api.index(corpus)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["indexed"], body["duplicates"], body["rejected"]) == (12, 0, 0)
    ids = {r["filename"]: r["source_id"] for r in body["results"]}

    response = api.attribute(edit(corpus[5]), k=4)
    assert response.status_code == 200, response.text
    result = response.json()
    top = result["spaces"]["style"]["concepts"][0]
    assert top["concept"] == corpus[5].stem and top["sources"][0]["id"] == ids[corpus[5].name]
    assert len(result["spaces"]["style"]["concepts"]) == 4 and result["k"] == 4
    assert abs(sum(c["share"] for c in result["spaces"]["style"]["concepts"]) - 1) < 1e-6
    assert [c["score"] for c in result["spaces"]["style"]["concepts"]] == sorted((c["score"] for c in result["spaces"]["style"]["concepts"]), reverse=True)
    assert set(result["timings_ms"]) == {"decode", "embed", "embed_backbones", "search", "regions"}
    assert result["timings_ms"]["regions"] is None  # region evidence only when asked
    assert set(result["timings_ms"]["embed_backbones"]) == {"efficientnet_lite0", "sscd_distilled"}
    copy = result["spaces"]["copy"]
    assert copy["available"] and copy["backbone"] == "sscd_distilled" and result["backbones"]["sscd_distilled"]
    assert copy["concepts"][0]["sources"][0]["id"] == ids[corpus[5].name]
    assert list(result["spaces"]) == ["content", "copy", "style"]

    original = api.client.get(top["sources"][0]["image_url"])
    assert original.status_code == 200 and original.content == corpus[5].read_bytes()
    assert original.headers["content-type"] == "image/jpeg"
    thumbnail = api.client.get(top["sources"][0]["thumbnail_url"])
    image = Image.open(io.BytesIO(thumbnail.content))
    assert image.format == "JPEG" and max(image.size) == 256
    assert api.client.get(top["sources"][0]["thumbnail_url"]).content == thumbnail.content


def test_batch_results_one_per_file(api, corpus, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(corpus[0].read_bytes()[:600])
    first = api.index(corpus[:2]).json()["results"]
    response = api.index([corpus[0], broken, corpus[2]], ["a", "b", "c"])
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["indexed", "rejected", "indexed"]
    assert results[1]["code"] == "corrupt_image" and "corrupt" in results[1]["reason"]
    again = api.index(corpus[:2]).json()["results"]
    assert [(r["status"], r["source_id"]) for r in again] == [("duplicate", r["source_id"]) for r in first]


def test_manifest_names_concepts_per_file(api, corpus):
    manifest = [{"filename": corpus[0].name, "concept": "alpha", "meta": {"licence": "CC0"}},
                {"filename": corpus[1].name, "concept": "beta"}]
    files = [("files", (p.name, p.read_bytes())) for p in corpus[:3]]
    response = api.client.post("/index", files=files, data={"manifest": json.dumps(manifest)}, headers=api.auth)
    results = response.json()["results"]
    assert [r["concept"] for r in results[:2]] == ["alpha", "beta"]
    assert results[2]["status"] == "rejected" and results[2]["code"] == "missing_concept"
    source = api.client.get(f"/sources/{results[0]['source_id']}").json()
    assert source["concept"] == "alpha" and source["meta"] == {"licence": "CC0"} and source["width"] > 0

    mapping = {corpus[3].name: "gamma"}
    files = [("files", (corpus[3].name, corpus[3].read_bytes()))]
    response = api.client.post("/index", files=files, data={"manifest": json.dumps(mapping)}, headers=api.auth)
    assert response.json()["results"][0]["concept"] == "gamma"


def test_malformed_requests_to_index(api, corpus):
    files = [("files", (p.name, p.read_bytes())) for p in corpus[:2]]
    for form, code in [
        ({"manifest": "{not json"}, "bad_manifest"),
        ({"manifest": json.dumps([{"filename": 3}])}, "bad_manifest"),
        ({"concept": ["a", "b", "c"]}, "bad_manifest"),
        ({}, "missing_concept"),
    ]:
        response = api.client.post("/index", files=files, data=form, headers=api.auth)
        assert response.status_code == 422 and error_code(response) == code, response.text
    response = api.client.post("/index", data={"concept": "a"}, headers=api.auth)
    assert response.status_code == 422 and "files" in response.json()["error"]["message"]


@pytest.mark.both_stores
def test_large_batch_runs_as_a_job(start_api, corpus):
    api = start_api(async_batch_files=4)
    response = api.index(corpus[:7] + corpus[:1], ["c"] * 8)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["total"] == 8 and response.headers["location"] == accepted["status_url"]
    for _ in range(600):
        job = api.client.get(accepted["status_url"], headers=api.auth).json()
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    assert job["state"] == "succeeded", job
    assert (job["done"], job["indexed"], job["duplicates"], job["rejected"]) == (8, 7, 1, 0)
    assert job["results"][7]["source_id"] == job["results"][0]["source_id"]
    assert api.client.get(accepted["status_url"]).status_code == 401
    response = api.client.get("/jobs/no-such-job", headers=api.auth)
    assert response.status_code == 404 and error_code(response) == "job_not_found"


def test_hostile_uploads_get_clear_4xx_and_the_server_stays_up(api, corpus, edit, bomb_png):
    api.index(corpus[:4])
    photo = Image.open(corpus[1]).convert("RGB")
    good = encode(photo, "PNG")
    cases = [
        (b"%PDF-1.7 definitely not an image", 415, "not_an_image"),
        (encode(photo, "JPEG")[:2000], 400, "corrupt_image"),
        (good[: len(good) // 3], 400, "corrupt_image"),
        (b"", 400, "empty_file"),
        (bomb_png, 413, "image_too_large"),
        (b"\xff" * 2_000_001, 413, "file_too_large"),
    ]
    for data, status, code in cases:
        response = api.attribute(data)
        assert (response.status_code, error_code(response)) == (status, code), response.text
        assert response.json()["error"]["message"]
    for k in (0, 101, "many"):
        response = api.attribute(good, k=k)
        assert response.status_code == 422 and "k" in response.json()["error"]["message"]
    assert api.client.post("/attribute").status_code == 422
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.attribute(edit(corpus[1])).json()["spaces"]["style"]["concepts"][0]["concept"] == corpus[1].stem


def test_odd_but_valid_images_are_attributed(api, corpus):
    api.index(corpus[:4])
    photo = Image.open(corpus[2]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated: display needs a 90 degree turn back
    rotated = encode(photo.rotate(-90, expand=True), "JPEG", exif=exif.tobytes(), quality=90)
    gray16 = encode(Image.fromarray((np.asarray(photo.convert("L"), dtype=np.uint16) * 257)), "PNG")
    animated = encode(photo, "GIF", save_all=True, append_images=[Image.new("RGB", photo.size)], duration=50)
    for data in (encode(photo.convert("CMYK"), "JPEG"), encode(photo.convert("P"), "PNG"), gray16, animated, rotated):
        response = api.attribute(data)
        assert response.status_code == 200, response.text
        assert response.json()["spaces"]["style"]["concepts"][0]["concept"] == corpus[2].stem


@pytest.mark.both_stores
def test_takedown_removes_a_source_from_later_results(api, corpus, edit):
    ids = [r["source_id"] for r in api.index(corpus[:6]).json()["results"]]
    query = edit(corpus[3])
    assert api.attribute(query).json()["spaces"]["style"]["concepts"][0]["sources"][0]["id"] == ids[3]

    assert api.client.delete(f"/sources/{ids[3]}").status_code == 401
    response = api.client.delete(f"/sources/{ids[3]}", headers=api.auth)
    assert response.json()["deleted_sources"] == 1
    receipt = api.client.get(response.json()["receipt_url"], headers=api.auth).json()
    assert (receipt["kind"], receipt["target"], receipt["state"], receipt["sources"]) == ("source", str(ids[3]), "done", 1)
    assert receipt["completed_at"] and receipt["removed"]["features"] == 1 and receipt["removed"]["images"] == 1
    assert receipt["removed"]["vectors"] == {"copy": 1, "style": 1}
    assert api.client.get(response.json()["receipt_url"]).status_code == 401
    assert api.client.get("/takedowns/nope", headers=api.auth).status_code == 404
    returned = {s["id"] for c in api.attribute(query, k=10).json()["spaces"]["style"]["concepts"] for s in c["sources"]}
    assert ids[3] not in returned and corpus[3].stem not in {c["concept"] for c in api.attribute(query).json()["spaces"]["style"]["concepts"]}
    for path in (f"/sources/{ids[3]}", f"/sources/{ids[3]}/image", f"/sources/{ids[3]}/thumbnail"):
        assert api.client.get(path).status_code == 404
    assert api.client.delete(f"/sources/{ids[3]}", headers=api.auth).status_code == 404

    response = api.client.delete(f"/concepts/{corpus[4].stem}", headers=api.auth)
    assert response.json()["deleted_sources"] == 1 and response.json()["takedown_id"]
    assert corpus[4].stem not in {c["name"] for c in api.client.get("/concepts").json()["items"]}
    response = api.client.delete("/concepts/never-heard-of-it", headers=api.auth)
    assert response.status_code == 404 and error_code(response) == "concept_not_found"


def test_concept_listings_are_paginated(api, corpus):
    api.index(corpus[:5], ["one", "one", "two/with slash", "three", "three"])
    page = api.client.get("/concepts", params={"offset": 1, "limit": 2}).json()
    assert page["total"] == 3 and page["offset"] == 1 and page["limit"] == 2
    assert [(c["name"], c["source_count"]) for c in page["items"]] == [("three", 2), ("two/with slash", 1)]
    sources = api.client.get("/concepts/three/sources", params={"limit": 1}).json()
    assert sources["total"] == 2 and len(sources["items"]) == 1 and sources["items"][0]["concept"] == "three"
    assert api.client.get("/concepts/two/with slash/sources").json()["total"] == 1
    response = api.client.get("/concepts/nope/sources")
    assert response.status_code == 404 and error_code(response) == "concept_not_found"
    assert api.client.get("/concepts", params={"limit": 0}).status_code == 422
    response = api.client.get("/sources/424242")
    assert response.status_code == 404 and error_code(response) == "source_not_found"


def test_api_keys_guard_writes_without_leaking_why(api, corpus):
    from index.auth import create_key, revoke_key

    sessions = api.app.state.catalog.sessions
    row, revoked = create_key(sessions, "old")
    revoke_key(sessions, row.id)
    bodies = set()
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": revoked}):
        response = api.client.post("/index", files=[("files", ("a.jpg", b"x"))], data={"concept": "c"}, headers=headers)
        assert response.status_code == 401
        bodies.add(response.text)
    assert len(bodies) == 1
    assert api.index(corpus[:1]).status_code == 200
    assert api.attribute(corpus[0].read_bytes()).status_code == 200


def test_reads_can_require_a_key(start_api, corpus):
    api = start_api(require_key_for_reads=True)
    api.index(corpus[:1])
    assert api.attribute(corpus[0].read_bytes()).status_code == 401
    assert api.client.get("/concepts").status_code == 401
    assert api.attribute(corpus[0].read_bytes(), headers=api.auth).status_code == 200
    assert api.client.get("/healthz").status_code == 200


def test_body_limit_refuses_huge_requests(start_api):
    api = start_api(max_request_bytes=100_000)
    response = api.attribute(b"\0" * 200_000)
    assert response.status_code == 413 and error_code(response) == "request_too_large"
    assert api.client.get("/healthz").status_code == 200


@pytest.mark.both_stores
def test_restart_keeps_catalog_and_jobs(start_api, corpus, edit):
    first = start_api(async_batch_files=4)
    job_url = first.index(corpus[:6], ["c"] * 6).json()["status_url"]
    for _ in range(600):
        if first.client.get(job_url, headers=first.auth).json()["state"] == "succeeded":
            break
        time.sleep(0.1)
    from index.db import Job

    with first.app.state.catalog.sessions.begin() as session:
        session.add(Job(id="crashed-job", state="running", total=10, done=4, results=[]))
    first.close()

    second = start_api()
    assert second.client.get(job_url, headers=second.auth).json()["state"] == "succeeded"
    crashed = second.client.get("/jobs/crashed-job", headers=second.auth).json()
    assert crashed["state"] == "interrupted" and "4 of 10" in crashed["error"]
    assert second.client.get("/concepts").json()["items"][0]["source_count"] == 6
    assert second.attribute(edit(corpus[2])).json()["spaces"]["style"]["concepts"][0]["sources"][0]["filename"] == corpus[2].name


@pytest.mark.both_stores
def test_readiness_and_metrics(api, corpus, start_api, edit):
    ready = api.client.get("/readyz").json()
    assert ready["ready"] and ready["checks"] == {"encoder": "ok", "index": "ok", "database": "ok", "vector_store": "ok"}
    assert list(ready["spaces"]) == ["copy", "style"] and ready["spaces"]["style"]["count"] == 0
    assert ready["spaces"]["copy"]["backbone"] == "sscd_distilled" and ready["waiting"] == {}
    api.index(corpus[:2])
    assert api.client.get("/readyz").json()["spaces"]["style"]["count"] == 2
    api.attribute(edit(corpus[0]))
    api.attribute(b"junk")
    text = api.client.get("/metrics").text
    assert 'attrib_http_requests_total{method="POST",route="/attribute",status="200"} 1.0' in text
    assert 'attrib_http_requests_total{method="POST",route="/attribute",status="415"} 1.0' in text
    assert 'attrib_attribution_stage_seconds_count{stage="embed"} 1.0' in text
    assert 'attrib_http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/index"} 1.0' in text
    assert "attrib_catalog_sources 2.0" in text and 'attrib_jobs{state="succeeded"} 0.0' in text
    assert 'attrib_space_vectors{space="style"} 2.0' in text
    assert 'attrib_space_head_info{head_id="efficientnet_lite0-' in text
    assert 'attrib_space_built_timestamp_seconds{space="style"}' in text
    api.close()

    mismatched = start_api(encoder=str(_head_checkpoint(api)))
    response = mismatched.client.get("/readyz")
    assert response.status_code == 503 and "attrib reindex" in response.json()["checks"]["index"]
    assert error_code(mismatched.attribute(corpus[0].read_bytes())) == "not_ready"
    assert mismatched.client.get("/healthz").status_code == 200


def _head_checkpoint(api):
    """An encoder checkpoint whose backbone is not the catalog's."""
    from training.encoders import create_encoder

    return create_encoder(random_init=True).save(api.app.state.settings.home / "other.pt")


def test_openapi_documents_schemas_and_errors(api):
    spec = api.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name in ("AttributeResponse", "ErrorResponse", "IndexResponse", "JobOut", "SourceOut", "ReadyResponse"):
        assert name in schemas
    responses = spec["paths"]["/attribute"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422"} <= set(responses)
    assert "202" in spec["paths"]["/index"]["post"]["responses"]
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]
    assert api.client.get("/docs").status_code == 200
