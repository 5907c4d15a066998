"""Nothing a client sends is dropped in silence (issue 25, item 7): an unknown query parameter, a
single-valued one given twice, or a second file in a one-file field gets a 422 naming it."""

import pytest


def error(response):
    return response.status_code, response.json()["error"]["code"], response.json()["error"]["message"]


@pytest.fixture
def indexed(api, corpus):
    assert api.index(corpus[:3]).status_code == 200
    return api


def test_unknown_and_repeated_query_parameters_are_named(indexed, corpus, edit):
    api, query = indexed, edit(corpus[1])
    status, code, message = error(api.attribute(query, params={"kk": 3, "spaces": "copy"}))
    assert (status, code) == (422, "unknown_parameter")
    assert "`kk`, `spaces`" in message and "takes `case`, `evidence`, `k`, `sources`, `space`" in message
    status, code, message = error(api.client.post("/attribute?k=2&k=5", files={"file": ("q.jpg", query)}))
    assert (status, code) == (422, "duplicate_parameter") and "`k`" in message
    status, code, message = error(api.client.get("/concepts?limit=5&colour=red", headers=api.auth))
    assert (status, code) == (422, "unknown_parameter") and "`colour`" in message and "`limit`" in message
    assert error(api.client.get("/readyz?verbose=1"))[:2] == (422, "unknown_parameter")
    assert api.attribute(query, params={"k": 2, "space": "style"}).status_code == 200
    assert api.client.get("/concepts?limit=2&offset=1", headers=api.auth).status_code == 200


def test_a_second_file_in_a_one_file_field_is_refused(indexed, corpus, edit, tmp_path):
    api, query = indexed, edit(corpus[1])
    two = [("file", ("a.jpg", query)), ("file", ("b.jpg", corpus[2].read_bytes()))]
    status, code, message = error(api.client.post("/attribute", files=two))
    assert (status, code) == (422, "duplicate_field") and "`file` takes one file; this request sent 2" in message
    assert error(api.client.post("/cases", files=two, headers=api.auth))[:2] == (422, "duplicate_field")
    head = [("checkpoint", ("a.pt", b"x")), ("checkpoint", ("b.pt", b"y"))]
    assert error(api.client.put("/spaces/content", files=head, headers=api.auth))[:2] == (422, "duplicate_field")
    many = [("files", (p.name, p.read_bytes())) for p in corpus[3:5]]  # a list field takes many
    assert api.client.post("/index", files=many, data={"concept": ["x", "y"]}, headers=api.auth).status_code == 200


def test_the_reviewer_page_takes_the_query_strings_browsers_add(api):
    assert api.client.get("/ui?utm_source=mail").status_code == 200
    assert api.client.get("/ui/app.js?v=2").status_code == 200
