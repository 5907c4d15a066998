"""Ingestion's last stage: insert a chunk's rows and store their blobs, with audit entries.

Blobs are written first; rows go in one transaction per chunk, as bulk INSERTs. When a concurrent
writer got some of the same files in first (the unique (concept, sha256) constraint fires), the
chunk goes again one row at a time, and the files already there come back as duplicates.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from index.catalog import crash_point, existing_sources
from index.db import Actor, Concept, Source, record_many

if TYPE_CHECKING:
    from index.catalog import Catalog
    from index.ingest.items import Pending

log = logging.getLogger(__name__)

def insert_all(catalog: Catalog, items: list[Pending], actor: Actor) -> list[tuple[str, int]]:
    """Store the blobs, then insert every row in one transaction: one bulk INSERT for the rows and
    one for their audit entries."""
    try:
        for item in items:
            catalog.blobs.put(item.prepared.sha256, item.prepared.data)
        with catalog.sessions.begin() as session:
            concepts = _get_or_create_concepts(session, {item.concept for item in items}, actor)
            rows = [_row(concepts[item.concept], item) for item in items]
            ids = list(session.scalars(insert(Source).returning(Source.id, sort_by_parameter_order=True), rows))
            record_many(session, actor, "source.create", "source", [
                (id_, {"concept": item.concept, "filename": row["filename"], "sha256": row["sha256"]})
                for id_, item, row in zip(ids, items, rows)])
            return [("indexed", id_) for id_ in ids]
    except Exception:
        catalog.delete_unreferenced_blobs({item.prepared.sha256 for item in items})
        raise


def insert_one(catalog: Catalog, item: Pending, actor: Actor) -> tuple[str, int]:
    try:
        return insert_all(catalog, [item], actor)[0]
    except IntegrityError:
        existing = existing_sources(catalog.sessions, {(item.concept, item.prepared.sha256)})
        if not existing:
            raise
        return "duplicate", next(iter(existing.values()))


def _row(concept_id: int, item: Pending) -> dict:
    return {"sha256": item.prepared.sha256, "concept_id": concept_id, "filename": item.item.filename[:512],
            "format": item.prepared.format[:16], "width": item.prepared.width, "height": item.prepared.height,
            "meta": item.item.meta}


def _get_or_create_concepts(session, names: set[str], actor: Actor) -> dict[str, int]:
    """Concept ids by name; the missing ones are added in one bulk INSERT, with their audit entries."""
    ids = dict(session.execute(select(Concept.name, Concept.id).where(Concept.name.in_(names))).all())
    new = sorted(names - ids.keys())
    if new:
        added = session.execute(insert(Concept).returning(Concept.name, Concept.id, sort_by_parameter_order=True),
                                [{"name": name} for name in new])
        ids.update((name, id_) for name, id_ in added)
        record_many(session, actor, "concept.create", "concept", [(name, {"id": ids[name]}) for name in new])
    return ids


def commit_chunk(catalog: Catalog, pending: dict[int, Pending], features: dict, actor: Actor) -> dict[int, tuple[str, int]]:
    """Under the write lock: insert rows + blobs, then store their features (by backbone id, rows
    in `pending`'s order) and vectors.
    Returns {position: (indexed | duplicate, source id)}."""
    positions = list(pending)
    with catalog.write_lock():
        catalog.spaces()  # load (or reload) before rows are added, so reconcile cannot see them
        try:
            outcome = insert_all(catalog, [pending[p] for p in positions], actor)
        except IntegrityError:
            log.warning("a concurrent writer indexed some of these files; inserting one by one")
            outcome = [insert_one(catalog, pending[p], actor) for p in positions]
        rows = [i for i, (status, _) in enumerate(outcome) if status == "indexed"]
        crash_point("ingest_after_commit")
        catalog.add_features([outcome[i][1] for i in rows], {bid: rows_of[rows] for bid, rows_of in features.items()})
    return dict(zip(positions, outcome))
