"""Takedowns that are never forgotten.

The rows go in one transaction that also records the takedown (its source ids and image
hashes). Only then are the derived artefacts removed: stored features, every space's vectors,
stored images and thumbnails (an image another source still uses is kept, and the receipt says
so). A crash after the commit leaves a `pending` record, which the start-up and periodic sweep
finish. `GET /takedowns/{id}` is the receipt: when every artefact was gone.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from index.catalog.catalog import Catalog
from index.catalog.crashpoints import crash_point
from index.db import CLI, Actor, Concept, Source, Takedown, utcnow
from index.db import record as audit_record
from index.errors import NotFoundError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Receipt:
    id: str
    kind: str
    target: str
    sources: int
    state: str
    removed: dict
    requested_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, row: Takedown) -> "Receipt":
        return cls(row.id, row.kind, row.target, len(row.source_ids), row.state, dict(row.removed or {}),
                   row.requested_at, row.completed_at)


def take_down_source(catalog: Catalog, source_id: int, actor: Actor = CLI) -> Receipt:
    def sources(session) -> tuple[list[int], None]:
        if session.get(Source, source_id) is None:
            raise NotFoundError(f"no source with id {source_id}", code="source_not_found")
        return [source_id], None

    return _take_down(catalog, "source", str(source_id), sources, actor)


def take_down_concept(catalog: Catalog, name: str, actor: Actor = CLI) -> Receipt:
    def sources(session) -> tuple[list[int], int]:
        concept_id = session.scalar(select(Concept.id).where(Concept.name == name))
        if concept_id is None:
            raise NotFoundError(f"no concept named {name!r}", code="concept_not_found")
        return list(session.scalars(select(Source.id).where(Source.concept_id == concept_id))), concept_id

    return _take_down(catalog, "concept", name, sources, actor)


def _take_down(catalog: Catalog, kind: str, target: str, select_sources, actor: Actor) -> Receipt:
    with catalog.write_lock():
        catalog.spaces()
        with catalog.sessions.begin() as session:
            ids, concept_id = select_sources(session)
            shas = sorted(set(session.scalars(select(Source.sha256).where(Source.id.in_(ids)))))
            takedown_id = str(uuid.uuid4())
            _audit(session, actor, kind, target, ids, {"takedown_id": takedown_id})
            session.execute(delete(Source).where(Source.id.in_(ids)))
            if concept_id is not None:
                session.execute(delete(Concept).where(Concept.id == concept_id))
            record = Takedown(id=takedown_id, kind=kind, target=target[:255], source_ids=ids, shas=shas,
                              state="pending", removed={"rows": len(ids)}, requested_at=utcnow())
            session.add(record)
        crash_point("takedown_after_commit")
        return finish(catalog, record.id)


def _audit(session, actor: Actor, kind: str, target: str, ids: list[int], after: dict) -> None:
    """One `source.delete` entry per source (with what it was), and a `concept.delete` for a concept."""
    rows = session.execute(select(Source.id, Source.filename, Source.sha256, Concept.name).join(Source.concept)
                           .where(Source.id.in_(ids)).order_by(Source.id)).all()
    for row in rows:
        audit_record(session, actor, "source.delete", "source", row.id,
               before={"concept": row.name, "filename": row.filename, "sha256": row.sha256}, after=after)
    if kind == "concept":
        audit_record(session, actor, "concept.delete", "concept", target, before={"name": target, "source_ids": ids},
               after=after)


def finish(catalog: Catalog, takedown_id: str) -> Receipt:
    """Remove every artefact of a recorded takedown (idempotent) and mark it done."""
    with catalog.write_lock():
        with catalog.sessions() as session:
            record = session.get(Takedown, takedown_id)
        removed = dict(record.removed or {})
        removed.update(catalog.forget(list(record.source_ids)) if record.state == "pending" else {})
        removed.update(catalog.delete_unreferenced_blobs(set(record.shas)))
        with catalog.sessions.begin() as session:
            row = session.get(Takedown, takedown_id)
            if row.state == "pending":
                row.state, row.completed_at, row.removed = "done", utcnow(), removed
            return Receipt.of(row)


def finish_pending(catalog: Catalog) -> list[Receipt]:
    """Finish takedowns that a crash interrupted."""
    with catalog.sessions() as session:
        pending = list(session.scalars(select(Takedown.id).where(Takedown.state == "pending")))
    receipts = [finish(catalog, takedown_id) for takedown_id in pending]
    for receipt in receipts:
        log.warning("finished interrupted takedown %s of %s %s: %s", receipt.id, receipt.kind, receipt.target,
                    receipt.removed)
    return receipts


def get_receipt(catalog: Catalog, takedown_id: str) -> Receipt:
    with catalog.sessions() as session:
        row = session.get(Takedown, takedown_id)
    if row is None:
        raise NotFoundError(f"no takedown with id {takedown_id!r}", code="takedown_not_found")
    return Receipt.of(row)
