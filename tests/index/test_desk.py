"""The review desk's database layer on SQLite and PostgreSQL: the 0006 migration, cases and their
filters, append-only decisions, rescores, the audit log, and case images kept by the sweep and by
takedowns."""

import io
import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image
from sqlalchemy import create_engine, select, text

from index.auth import authenticate, create_key, revoke_key, set_role
from index.catalog import BlobStore, take_down_concept, take_down_source
from index.db import (Actor, AuditFilter, Case, Source, downgrade_database, list_audit, make_engine, session_factory,
                      upgrade_database)
from index.desk import (CaseError, CaseFilter, Headline, add_decision, add_rescore, create_case, get_case,
                        latest_decisions, list_cases)
from index.errors import NotFoundError
from index.images import decode_image
from index.ingest import IngestItem, ingest
from index.jobs import sweep

ALICE, BOB = Actor(7, "alice", "reviewer"), Actor(8, "bob", "reviewer")


def answer(*concepts, backbone="bb-1", head="head-1", source_ids=()):
    ranked = [{"concept": name, "score": 0.9 - i / 10, "share": 0.6 - i / 10,
               "sources": [{"id": sid, "filename": f"{name}.jpg", "score": 0.8}] if i < len(source_ids) else []}
              for i, (name, sid) in enumerate(zip(concepts, [*source_ids, *[None] * len(concepts)]))]
    return {"backbone_id": backbone, "k": len(concepts),
            "spaces": {"style": {"space": "style", "head_id": head, "available": True, "message": None,
                                 "concepts": ranked}}}


def png(color) -> tuple[bytes, object]:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, "PNG")
    return buffer.getvalue(), decode_image(buffer.getvalue())


@pytest.fixture
def desk(database_url, tmp_path):
    upgrade_database(database_url)
    engine = make_engine(database_url)
    yield session_factory(engine), BlobStore.under(tmp_path / "home")
    engine.dispose()


def new_case(desk, color, concepts, confidence, actor=ALICE, source_ids=()):
    sessions, blobs = desk
    data, image = png(color)
    reply = answer(*concepts, source_ids=source_ids)
    return create_case(sessions, blobs, actor, data, image, "q.png", {"k": 3, "space": "all", "sources": 3}, reply,
                       {"style": "head-1"}, Headline(concepts[0] if concepts else None, confidence, None))


def test_existing_keys_become_admin_keys(database_url):
    upgrade_database(database_url, "0005")
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO api_keys (name, prefix, key_hash, created_at) "
                                "VALUES ('old bot', 'attrib_abcdef', :h, CURRENT_TIMESTAMP)"), {"h": "a" * 64})
    upgrade_database(database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name, role FROM api_keys")).all() == [("old bot", "admin")]
    downgrade_database(database_url, "0005")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM api_keys")).all() == [("old bot",)]
    engine.dispose()


def test_keys_have_roles_and_every_change_is_audited(desk):
    sessions, _ = desk
    row, key = create_key(sessions, "desk", "reviewer")
    assert authenticate(sessions, key) == Actor(row.id, "desk", "reviewer")
    admin = Actor(99, "root", "admin")
    set_role(sessions, row.id, "ingest", admin)
    set_role(sessions, row.id, "ingest", admin)  # no change, nothing recorded
    revoke_key(sessions, row.id)
    revoke_key(sessions, row.id)
    assert authenticate(sessions, key) is None
    with pytest.raises(NotFoundError):
        set_role(sessions, 2**40, "admin")
    entries, total = list_audit(sessions, AuditFilter(target_type="key"), 0, 10)
    assert total == 3 and [e.action for e in entries] == ["key.revoke", "key.role", "key.create"]
    revoked, role, created = entries
    assert (created.key_id, created.key_name, created.after["role"]) == (None, "cli", "reviewer")
    assert (role.key_id, role.key_name, role.before["role"], role.after["role"]) == (99, "root", "reviewer", "ingest")
    assert revoked.before["revoked_at"] is None and revoked.after["revoked_at"]
    assert list_audit(sessions, AuditFilter(actor="99"), 0, 10)[1] == 1
    assert list_audit(sessions, AuditFilter(actor="cli", action="key.create"), 0, 10)[1] == 1


def test_decisions_are_appended_and_the_latest_sets_the_status(desk):
    sessions, _ = desk
    case_id = new_case(desk, "red", ["tench", "goldfish"], 0.7, source_ids=[5])
    with pytest.raises(CaseError) as refused:
        add_decision(sessions, ALICE, case_id, "match", [], [], "")
    assert refused.value.code == "concepts_required"
    for concepts, sources, code in ((["unicorn"], [], "unknown_concept"), (["tench"], [12345], "unknown_source")):
        with pytest.raises(CaseError) as refused:
            add_decision(sessions, ALICE, case_id, "match", concepts, sources, "")
        assert refused.value.code == code
    with pytest.raises(CaseError):
        add_decision(sessions, ALICE, case_id, "no_match", ["tench"], [], "")
    with pytest.raises(NotFoundError):
        add_decision(sessions, ALICE, 2**31, "escalate", [], [], "")
    first = add_decision(sessions, ALICE, case_id, "match", ["tench", "tench"], [5], "the fins")
    second = add_decision(sessions, BOB, case_id, "escalate", ["goldfish"], [], "not sure")
    record = get_case(sessions, case_id)
    assert record.case.status == "escalated"
    assert [(d.id, d.decision, d.concepts, d.key_name) for d in record.decisions] == [
        (first.id, "match", ["tench"], "alice"), (second.id, "escalate", ["goldfish"], "bob")]
    assert latest_decisions(sessions, [case_id])[case_id].id == second.id
    entries, _ = list_audit(sessions, AuditFilter(action="decision.create", target_id=str(case_id)), 0, 10)
    assert [(e.key_name, e.before, e.after["status"]) for e in entries] == [
        ("bob", {"status": "match"}, "escalated"), ("alice", {"status": "open"}, "match")]


def test_case_filters_and_pages_are_sql(desk):
    sessions, _ = desk
    ids = [new_case(desk, color, [concept], confidence) for color, concept, confidence in
           (("red", "tench", 0.9), ("green", "tench", 0.4), ("blue", "goldfish", 0.8), ("white", "goldfish", None))]
    add_decision(sessions, ALICE, ids[0], "match", ["tench"], [], "")
    add_decision(sessions, BOB, ids[2], "no_match", [], [], "")

    def found(**where):
        rows, total = list_cases(sessions, CaseFilter(**where), 0, 50)
        assert total == len(rows)
        return [case.id for case, _ in rows]

    assert found() == ids[::-1]  # newest first
    assert found(status="open") == [ids[3], ids[1]] and found(status="match") == [ids[0]]
    assert found(concept="goldfish") == [ids[3], ids[2]]
    assert found(min_confidence=0.8) == [ids[2], ids[0]]
    assert found(reviewer="alice") == [ids[0]] and found(reviewer="8") == [ids[2]] and found(reviewer="nobody") == []
    assert found(reviewer=str(2**40)) == []
    now = datetime.now(timezone.utc)
    assert found(since=now - timedelta(hours=1), until=now + timedelta(hours=1)) == ids[::-1]
    assert found(since=now + timedelta(hours=1)) == [] and found(until=now - timedelta(hours=1)) == []
    rows, total = list_cases(sessions, CaseFilter(), 1, 2)
    assert total == 4 and [(case.id, count) for case, count in rows] == [(ids[2], 1), (ids[1], 0)]


def test_a_rescore_keeps_the_answer_before_it(desk):
    sessions, _ = desk
    case_id = new_case(desk, "red", ["tench", "goldfish"], 0.6)
    newer = answer("goldfish", "tench", head="head-2")

    def compare(before, after):
        return before["spaces"]["style"]["concepts"][0] != after["spaces"]["style"]["concepts"][0], {"style": {}}

    row = add_rescore(sessions, BOB, case_id, newer, {"style": "head-2"}, Headline("goldfish", 0.5, 0.1), compare)
    record = get_case(sessions, case_id)
    assert record.case.answer == newer and record.case.head_ids == {"style": "head-2"}
    assert (record.case.top_concept, record.case.confidence, record.case.none_probability) == ("goldfish", 0.5, 0.1)
    assert row.changed and record.rescores[0].previous_answer == answer("tench", "goldfish")
    # a concept only the earlier answer showed may still be decided on
    add_decision(sessions, ALICE, case_id, "match", ["tench"], [], "")
    entry = list_audit(sessions, AuditFilter(action="case.rescore"), 0, 1)[0][0]
    assert entry.before["head_ids"] == {"style": "head-1"} and entry.after["head_ids"] == {"style": "head-2"}


def test_case_images_survive_the_sweep_and_takedowns(make_catalog, photos):
    catalog = make_catalog()
    results = ingest(catalog, [IngestItem(p.name, p.stem, path=p) for p in photos[:2]])
    data = photos[0].read_bytes()
    case_id = create_case(catalog.sessions, catalog.blobs, ALICE, data, decode_image(data), photos[0].name, {},
                          answer("x"), {}, Headline(None, None, None))
    with catalog.sessions() as session:
        sha = session.get(Case, case_id).sha256
    extra, image = png("red")  # a case image that no source shares
    other = create_case(catalog.sessions, catalog.blobs, BOB, extra, image, "q.png", {}, answer("x"), {},
                        Headline(None, None, None))
    old = time.time() - 3600
    for path in catalog.blobs.root.glob("*/*"):
        os.utime(path, (old, old))
    take_down_source(catalog, results[0].source_id)  # the same bytes as the first case's image
    assert catalog.blobs.path(sha).is_file()
    removed = sweep(catalog, min_age=60)
    assert removed["images"] == 0
    assert catalog.blobs.read(sha) == data and catalog.blobs.read(image.sha256) == extra
    assert other > case_id


def test_ingest_and_takedowns_are_audited(make_catalog, photos):
    catalog = make_catalog()
    ingester = Actor(3, "ingest bot", "ingest")
    results = ingest(catalog, [IngestItem(p.name, "fish", path=p) for p in photos[:3]], actor=ingester)
    ingest(catalog, [IngestItem(photos[0].name, "fish", path=photos[0])], actor=ingester)  # a duplicate: no write
    sessions = catalog.sessions
    created, total = list_audit(sessions, AuditFilter(action="source.create"), 0, 10)
    assert total == 3 and {e.target_id for e in created} == {str(r.source_id) for r in results}
    assert all(e.key_name == "ingest bot" and e.key_id == 3 and e.after["concept"] == "fish" for e in created)
    # each entry names its own row: the bulk insert hands the ids back in the files' order
    assert {e.target_id: e.after["filename"] for e in created} == {str(r.source_id): r.filename for r in results}
    with sessions() as session:
        rows = {row.id: row.filename for row in session.scalars(select(Source))}
    assert rows == {r.source_id: r.filename for r in results}
    assert list_audit(sessions, AuditFilter(action="concept.create"), 0, 10)[1] == 1
    take_down_source(catalog, results[0].source_id)
    take_down_concept(catalog, "fish", Actor(1, "root", "admin"))
    deleted, _ = list_audit(sessions, AuditFilter(action="source.delete"), 0, 10)
    assert [e.key_name for e in deleted] == ["root", "root", "cli"]
    assert deleted[-1].before["filename"] == photos[0].name and deleted[-1].after["takedown_id"]
    concept, _ = list_audit(sessions, AuditFilter(target_type="concept", action="concept.delete"), 0, 10)
    assert concept[0].target_id == "fish" and sorted(concept[0].before["source_ids"]) == sorted(
        r.source_id for r in results[1:])
