"""Spaces over HTTP: both answers in one response, roll-out while requests keep coming, refusals.
On both vector stores."""

import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from index.calibration.calibration import edited_copies
from index.calibration.concept_scores import catalog_concepts
from index.calibration.query_side import head_queries
from training.encoders import create_encoder
from training.selffit import DERIVED, edited_copy
from training.sscd import load_copy_backbone
from training.views import rendering_crop, silhouette, sketch

pytestmark = pytest.mark.both_stores


def head_bytes(tmp_path, seed):
    encoder = create_encoder(head_config={"type": "linear", "out_dim": 64})
    with torch.no_grad():
        encoder.head.weight.add_(0.05 * torch.randn(encoder.head.weight.shape, generator=torch.Generator().manual_seed(seed)))
    encoder.invalidate_id()
    return encoder.save(tmp_path / f"head-{seed}.pt").read_bytes(), encoder.encoder_id


def put_head(api, name, data, headers=None):
    files = {"checkpoint": ("head.pt", data)} if data is not None else None
    return api.client.put(f"/spaces/{name}", files=files, headers=api.auth if headers is None else headers)


def wait_for(api, response, seconds: float = 10):
    """The finished job of a 202 answer."""
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = api.client.get(response.headers["location"], headers=api.auth).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"the job did not finish in {seconds} s")


def test_both_spaces_in_one_answer_and_a_head_put_live(api, corpus, edit, tmp_path):
    api.index(corpus[:6])
    body = api.attribute(edit(corpus[2]), k=3).json()
    assert list(body["spaces"]) == ["content", "copy", "style"]
    assert body["spaces"]["content"]["available"] is False and "attrib spaces set content" in body["spaces"]["content"]["message"]
    assert body["spaces"]["style"]["concepts"][0]["concept"] == corpus[2].stem
    assert set(body["timings_ms"]["search"]) == {"content", "copy", "style"} and body["timings_ms"]["embed"] > 0

    data, head_id = head_bytes(tmp_path, 1)
    assert put_head(api, "content", data, headers={}).status_code == 401
    job = wait_for(api, put_head(api, "content", data))
    assert (job["kind"], job["state"], job["done"], job["total"]) == ("space_build", "succeeded", 6, 6)
    assert job["space"] == {"space": "content", "head_id": head_id, "count": 6}
    body = api.attribute(edit(corpus[2]), k=3).json()
    content = body["spaces"]["content"]
    assert content["available"] and content["head_id"] == head_id and len(content["concepts"]) == 3
    assert content["concepts"][0]["sources"][0]["thumbnail_url"].startswith("/sources/")
    only = api.attribute(edit(corpus[2]), k=2, params={"space": "style"})
    assert only.status_code == 200 and list(only.json()["spaces"]) == ["style"]
    missing = api.client.post("/attribute", files={"file": ("q.jpg", edit(corpus[2]))}, params={"space": "nope"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "space_not_found"

    listed = {s["name"]: s for s in api.client.get("/spaces").json()}
    assert listed["content"]["head"] == "trained" and listed["content"]["count"] == 6 and listed["style"]["head"] == "identity"
    assert api.client.get("/readyz").json()["spaces"]["content"]["head_id"] == head_id


def test_refused_heads_get_a_clear_error_and_change_nothing(api, corpus, tmp_path):
    api.index(corpus[:3])
    foreign = create_encoder(random_init=True, head_config={"type": "linear", "out_dim": 16}).save(tmp_path / "f.pt").read_bytes()
    for data, code in ((foreign, "backbone_mismatch"), (b"not a checkpoint", "head_unreadable")):
        response = put_head(api, "content", data)
        assert (response.status_code, response.json()["error"]["code"]) == (422, code)
    response = put_head(api, "Not A Name", None)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "bad_space_name")
    rolled = api.client.post("/spaces/style/rollback", headers=api.auth)
    assert (rolled.status_code, rolled.json()["error"]["code"]) == (409, "no_previous_head")
    assert [s["name"] for s in api.client.get("/spaces").json()] == ["copy", "style"]


def test_requests_during_switches_all_succeed(api, corpus, edit, tmp_path):
    api.index(corpus)
    heads = [head_bytes(tmp_path, seed) for seed in (1, 2)]
    query = edit(corpus[4])
    stop = time.monotonic() + 60

    def attribute_until(switches_done) -> list:
        seen = []
        while not switches_done() and time.monotonic() < stop:
            response = api.attribute(query, k=2)
            assert response.status_code == 200, response.text
            seen.append(response.json()["spaces"]["content"]["head_id"])
        return seen

    done = []
    with ThreadPoolExecutor(max_workers=3) as pool:
        readers = [pool.submit(attribute_until, lambda: len(done) == 4) for _ in range(2)]
        for round_ in range(4):
            data, _ = heads[round_ % 2]
            assert wait_for(api, put_head(api, "content", data))["state"] == "succeeded"
            done.append(round_)
        seen = [head for reader in readers for head in reader.result()]
    assert set(seen) <= {None, heads[0][1], heads[1][1]} and len(set(seen) - {None}) == 2
    assert api.client.post("/spaces/content/rollback", headers=api.auth).json()["head_id"] == heads[0][1]


def test_a_head_that_lost_its_self_check_is_refused_unless_forced(api, corpus, tmp_path):
    from tests.app.conftest import losing_check

    api.index(corpus[:3])
    loser = create_encoder(head_config={"type": "linear", "out_dim": 64, "self_check": losing_check()})
    data = loser.save(tmp_path / "loser.pt").read_bytes()
    refused = put_head(api, "content", data)
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "head_loses_self_check")
    assert "12.5 against 41.0" in refused.json()["error"]["message"]
    assert "content" not in [s["name"] for s in api.client.get("/spaces").json()]
    files = {"checkpoint": ("head.pt", data)}
    job = wait_for(api, api.client.put("/spaces/content", files=files, params={"force": "true"}, headers=api.auth))
    assert job["state"] == "succeeded"
    listed = {s["name"]: s for s in api.client.get("/spaces").json()}
    assert listed["content"]["self_check"]["kept"] == "head" and listed["style"]["self_check"] is None
    assert listed["content"]["self_check"]["candidates"]["raw"]["worst_kind"] == 41.0


def test_a_head_on_the_copy_backbone_serves_content_from_the_copy_features(api, corpus, edit, tmp_path):
    """`attrib train --backbone sscd_distilled`'s head maps the copy space's stored descriptors: no
    encoder forward of its own, the same vectors as the head applied to the copy backbone's."""
    api.index(corpus[:6])
    first, _ = head_bytes(tmp_path, 1)
    assert wait_for(api, put_head(api, "content", first))["state"] == "succeeded"
    encoder = create_encoder("sscd_distilled", head_config={"type": "linear", "out_dim": 32})
    with torch.no_grad():
        encoder.center.copy_(torch.randn(encoder.feature_dim, generator=torch.Generator().manual_seed(3)) * 0.01)
    encoder.invalidate_id()
    job = wait_for(api, put_head(api, "content", encoder.save(tmp_path / "copy-head.pt").read_bytes()))
    assert job["state"] == "succeeded" and job["space"]["count"] == 6
    listed = {s["name"]: s for s in api.client.get("/spaces").json()}
    assert listed["content"]["backbone"] == "sscd_distilled" and listed["content"]["head_id"] == encoder.encoder_id

    query = edit(corpus[2])
    body = api.attribute(query, k=6).json()
    content = body["spaces"]["content"]
    assert content["available"] and content["concepts"][0]["concept"] == corpus[2].stem
    sources = encoder.embed_images([Image.open(p).convert("RGB") for p in corpus[:6]])
    vector = encoder.embed_images([Image.open(io.BytesIO(query)).convert("RGB")])[0]
    expected = sorted(sources @ vector, reverse=True)
    served = sorted((c["score"] for c in content["concepts"]), reverse=True)
    np.testing.assert_allclose(served, expected, atol=2e-3)
    assert load_copy_backbone("sscd_distilled").backbone_id == encoder.backbone_id
    back = api.client.post("/spaces/content/rollback", headers=api.auth)
    assert back.status_code == 200 and back.json()["backbone"] == "efficientnet_lite0"
    assert back.json()["previous_head_id"] == encoder.encoder_id


def rendered_parts(encoder, image):
    """The head's embeddings of the clean view, and of the sketch and silhouette of the image's
    centre square at 192 px (tests/training/test_query_views.py) taken at that size (nothing
    resizes them to the model's 256 px)."""
    crop = rendering_crop(image, 192)
    drawn = encoder.features_of_pixels([np.asarray(sketch(crop)), np.asarray(silhouette(crop))])
    assert drawn.shape == (2, encoder.feature_dim)
    with torch.inference_mode():
        return np.concatenate([encoder.embed_images([image]), encoder.project(torch.from_numpy(drawn)).numpy()])


def test_a_rendered_head_averages_the_query_with_its_sketch_and_silhouette(api, corpus, edit, tmp_path):
    """The `rendered` recipe on the copy backbone: the query's centre crop drawn as a line drawing and
    as a cut-out at 192 px, each through the copy model at that size, averaged with the clean view;
    sources stay clean."""
    api.index(corpus[:6])
    renderings = {"query_views": 2, "query_augment": {"renderings": ["sketch", "silhouette"], "render_size": 192}}
    encoder = create_encoder("sscd_distilled", head_config={"type": "linear", "out_dim": 32, **renderings})
    assert encoder.query_views[0] == 2
    job = wait_for(api, put_head(api, "content", encoder.save(tmp_path / "rendered.pt").read_bytes()))
    assert job["state"] == "succeeded"
    query = edit(corpus[3])
    content = api.attribute(query, k=6).json()["spaces"]["content"]
    assert content["available"] and len(content["concepts"]) == 6

    image = Image.open(io.BytesIO(query)).convert("RGB")
    parts = rendered_parts(encoder, image)
    vector = parts.sum(0) / np.linalg.norm(parts.sum(0))
    sources = encoder.embed_images([Image.open(p).convert("RGB") for p in corpus[:6]])
    served = sorted((c["score"] for c in content["concepts"]), reverse=True)
    np.testing.assert_allclose(served, sorted(sources @ vector, reverse=True), atol=2e-3)
    assert not np.allclose(served, sorted(sources @ parts[0], reverse=True), atol=2e-3), "the renderings count"

    # the label-free fits see their queries as /attribute embeds them: a source as a query, and its edited copy
    catalog = api.app.state.catalog
    live, concepts = catalog.spaces()["content"], catalog_concepts(catalog.sessions)
    ids, clean = catalog.features_of(live.info.backbone_id).get(concepts.source_ids[:2])
    edited = edited_copies(catalog, catalog.backbone_of(live), concepts, np.arange(2), {}, DERIVED)
    for edit, (shown, features) in ((None, (ids, clean)), (DERIVED, edited)):
        kept, queries = head_queries(catalog, live, concepts, shown, features, {}, edit)
        images = [Image.open(p).convert("RGB") for p in corpus[:2]]
        if edit:
            images = [edited_copy(image, sha, 256, recipe=DERIVED) for image, sha in zip(images, concepts.shas[:2])]
        for image, query in zip(images, queries):
            parts = rendered_parts(encoder, image)
            np.testing.assert_allclose(query, parts.sum(0) / np.linalg.norm(parts.sum(0)), atol=2e-3)
        assert list(kept) == list(shown)
