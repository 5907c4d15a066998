"""Models of the review desk: cases, their decisions and re-scorings, and the audit log.

Decisions, re-scorings and audit entries are append-only: no code path updates or deletes them.
A case's `status` is the latest decision's verdict (kept on the row, with the headline of its
newest answer, so that list filters are plain SQL).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from index.db.base import Base, UTCDateTime, utcnow


class Case(Base):
    """A query image kept for review, with the attribution answer it got (the newest, after a rescore)."""

    __tablename__ = "cases"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # open | match | no_match | escalated
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # the query image in the blob store
    filename: Mapped[str] = mapped_column(String(512))
    format: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[int | None] = mapped_column(Integer)
    key_name: Mapped[str] = mapped_column(String(255))
    params: Mapped[dict] = mapped_column(JSON, default=dict)  # k, space, sources: what a rescore repeats
    backbone_id: Mapped[str] = mapped_column(String(128))
    head_ids: Mapped[dict] = mapped_column(JSON, default=dict)  # {space: head id}
    answer: Mapped[dict] = mapped_column(JSON)
    top_concept: Mapped[str | None] = mapped_column(String(255), index=True)
    confidence: Mapped[float | None] = mapped_column(Float)
    none_probability: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class CaseDecision(Base):
    """A reviewer's verdict on a case. A later one supersedes it; none is ever changed or removed."""

    __tablename__ = "case_decisions"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    decision: Mapped[str] = mapped_column(String(16), index=True)  # match | no_match | escalate
    concepts: Mapped[list] = mapped_column(JSON, default=list)
    source_ids: Mapped[list] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    key_id: Mapped[int | None] = mapped_column(Integer, index=True)
    key_name: Mapped[str] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CaseRescore(Base):
    """A case re-attributed with the heads live at the time, beside the answer it had before."""

    __tablename__ = "case_rescores"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[int | None] = mapped_column(Integer)
    key_name: Mapped[str] = mapped_column(String(255))
    previous_answer: Mapped[dict] = mapped_column(JSON)
    answer: Mapped[dict] = mapped_column(JSON)
    backbone_id: Mapped[str] = mapped_column(String(128))
    head_ids: Mapped[dict] = mapped_column(JSON, default=dict)
    changed: Mapped[bool] = mapped_column(Boolean)
    changes: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(Base):
    """Who wrote what, when: one row per write to cases, decisions, sources, concepts and keys."""

    __tablename__ = "audit_log"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    key_id: Mapped[int | None] = mapped_column(Integer, index=True)
    key_name: Mapped[str] = mapped_column(String(255), index=True)
    action: Mapped[str] = mapped_column(String(32), index=True)
    target_type: Mapped[str] = mapped_column(String(32), index=True)
    target_id: Mapped[str | None] = mapped_column(String(255), index=True)
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
