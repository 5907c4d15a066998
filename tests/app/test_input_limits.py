"""Hostile parameters, strings and manifests get a 4xx with a stable code on both databases, and
the server stays healthy; served images cannot be sniffed; writes and failed logins are
rate-limited; CORS is off unless configured."""

import io
import json
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError

from app.settings import Settings
from index.auth import create_key

BIG = (2**31, 2**63, 2**64)


def error_code(response) -> str:
    return response.json()["error"]["code"]


def assert_error(response, status: int, code: str) -> None:
    assert (response.status_code, error_code(response)) == (status, code), response.text
    assert response.json()["error"]["message"]


def assert_healthy(api, concept: str) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json()["ready"] is True
    assert api.client.get(f"/concepts/{concept}/sources").json()["total"] >= 1


def multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, dict]:
    """A multipart body written by hand, so a filename can carry bytes httpx would escape."""
    boundary = "attrib-test-boundary"
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_out_of_range_ids_offsets_and_names_get_422(api, corpus):
    source_id = api.index(corpus[:1], ["c"]).json()["results"][0]["source_id"]
    for number in (0, -1, *BIG):
        for path in (f"/sources/{number}", f"/sources/{number}/image", f"/sources/{number}/thumbnail"):
            assert_error(api.client.get(path), 422, "invalid_request")
        assert_error(api.client.delete(f"/sources/{number}", headers=api.auth), 422, "invalid_request")
    for query in ("offset=-1", *(f"offset={n}" for n in BIG), "limit=0", "limit=501", "limit=2147483648"):
        assert_error(api.client.get(f"/concepts?{query}"), 422, "invalid_request")
        assert_error(api.client.get(f"/concepts/c/sources?{query}"), 422, "invalid_request")
    for name in ("a%00b", "tab%09here", "x" * 256):
        assert_error(api.client.get(f"/concepts/{name}/sources"), 422, "invalid_request")
        assert_error(api.client.delete(f"/concepts/{name}", headers=api.auth), 422, "invalid_request")
    for space in ("content%0A", "a%00b", "s" * 33):  # a trailing newline is no loophole
        assert_error(api.client.put(f"/spaces/{space}", headers=api.auth), 422, "bad_space_name")
        assert_error(api.client.post(f"/spaces/{space}/rollback", headers=api.auth), 422, "bad_space_name")
    for job_id in ("a%00b", "j" * 37, "a.b"):
        assert_error(api.client.get(f"/jobs/{job_id}", headers=api.auth), 422, "invalid_request")
    # In range but naming nothing: 404, and the largest offset is simply past the end.
    assert_error(api.client.get(f"/sources/{2**31 - 1}"), 404, "source_not_found")
    assert_error(api.client.delete(f"/sources/{2**31 - 1}", headers=api.auth), 404, "source_not_found")
    assert_error(api.client.get(f"/jobs/{'f' * 36}", headers=api.auth), 404, "job_not_found")
    assert api.client.get(f"/concepts?offset={2**31 - 1}").json()["items"] == []
    assert api.client.get(f"/sources/{source_id}").json()["concept"] == "c"
    assert_healthy(api, "c")


def test_bad_strings_reject_only_their_file(start_api, corpus):
    api = start_api(async_batch_files=4)
    jpegs = [path.read_bytes() for path in corpus[:5]]
    body, headers = multipart([
        ("files", "nul\x00name.jpg", jpegs[0]), ("files", "n" * 513 + ".jpg", jpegs[1]),
        ("files", "ctrl\x1bname.jpg", jpegs[2]), ("files", "good.jpg", jpegs[3]),
        ("concept", None, b"c"),
    ])
    response = api.client.post("/index", content=body, headers=headers | api.auth)
    results = response.json()["results"]
    assert [(r["status"], r["code"]) for r in results] == [("rejected", "bad_filename")] * 3 + [("indexed", None)]
    assert results[0]["filename"] == "nul\ufffdname.jpg" and len(results[1]["filename"]) == 512
    files = [("files", (f"{n}.jpg", data)) for n, data in enumerate(jpegs[:3])]
    concepts = ["bad\x00concept", "x" * 256, "c"]
    results = api.client.post("/index", files=files, data={"concept": concepts}, headers=api.auth).json()["results"]
    assert [r["code"] for r in results] == ["bad_concept", "bad_concept", None]

    # Over ATTRIB_ASYNC_BATCH_FILES: the same rules hold in a background job.
    files = [("files", f"{n}\x00.jpg", jpegs[n]) for n in range(3)] + [("files", "a.jpg", jpegs[3]),
                                                                        ("files", "b.jpg", jpegs[4])]
    concepts = [("concept", None, name) for name in (b"d", b"d", b"d", b"bad\x00concept", b"d")]
    body, headers = multipart(files + concepts)
    job_url = api.client.post("/index", content=body, headers=headers | api.auth).json()["status_url"]
    job = wait_for_job(api, job_url)
    assert (job["state"], job["rejected"], job["indexed"]) == ("succeeded", 4, 1), job
    assert [r["code"] for r in job["results"]] == ["bad_filename"] * 3 + ["bad_concept", None]
    assert_healthy(api, "d")


def wait_for_job(api, url: str) -> dict:
    for _ in range(600):
        job = api.client.get(url, headers=api.auth).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job did not finish: {job}")


def test_malformed_manifests_get_bad_manifest(api, corpus):
    photo = corpus[0]

    def post_manifest(manifest: str):
        return api.client.post("/index", files=[("files", (photo.name, photo.read_bytes()))],
                               data={"manifest": manifest}, headers=api.auth)

    def entry(meta_json: str) -> str:
        return f'[{{"filename": "{photo.name}", "concept": "c", "meta": {meta_json}}}]'

    hostile = [
        entry('{"score": NaN}'), entry('{"score": Infinity}'), entry('{"score": -Infinity}'),
        entry('{"score": 1e400}'), entry('{"big": ' + "9" * 5000 + "}"),
        entry('{"note": "a\\u0000b"}'), entry('{"a\\u0000": 1}'), entry('{"list": ["\\u0000"]}'),
        "[" * 100_000 + "]" * 100_000, entry("[" * 40 + "]" * 40), '{"x": ' * 50_000 + '"c"' + "}" * 50_000,
        "[" * 100_000,
    ]
    for manifest in hostile:
        assert_error(post_manifest(manifest), 422, "bad_manifest")
    assert_error(post_manifest(entry('"x' + "[" * 5000 + '"')), 422, "bad_manifest")  # meta not an object
    assert_error(post_manifest(json.dumps({photo.name: "c", "pad": "x" * 1_100_000})), 400, "bad_request")
    nested = '{"a": ' * 28 + "1" + "}" * 28  # 31 levels with the list, the entry and the meta
    deep_but_allowed = entry('{"deep": ' + nested + ', "s": "[[[[{{{{\\"]]]"}')
    assert post_manifest(deep_but_allowed).json()["indexed"] == 1
    nul_key = json.dumps({"bad\x00name.jpg": "c", photo.name: "bad\x00concept"})
    results = post_manifest(nul_key).json()["results"]
    assert (results[0]["status"], results[0]["code"]) == ("rejected", "bad_concept")
    assert_healthy(api, "c")


def test_served_images_cannot_be_sniffed(api, corpus):
    polyglot = corpus[0].read_bytes() + b"<html><script>alert(1)</script></html>"
    png = io.BytesIO()
    Image.open(corpus[1]).save(png, "PNG")
    files = [("files", ("poly.html", polyglot)), ("files", ("pic.png", png.getvalue()))]
    ids = [r["source_id"] for r in api.client.post("/index", files=files, data={"concept": "c"}, headers=api.auth)
           .json()["results"]]
    expected = [("image/jpeg", "jpg"), ("image/png", "png")]
    for source_id, (media_type, suffix) in zip(ids, expected):
        image = api.client.get(f"/sources/{source_id}/image")
        assert image.headers["content-type"] == media_type
        assert image.headers["x-content-type-options"] == "nosniff"
        assert image.headers["content-disposition"] == f'inline; filename="source-{source_id}.{suffix}"'
        thumbnail = api.client.get(f"/sources/{source_id}/thumbnail")
        assert thumbnail.headers["content-type"] == "image/jpeg"
        assert thumbnail.headers["x-content-type-options"] == "nosniff"
        assert thumbnail.headers["content-disposition"].startswith("inline; filename=")
    assert api.client.get(f"/sources/{ids[0]}/image").content == polyglot  # the bytes, but never as HTML


def test_writes_and_failed_logins_are_rate_limited(start_api, corpus):
    api = start_api(write_rate_per_minute=1, write_burst=3, auth_failures_per_minute=1, auth_failure_burst=2)
    other_ip = TestClient(api.app, raise_server_exceptions=False, client=("192.0.2.7", 40000))
    second_key = {"X-API-Key": create_key(api.app.state.catalog.sessions, "second")[1]}

    for _ in range(3):  # the burst: three writes for this key and this address
        assert_error(api.client.delete("/sources/999", headers=api.auth), 404, "source_not_found")
    limited = api.client.delete("/sources/999", headers=api.auth)
    assert_error(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert_error(other_ip.delete("/sources/999", headers=api.auth), 429, "rate_limited")  # same key elsewhere
    assert_error(api.client.delete("/sources/999", headers=second_key), 429, "rate_limited")  # same address
    assert_error(other_ip.delete("/sources/999", headers=second_key), 404, "source_not_found")
    assert_error(api.client.get("/jobs/no-such-job", headers=api.auth), 404, "job_not_found")  # not a write
    assert api.client.get("/concepts").status_code == 200

    for _ in range(2):  # failed logins from one address: the burst, then 429 even for a good key
        assert_error(other_ip.delete("/sources/999", headers={"X-API-Key": "guess"}), 401, "unauthorized")
    refused = other_ip.delete("/sources/999", headers={"X-API-Key": "guess"})
    assert_error(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert_error(other_ip.get("/jobs/no-such-job", headers=second_key), 429, "rate_limited")
    assert api.client.get("/jobs/no-such-job", headers=second_key).status_code == 404  # other address unaffected
    assert api.client.get("/healthz").status_code == 200


def test_cors_is_off_unless_origins_are_set(start_api):
    origin = {"Origin": "https://dash.example"}
    preflight = origin | {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
    plain = start_api()
    assert "access-control-allow-origin" not in plain.client.get("/concepts", headers=origin).headers
    plain.close()

    api = start_api(cors_origins="https://dash.example, http://localhost:3000")
    allowed = api.client.options("/index", headers=preflight)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://dash.example"
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    response = api.client.get("/concepts", headers=origin)
    assert response.headers["access-control-allow-origin"] == "https://dash.example"
    stranger = api.client.options("/index", headers=preflight | {"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers


@pytest.mark.parametrize("field, value", [
    ("cors_origins", "https://dash.example/path"), ("cors_origins", "dash.example"),
    ("write_rate_per_minute", -1), ("write_burst", 0), ("auth_failure_burst", 0),
    ("header_timeout_s", 0), ("body_timeout_s", -5), ("keep_alive_timeout_s", 0),
])
def test_limit_settings_are_validated(field, value):
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})
