"""SQLAlchemy 2.0 models of the catalog. The schema itself is made only by Alembic migrations;
`index.db` imports this module and the review desk's (`models_desk`), so `Base.metadata` holds every table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from index.db.base import Base, UTCDateTime, utcnow


class Concept(Base):
    __tablename__ = "concepts"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    sources: Mapped[list["Source"]] = relationship(back_populates="concept", passive_deletes=True)


class Source(Base):
    """One training-source image of a concept. The same bytes may belong to several concepts."""

    __tablename__ = "sources"
    # AUTOINCREMENT on SQLite: an id is never reused, so a stale vector can never point at a new row.
    __table_args__ = (UniqueConstraint("concept_id", "sha256"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    concept_id: Mapped[int] = mapped_column(ForeignKey("concepts.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(512))
    format: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    concept: Mapped[Concept] = relationship(back_populates="sources")


class IndexBuild(Base):
    """A FAISS index built with one encoder; the latest row describes the live index."""

    __tablename__ = "index_builds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    encoder_id: Mapped[str] = mapped_column(String(128))
    factory: Mapped[str] = mapped_column(String(128))
    dim: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Space(Base):
    """A named search space: the head that maps stored backbone features to its vectors.

    `head_path` is None for the identity head (raw backbone features). The previous head is
    kept so that a roll-out can be rolled back.
    """

    __tablename__ = "spaces"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    backbone: Mapped[str | None] = mapped_column(String(64))  # the backbone's name (migration 0008)
    backbone_id: Mapped[str] = mapped_column(String(128))
    head_id: Mapped[str] = mapped_column(String(128))
    head_path: Mapped[str | None] = mapped_column(String(1024))
    dim: Mapped[int] = mapped_column(Integer)
    factory: Mapped[str] = mapped_column(String(128))
    count: Mapped[int] = mapped_column(Integer, default=0)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    previous_head_id: Mapped[str | None] = mapped_column(String(128))
    previous_head_path: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    """A background job (ingestion or a space build); its state survives restarts."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="ingest")  # ingest|space_build
    state: Mapped[str] = mapped_column(String(16), index=True)  # queued|running|succeeded|failed|interrupted
    total: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    results: Mapped[list] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(255))  # the process running it (index/jobs/processes.py)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Takedown(Base):
    """A takedown, recorded in the same transaction that removes the rows: the intent outlives a
    crash, and the stored features, vectors, images and thumbnails are removed from this record
    (at once, and again by the start-up and periodic sweep until `completed_at` is set)."""

    __tablename__ = "takedowns"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # source | concept
    target: Mapped[str] = mapped_column(String(255))
    source_ids: Mapped[list] = mapped_column(JSON, default=list)
    shas: Mapped[list] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | done
    removed: Mapped[dict] = mapped_column(JSON, default=dict)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Query(Base):
    """An image sent to POST /attribute (or imported): unlabeled training material for the
    encoder, never attribution evidence. Content-addressed and deduplicated."""

    __tablename__ = "queries"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    filename: Mapped[str] = mapped_column(String(512))
    format: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    origin: Mapped[str] = mapped_column(String(16))  # attribute | import
    key_id: Mapped[int | None] = mapped_column(Integer)
    answered_by: Mapped[dict] = mapped_column(JSON, default=dict)  # {space: head id}
    times_seen: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """Only the SHA-256 of a key is stored; the prefix lets people tell keys apart."""

    __tablename__ = "api_keys"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str | None] = mapped_column(String(16))  # admin | reviewer | ingest; None: refused (403)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
