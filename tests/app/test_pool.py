"""The query pool: uploads kept once, with who asked and which heads answered; retention; removal;
never evidence. Both databases."""

import hashlib

import pytest

from app.cli import main


def test_attribute_uploads_are_kept_once_and_never_returned_as_evidence(start_api, corpus, edit):
    api = start_api()
    ids = {r["source_id"] for r in api.index(corpus[:4]).json()["results"]}
    query = edit(corpus[1])
    first = api.attribute(query, headers=api.auth).json()
    api.attribute(query)
    api.attribute(edit(corpus[2]))
    returned = {s["id"] for block in first["spaces"].values() for c in block["concepts"] for s in c["sources"]}
    assert returned <= ids

    page = api.client.get("/queries", headers=api.auth).json()
    assert page["total"] == 2
    kept = next(q for q in page["items"] if q["times_seen"] == 2)
    assert kept["origin"] == "attribute" and kept["key_id"] == 1 and kept["answered_by"] == {
        "copy": first["spaces"]["copy"]["head_id"], "style": first["spaces"]["style"]["head_id"]}
    assert api.client.get("/queries/stats", headers=api.auth).json()["requests"] == 3
    assert api.client.get("/queries").status_code == 401

    pool = api.app.state.pool
    stored = pool.blobs.path(kept["sha256"])
    assert stored.is_file()
    assert api.client.delete(f"/queries/{kept['id']}", headers=api.auth).status_code == 204
    assert not stored.exists() and api.client.get("/queries", headers=api.auth).json()["total"] == 1
    assert api.client.delete(f"/queries/{kept['id']}", headers=api.auth).status_code == 404


def test_keeping_can_be_turned_off_and_retention_drops_the_oldest(start_api, corpus, edit):
    off = start_api(keep_queries=False)
    off.index(corpus[:2])
    off.attribute(edit(corpus[0]))
    assert off.client.get("/queries", headers=off.auth).json()["total"] == 0
    off.close()

    api = start_api(pool_max_queries=2)
    uploads = [edit(path) for path in corpus[:3]]
    for data in uploads:
        assert api.attribute(data).status_code == 200
    kept = {q["sha256"] for q in api.client.get("/queries", headers=api.auth).json()["items"]}
    assert kept == {hashlib.sha256(data).hexdigest() for data in uploads[1:]}


@pytest.fixture
def env(tmp_path, monkeypatch, database_url):
    monkeypatch.setenv("ATTRIB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ATTRIB_DATABASE_URL", database_url)


def test_pool_commands_import_list_and_purge(env, photos, tmp_path, capsys):
    folder = tmp_path / "generator"
    folder.mkdir()
    for path in photos[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,role,concept\n{photos[3]},query,x\n{photos[4]},source,x\n")
    assert main(["pool", "add", str(folder), str(manifest)]) == 1
    out, err = capsys.readouterr()
    assert "imported 4 images into the query pool, rejected 1" in out and "broken.jpg" in err
    assert main(["pool", "add", str(folder / photos[0].name)]) == 0
    assert main(["pool", "stats"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("4 queries (4 import), 5 requests")
    assert main(["pool", "purge", "1", "99"]) == 1
    assert "removed 1 queries" in capsys.readouterr().out
    assert main(["pool", "purge", "--all"]) == 0 and "removed 3 queries" in capsys.readouterr().out


def test_odd_filenames_and_simultaneous_identical_uploads_are_kept_once(start_api, corpus, edit):
    from concurrent.futures import ThreadPoolExecutor

    api = start_api()
    api.index(corpus[:2])
    query = edit(corpus[0])
    assert api.attribute(query, filename="evil\x00name\x1b.jpg").status_code == 200
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda _: api.attribute(query).status_code, range(8)))
    assert statuses == [200] * 8
    (kept,) = api.client.get("/queries", headers=api.auth).json()["items"]
    assert kept["times_seen"] == 9 and "\x00" not in kept["filename"]


def test_train_from_catalog_uses_the_pool_and_its_head_goes_live(env, photos, tmp_path, capsys):
    import json

    assert main(["index", *map(str, photos[:4]), "--concept-from", "stem"]) == 0
    assert main(["pool", "add", *map(str, photos[10:14])]) == 0
    capsys.readouterr()
    head = tmp_path / "head.pt"
    argv = ["train", "--from-catalog", "--output", str(head), "--views", "2", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["catalog_anchors"], summary["pool_anchors"]) == (4, 4)
    assert summary["separation_check"]["computed"] is True
    assert main(["spaces", "set", "content", str(head)]) == 0
    assert "space content now serves head" in capsys.readouterr().out


def test_post_train_runs_as_a_job_with_progress_and_puts_its_head_live(start_api, corpus, edit):
    import time

    api = start_api()
    assert api.client.post("/train", headers=api.auth).status_code == 409  # nothing to train on yet
    api.index(corpus[:4])
    for path in corpus[4:7]:
        api.attribute(edit(path))
    assert api.client.post("/train").status_code == 401
    accepted = api.client.post("/train", params={"space": "content"}, headers=api.auth)
    assert accepted.status_code == 202 and accepted.json()["total"] == 7
    for _ in range(600):
        job = api.client.get(accepted.headers["location"], headers=api.auth).json()
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    assert (job["kind"], job["state"], job["done"], job["total"]) == ("train", "succeeded", 7, 7), job
    trained = job["train"]
    assert (trained["catalog_anchors"], trained["pool_anchors"], trained["head_fit"], trained["space"]) == (4, 3, "whiten", "content")
    assert trained["recipe"] in ("raw", "head", "distilled", "rendered")
    assert trained["backbone"] in ("efficientnet_lite0", "sscd_distilled")  # the self-checks chose (training/backbone_choice.py)
    answer = api.attribute(edit(corpus[1])).json()["spaces"]["content"]
    assert answer["available"] and answer["head_id"] == trained["head_id"] and answer["backbone"] == trained["backbone"]
