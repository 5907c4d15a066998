"""Cases over HTTP on both databases: create (two routes), read, image, filters, pages, decisions,
rescores after a new head, reports, exports, metrics, and garbage that must stay 4xx."""

import base64
import csv
import io
import re

import pytest

from index.auth import create_key
from tests.app.test_spaces_api import head_bytes, put_head, wait_for


@pytest.fixture
def desk(start_api, corpus):
    api = start_api(write_rate_per_minute=0)
    api.index(corpus[:6])
    sessions = api.app.state.catalog.sessions
    api.reviewer = {"X-API-Key": create_key(sessions, "rita", "reviewer")[1]}
    api.other = {"X-API-Key": create_key(sessions, "omar", "reviewer")[1]}
    return api


def open_case(api, data, filename="query.jpg", **params):
    response = api.client.post("/cases", files={"file": (filename, data)}, params=params, headers=api.reviewer)
    assert response.status_code == 201, response.text
    return response.json()


def decide(api, case_id, headers=None, **body):
    return api.client.post(f"/cases/{case_id}/decision", json=body, headers=headers or api.reviewer)


def test_a_case_keeps_the_query_the_answer_and_the_decisions(desk, corpus, edit):
    api = desk
    query = edit(corpus[2])
    case = open_case(api, query, k=4)
    style = case["answer"]["spaces"]["style"]
    assert case["status"] == "open" and case["decisions"] == [] and case["rescores"] == []
    assert case["key_name"] == "rita" and case["filename"] == "query.jpg" and "case_id" not in case["answer"]
    assert list(case["answer"]["spaces"]) == ["content", "copy", "style"] and len(style["concepts"]) == 4
    copy, verdict = case["answer"]["spaces"]["copy"], case["answer"]["verdict"]  # the headline is the verdict
    assert case["top_concept"] == corpus[2].stem == style["concepts"][0]["concept"] == copy["concepts"][0]["concept"]
    assert verdict["kind"] == "match" and verdict["concept"] == corpus[2].stem
    assert case["confidence"] == verdict["probability"]
    assert case["none_probability"] == verdict["none_probability"] is not None
    assert case["head_ids"] == {"copy": copy["head_id"], "style": style["head_id"]} and case["backbone_id"] == case["answer"]["backbone_id"]
    assert case["image_url"] == f"/cases/{case['id']}/image" and case["report_url"] == f"/cases/{case['id']}/report"
    image = api.client.get(case["image_url"], headers=api.reviewer)
    assert image.content == query and image.headers["content-type"] == "image/jpeg"
    assert api.client.get(f"/cases/{case['id']}", headers=api.reviewer).json() == case

    via_attribute = api.client.post("/attribute", files={"file": ("second.jpg", edit(corpus[4]))},
                                    params={"case": "true", "k": 3}, headers=api.other)
    assert via_attribute.status_code == 200, via_attribute.text
    second_id = via_attribute.json()["case_id"]
    second = api.client.get(f"/cases/{second_id}", headers=api.reviewer).json()
    answer = {key: value for key, value in via_attribute.json().items() if key != "case_id"}
    assert second["answer"] == answer and second["key_name"] == "omar" and second["top_concept"] == corpus[4].stem
    assert api.attribute(edit(corpus[4])).json()["case_id"] is None
    assert api.client.post("/attribute?case=true", files={"file": ("q.jpg", query)}).status_code == 401

    top = style["concepts"][0]
    refusals = [({"decision": "match"}, "concepts_required"),
                ({"decision": "match", "concepts": ["unicorn"]}, "unknown_concept"),
                ({"decision": "match", "concepts": [top["concept"]], "source_ids": [999999]}, "unknown_source"),
                ({"decision": "no_match", "concepts": [top["concept"]]}, "concepts_not_allowed"),
                ({"decision": "approve"}, "invalid_request"),
                ({"decision": "escalate", "note": "x" * 10_001}, "invalid_request"),
                ({"decision": "match", "concepts": [""]}, "invalid_request"),
                ({"decision": "match", "concepts": ["a"], "source_ids": [2**31]}, "invalid_request"),
                ({"decision": "escalate", "why": "unknown field"}, "invalid_request")]
    for body, code in refusals:
        response = decide(api, case["id"], **body)
        assert (response.status_code, response.json()["error"]["code"]) == (422, code), (body, response.text)
    for raw in (b'{"decision": "escalate", "note": "\\ud800"}', b'{"decision": "match", "concepts": ["\\udfff"]}',
                b'{"decision": "escalate", "note": "a\\u0000b"}', b'{"decision": "match", "concepts": ["a\\u0007"]}'):
        response = api.client.post(f"/cases/{case['id']}/decision", content=raw, headers=api.reviewer)
        assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_request"), raw
    first = decide(api, case["id"], decision="match", concepts=[top["concept"]],
                   source_ids=[top["sources"][0]["id"]], note="same fish, same pose")
    assert first.status_code == 201, first.text
    assert first.json()["superseded_by"] is None and first.json()["key_name"] == "rita"
    catalog_concept = corpus[0].stem  # in the catalog, though perhaps not in this answer
    second_decision = decide(api, case["id"], headers=api.other, decision="escalate", concepts=[catalog_concept],
                             note="ask legal").json()
    third = decide(api, case["id"], decision="no_match", note="on reflection, no").json()
    decided = api.client.get(f"/cases/{case['id']}", headers=api.reviewer).json()
    assert decided["status"] == "no_match"
    assert [(d["decision"], d["superseded_by"]) for d in decided["decisions"]] == [
        ("match", second_decision["id"]), ("escalate", third["id"]), ("no_match", None)]
    assert decided["decisions"][0]["note"] == "same fish, same pose"
    decision_url = f"/cases/{case['id']}/decision"
    for method in ("PUT", "PATCH", "DELETE"):
        assert api.client.request(method, decision_url, headers=api.reviewer).status_code == 405
    assert api.client.delete(f"/cases/{case['id']}", headers=api.reviewer).status_code == 405

    text = api.client.get("/metrics").text
    assert 'attrib_cases{status="no_match"} 1.0' in text and 'attrib_cases{status="open"} 1.0' in text
    assert 'attrib_decisions_total{kind="match"} 1.0' in text and 'attrib_decisions_total{kind="escalate"} 1.0' in text

    audit = api.client.get("/audit", params={"target_type": "case", "target_id": case["id"]}, headers=api.auth).json()
    assert [e["action"] for e in audit["items"]] == ["decision.create"] * 3 + ["case.create"]
    assert audit["items"][0]["before"] == {"status": "escalated"} and audit["items"][-1]["key_name"] == "rita"


def test_lists_filter_and_page(desk, corpus, edit):
    api = desk
    cases = [open_case(api, edit(corpus[i]), filename=f"q{i}.jpg") for i in (1, 3, 5)]
    decide(api, cases[0]["id"], decision="match", concepts=[cases[0]["top_concept"]])
    decide(api, cases[2]["id"], headers=api.other, decision="escalate")

    def ids(**params):
        response = api.client.get("/cases", params=params, headers=api.reviewer)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids() == [c["id"] for c in reversed(cases)]
    assert ids(status="match") == [cases[0]["id"]] and ids(status="escalated") == [cases[2]["id"]]
    assert ids(status="open") == [cases[1]["id"]]
    assert ids(concept=corpus[3].stem) == [cases[1]["id"]]
    assert ids(reviewer="omar") == [cases[2]["id"]] and ids(reviewer=cases[0]["key_id"]) == [cases[0]["id"]]
    assert ids(min_confidence=1) == [c["id"] for c in reversed(cases) if c["confidence"] >= 1]
    assert ids(since="2000-01-01T00:00:00Z", until="2999-01-01T00:00:00+02:00") == [c["id"] for c in reversed(cases)]
    assert ids(since="2999-01-01T00:00:00") == [] and ids(until="2000-01-01") == []
    page = api.client.get("/cases", params={"offset": 1, "limit": 1}, headers=api.reviewer).json()
    assert (page["total"], page["offset"], page["limit"], [i["id"] for i in page["items"]]) == (3, 1, 1, [cases[1]["id"]])
    item = api.client.get("/cases", params={"status": "match"}, headers=api.reviewer).json()["items"][0]
    assert set(item) == {"id", "status", "created_at", "filename", "top_concept", "confidence", "none_probability",
                         "image_url", "decisions"} and item["decisions"] == 1 and item["filename"] == "q1.jpg"

    for params in ({"status": "closed"}, {"min_confidence": 2}, {"min_confidence": "nan"}, {"min_confidence": "x"},
                   {"since": "yesterday"}, {"since": "0001-01-01T00:00:00+01:00"}, {"until": "9999-12-31T23:59:59-01:00"},
                   {"limit": 0}, {"limit": 501}, {"offset": -1}, {"offset": 2**31}, {"concept": "x" * 256},
                   {"reviewer": ""}):
        response = api.client.get("/cases", params=params, headers=api.reviewer)
        assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_request"), (params, response.text)
        if not {"limit", "offset"} & set(params):  # an export has no pages
            assert api.client.get("/cases/export", params=params, headers=api.reviewer).status_code == 422
    for path in ("/cases/0", f"/cases/{2**31}", "/cases/99999999999999999999999", "/cases/abc", "/cases/-1",
                 "/cases/1.5/report", f"/cases/{2**63}/image", "/cases/0/rescore"):
        method = "POST" if path.endswith("rescore") else "GET"
        response = api.client.request(method, path, headers=api.reviewer)
        assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_request"), path
    for method, path in (("GET", "/cases/4242"), ("GET", "/cases/4242/image"), ("GET", "/cases/4242/report"),
                         ("POST", "/cases/4242/rescore")):
        response = api.client.request(method, path, headers=api.reviewer)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "case_not_found"), path
    response = decide(api, 4242, decision="escalate")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "case_not_found")
    for data, status in ((b"", 400), (b"%PDF-1.4", 415)):
        response = api.client.post("/cases", files={"file": ("x", data)}, headers=api.reviewer)
        assert response.status_code == status, response.text
    response = api.client.post("/cases", headers=api.reviewer)
    assert response.status_code == 422
    response = api.client.post(f"/cases/{cases[0]['id']}/decision", content=b"[]", headers=api.reviewer)
    assert response.status_code == 422
    refused = api.client.get("/cases", params={"total": "ignored"}, headers=api.reviewer)  # no longer ignored
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "unknown_parameter")
    assert "`total`" in refused.json()["error"]["message"]
    assert api.client.get("/cases", headers=api.reviewer).json()["total"] == 3


def test_rescore_after_a_new_head_keeps_both_answers(desk, corpus, edit, tmp_path):
    api = desk
    case = open_case(api, edit(corpus[2]), k=3)
    assert case["answer"]["spaces"]["content"]["available"] is False
    data, head_id = head_bytes(tmp_path, 7)
    assert wait_for(api, put_head(api, "content", data))["state"] == "succeeded"

    response = api.client.post(f"/cases/{case['id']}/rescore", headers=api.other)
    assert response.status_code == 201, response.text
    rescore = response.json()
    assert rescore["previous_answer"] == case["answer"] and rescore["key_name"] == "omar"
    assert rescore["head_ids"] == {"content": head_id, "copy": case["head_ids"]["copy"], "style": case["head_ids"]["style"]}
    after = [c["concept"] for c in rescore["answer"]["spaces"]["content"]["concepts"]]
    assert rescore["changed"] and rescore["changes"]["content"] == {"before": [], "after": after} and len(after) == 3
    assert "style" not in rescore["changes"]  # the style head did not change, nor its ranking

    now = api.client.get(f"/cases/{case['id']}", headers=api.reviewer).json()
    assert now["answer"] == rescore["answer"] and now["head_ids"]["content"] == head_id
    assert now["top_concept"] == after[0] and now["rescores"] == [rescore]
    again = api.client.post(f"/cases/{case['id']}/rescore", headers=api.reviewer).json()
    assert again["previous_answer"] == rescore["answer"] and not again["changed"] and again["changes"] == {}
    assert [r["id"] for r in api.client.get(f"/cases/{case['id']}", headers=api.reviewer).json()["rescores"]] == [
        rescore["id"], again["id"]]
    entries = api.client.get("/audit", params={"action": "case.rescore"}, headers=api.auth).json()["items"]
    assert [e["after"]["changed"] for e in entries] == [False, True]


def test_report_and_export(desk, corpus, edit):
    api = desk
    case = open_case(api, edit(corpus[1]), filename="<script>alert(1)</script>.jpg")
    decide(api, case["id"], decision="match", concepts=[case["top_concept"]], note="=HYPERLINK(\"evil\")\n<b>bold</b>")
    decide(api, case["id"], headers=api.other, decision="escalate", note="second opinion")

    response = api.client.get(case["report_url"], headers=api.reviewer)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    assert "<script" not in page and "&lt;script&gt;" in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert not re.search(r"""(src|href)=['"]?(https?:|//|/)""", page)  # nothing outside the page
    images = re.findall(r"src='data:image/jpeg;base64,([A-Za-z0-9+/=]+)'", page)
    shown = sum(len(c["sources"]) for s in case["answer"]["spaces"].values() for c in s["concepts"][:5])
    assert len(images) == 1 + shown and all(base64.b64decode(i)[:2] == b"\xff\xd8" for i in images)
    assert "@media print" in page and case["backbone_id"] in page and case["head_ids"]["style"] in page
    assert "second opinion" in page and "(superseded)" in page and case["top_concept"] in page

    other = open_case(api, edit(corpus[3]))
    response = api.client.get("/cases/export", params={"format": "csv"}, headers=api.reviewer)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.headers["x-total-count"] == "2" and response.headers["x-export-truncated"] == "false"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [int(r["id"]) for r in rows] == [other["id"], case["id"]]
    assert rows[1]["decision"] == "escalate" and rows[1]["decided_by"] == "omar" and rows[1]["status"] == "escalated"
    assert rows[0]["decision"] == "" and rows[0]["status"] == "open"
    body = api.client.get("/cases/export", params={"status": "open"}, headers=api.reviewer).json()
    assert (body["total"], body["truncated"], body["max_rows"]) == (1, False, 10_000)
    assert body["items"][0]["id"] == other["id"] and body["items"][0]["top_concept"] == other["top_concept"]
    decide(api, other["id"], decision="no_match", note='=cmd|" /C calc"!A0')
    rows = list(csv.DictReader(io.StringIO(api.client.get("/cases/export?format=csv", headers=api.reviewer).text)))
    assert rows[0]["decision_note"].startswith("'=")
    assert api.client.get("/cases/export", params={"format": "xml"}, headers=api.reviewer).status_code == 422
