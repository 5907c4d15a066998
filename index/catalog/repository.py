"""Read-side repository functions for the catalog's rows (paginated listings, lookups)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from index.db import Concept, Job, Source
from index.errors import NotFoundError


@dataclass
class ConceptSummary:
    name: str
    description: str | None
    source_count: int


def get_source(sessions: sessionmaker[Session], source_id: int) -> tuple[Source, str]:
    """The source row and its concept's name."""
    with sessions() as session:
        row = session.execute(
            select(Source, Concept.name).join(Source.concept).where(Source.id == source_id)
        ).first()
    if row is None:
        raise NotFoundError(f"no source with id {source_id}", code="source_not_found")
    return row[0], row[1]


def list_concepts(sessions: sessionmaker[Session], offset: int, limit: int) -> tuple[list[ConceptSummary], int]:
    counts = (
        select(Concept.name, Concept.description, func.count(Source.id).label("n"))
        .outerjoin(Source, Source.concept_id == Concept.id)
        .group_by(Concept.id, Concept.name, Concept.description)
        .order_by(Concept.name)
        .offset(offset)
        .limit(limit)
    )
    with sessions() as session:
        total = session.scalar(select(func.count(Concept.id))) or 0
        rows = session.execute(counts).all()
    return [ConceptSummary(name, description, n) for name, description, n in rows], total


def list_concept_sources(
    sessions: sessionmaker[Session], name: str, offset: int, limit: int
) -> tuple[list[Source], int]:
    with sessions() as session:
        concept_id = session.scalar(select(Concept.id).where(Concept.name == name))
        if concept_id is None:
            raise NotFoundError(f"no concept named {name!r}", code="concept_not_found")
        total = session.scalar(select(func.count(Source.id)).where(Source.concept_id == concept_id)) or 0
        rows = session.scalars(
            select(Source).where(Source.concept_id == concept_id).order_by(Source.id).offset(offset).limit(limit)
        ).all()
    return list(rows), total


def catalog_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return {
            "sources": session.scalar(select(func.count(Source.id))) or 0,
            "concepts": session.scalar(select(func.count(Concept.id))) or 0,
        }


def job_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return dict(session.execute(select(Job.state, func.count(Job.id)).group_by(Job.state)).all())


def source_image_paths(sessions: sessionmaker[Session], blobs) -> list:
    """The stored original of every source, once per distinct image (training material)."""
    with sessions() as session:
        shas = session.scalars(select(Source.sha256).distinct().order_by(Source.sha256)).all()
    return [blobs.path(sha) for sha in shas]


def source_rows(sessions: sessionmaker[Session], source_ids: list[int]) -> dict[int, tuple[str, str, str]]:
    """{source id: (filename, sha256, concept name)} for the ids that still exist."""
    with sessions() as session:
        rows = session.execute(
            select(Source.id, Source.filename, Source.sha256, Concept.name)
            .join(Source.concept)
            .where(Source.id.in_(source_ids))
        ).all()
    return {row.id: (row.filename, row.sha256, row.name) for row in rows}


def existing_sources(sessions: sessionmaker[Session], keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """{(concept name, sha256): source id} for the pairs already indexed."""
    with sessions() as session:
        rows = session.execute(
            select(Concept.name, Source.sha256, Source.id)
            .join(Source.concept)
            .where(tuple_(Concept.name, Source.sha256).in_(keys))
        ).all()
    return {(name, sha): source_id for name, sha, source_id in rows}


def source_created(sessions: sessionmaker[Session], source_ids: list[int]) -> dict[int, datetime]:
    """{source id: when its row was made} for these sources."""
    if not source_ids:
        return {}
    with sessions() as session:
        return dict(session.execute(select(Source.id, Source.created_at).where(Source.id.in_(source_ids))).all())
