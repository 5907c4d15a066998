"""Ingestion: decode + validate, skip duplicates, store blobs, embed in batches, commit.

One bad file never spoils a batch: it becomes a `rejected` result with a code and a reason.
A chunk's rows are committed before its results are reported, so nothing acknowledged is lost.
Each new source and concept is recorded in the audit log, in the transaction that adds it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError

from index.audit import CLI, Actor, record
from index.catalog import Catalog
from index.crashpoints import crash_point
from index.images import DecodedImage, ImageError, decode_image
from index.models import Concept, Source

log = logging.getLogger(__name__)
MAX_CONCEPT_LENGTH = 255
# Rows are committed per chunk; the index file is rewritten at most this often during a long
# ingest (and at its end). A crash in between loses no work: reconcile re-embeds from the blobs.
SAVE_EVERY_SECONDS = 60.0


@dataclass
class IngestItem:
    filename: str
    concept: str | None
    data: bytes | None = None
    path: Path | None = None
    meta: dict = field(default_factory=dict)
    rejection: tuple[str, str] | None = None  # (code, reason) found before ingestion, e.g. too large

    def read(self) -> bytes:
        return self.data if self.data is not None else Path(self.path).read_bytes()


@dataclass
class IngestResult:
    filename: str
    status: str  # indexed | duplicate | rejected
    concept: str | None = None
    source_id: int | None = None
    code: str | None = None
    reason: str | None = None


@dataclass
class _Pending:
    item: IngestItem
    concept: str
    data: bytes
    decoded: DecodedImage


def ingest(
    catalog: Catalog,
    items: Iterable[IngestItem],
    on_result: Callable[[IngestResult], None] | None = None,
    actor: Actor = CLI,
) -> list[IngestResult]:
    """Ingest items chunk by chunk; results come back in input order. `actor` is who the audit
    log names."""
    results: list[IngestResult] = []
    try:
        for chunk in _chunks(items, catalog.config.batch_size):
            chunk_results = _ingest_chunk(catalog, chunk, actor)
            results.extend(chunk_results)
            catalog.flush(max_age=SAVE_EVERY_SECONDS)
            for result in chunk_results:
                if on_result:
                    on_result(result)
    finally:
        catalog.flush()
    return results


def _chunks(items: Iterable[IngestItem], size: int) -> Iterator[list[IngestItem]]:
    chunk: list[IngestItem] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _ingest_chunk(catalog: Catalog, items: list[IngestItem], actor: Actor) -> list[IngestResult]:
    results: dict[int, IngestResult] = {}
    pending: dict[int, _Pending] = {}
    for position, item in enumerate(items):
        outcome = _validate(catalog, item)
        if isinstance(outcome, IngestResult):
            results[position] = outcome
        else:
            pending[position] = outcome
    repeats = _mark_duplicates(catalog, pending, results) if pending else {}
    if pending:
        results.update(_commit(catalog, pending, actor))
    for position, first in repeats.items():
        earlier = results[first]
        results[position] = IngestResult(items[position].filename, "duplicate", earlier.concept, earlier.source_id)
    return [results[position] for position in range(len(items))]


def _validate(catalog: Catalog, item: IngestItem) -> _Pending | IngestResult:
    def rejected(code: str, reason: str) -> IngestResult:
        return IngestResult(item.filename, "rejected", item.concept, code=code, reason=reason)

    if item.rejection:
        return rejected(*item.rejection)
    concept = (item.concept or "").strip()
    if not concept:
        return rejected("missing_concept", "no concept name was given for this file")
    if len(concept) > MAX_CONCEPT_LENGTH or not concept.isprintable():
        return rejected("bad_concept", f"concept names are 1-{MAX_CONCEPT_LENGTH} printable characters")
    try:
        data = item.read()
    except OSError as exc:
        return rejected("unreadable_file", f"cannot read the file: {exc.strerror or exc}")
    try:
        decoded = decode_image(data, catalog.config.max_pixels)
    except ImageError as exc:
        return rejected(exc.code, exc.message)
    return _Pending(item, concept, data, decoded)


def _mark_duplicates(catalog: Catalog, pending: dict[int, _Pending], results: dict[int, IngestResult]) -> dict[int, int]:
    """Same bytes under the same concept, in the catalog or earlier in this chunk.

    Returns {position: earlier position} for the repeats within the chunk.
    """
    keys = {(p.concept, p.decoded.sha256) for p in pending.values()}
    with catalog.sessions() as session:
        rows = session.execute(
            select(Concept.name, Source.sha256, Source.id)
            .join(Source.concept)
            .where(tuple_(Concept.name, Source.sha256).in_(keys))
        ).all()
    known = {(name, sha): source_id for name, sha, source_id in rows}
    first_seen: dict[tuple[str, str], int] = {}
    repeats: dict[int, int] = {}
    for position, item in list(pending.items()):
        key = (item.concept, item.decoded.sha256)
        if key in known:
            results[position] = IngestResult(item.item.filename, "duplicate", item.concept, known[key])
            del pending[position]
        elif key in first_seen:
            repeats[position] = first_seen[key]
            del pending[position]
        else:
            first_seen[key] = position
    return repeats


def _commit(catalog: Catalog, pending: dict[int, _Pending], actor: Actor) -> dict[int, IngestResult]:
    """Run the backbone, then insert rows + blobs and store features and vectors under the write lock."""
    positions = list(pending)
    features = catalog.encoder.embed_features([pending[p].decoded.image for p in positions], catalog.config.batch_size)
    with catalog.write_lock():
        catalog.spaces()  # load (or reload) before rows are added, so reconcile cannot see them
        try:
            outcome = _insert_all(catalog, [pending[p] for p in positions], actor)
        except IntegrityError:
            log.warning("a concurrent writer indexed some of these files; inserting one by one")
            outcome = [_insert_one(catalog, pending[p], actor) for p in positions]
        rows = [i for i, (status, _) in enumerate(outcome) if status == "indexed"]
        crash_point("ingest_after_commit")
        catalog.add_features([outcome[i][1] for i in rows], features[rows])
    return {
        position: IngestResult(pending[position].item.filename, status, pending[position].concept, source_id)
        for position, (status, source_id) in zip(positions, outcome)
    }


def _insert_all(catalog: Catalog, items: list[_Pending], actor: Actor) -> list[tuple[str, int]]:
    """Insert every row (and store its blob) in one transaction, with their audit entries."""
    try:
        with catalog.sessions.begin() as session:
            concepts = _get_or_create_concepts(session, {item.concept for item in items}, actor)
            rows = [_new_row(catalog, concepts[item.concept], item) for item in items]
            session.add_all(rows)
            session.flush()
            for row, item in zip(rows, items):
                record(session, actor, "source.create", "source", row.id,
                       after={"concept": item.concept, "filename": row.filename, "sha256": row.sha256})
            return [("indexed", row.id) for row in rows]
    except Exception:
        catalog.delete_unreferenced_blobs({item.decoded.sha256 for item in items})
        raise


def _insert_one(catalog: Catalog, item: _Pending, actor: Actor) -> tuple[str, int]:
    try:
        return _insert_all(catalog, [item], actor)[0]
    except IntegrityError:
        with catalog.sessions() as session:
            existing = session.scalar(
                select(Source.id).join(Source.concept)
                .where(Concept.name == item.concept, Source.sha256 == item.decoded.sha256)
            )
        if existing is None:
            raise
        return "duplicate", existing


def _new_row(catalog: Catalog, concept: Concept, item: _Pending) -> Source:
    catalog.blobs.put(item.decoded.sha256, item.data)
    return Source(
        sha256=item.decoded.sha256,
        concept_id=concept.id,
        filename=item.item.filename[:512],
        format=item.decoded.format[:16],
        width=item.decoded.width,
        height=item.decoded.height,
        meta=item.item.meta,
    )


def _get_or_create_concepts(session, names: set[str], actor: Actor) -> dict[str, Concept]:
    concepts = {c.name: c for c in session.scalars(select(Concept).where(Concept.name.in_(names)))}
    new = sorted(names - concepts.keys())
    for name in new:
        concepts[name] = Concept(name=name)
        session.add(concepts[name])
    session.flush()
    for name in new:
        record(session, actor, "concept.create", "concept", name, after={"id": concepts[name].id})
    return concepts
