"""The audit log: who wrote what, when, with the state before and after where it applies.

`record` adds an entry to the caller's session, so the entry commits (or rolls back) with the
write it describes. Entries are never updated or deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from index.db.models_desk import AuditEntry


@dataclass(frozen=True)
class Actor:
    """Who is writing: an API key (its id, name and role) or the command line."""

    key_id: int | None
    name: str
    role: str | None = None


CLI = Actor(None, "cli", "admin")


def record(session: Session, actor: Actor, action: str, target_type: str, target_id: object = None,
           before: dict | None = None, after: dict | None = None) -> AuditEntry:
    entry = AuditEntry(**_columns(actor, action, target_type, target_id, before, after))
    session.add(entry)
    return entry


def record_many(session: Session, actor: Actor, action: str, target_type: str,
                entries: list[tuple[object, dict | None]]) -> None:
    """One entry per (target id, after) in one bulk INSERT: what ingestion writes per batch."""
    if entries:
        session.execute(insert(AuditEntry), [_columns(actor, action, target_type, target_id, None, after)
                                             for target_id, after in entries])


def _columns(actor: Actor, action: str, target_type: str, target_id: object, before: dict | None,
             after: dict | None) -> dict:
    return {"key_id": actor.key_id, "key_name": actor.name[:255], "action": action, "target_type": target_type,
            "target_id": None if target_id is None else str(target_id)[:255], "before": before, "after": after}


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None  # a key id (digits) or a key name ("cli" for the command line)
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_audit(sessions: sessionmaker[Session], where: AuditFilter, offset: int,
               limit: int) -> tuple[list[AuditEntry], int]:
    """Entries matching every given filter, newest first, and how many match in all."""
    conditions = []
    if where.actor is not None:
        by_name = AuditEntry.key_name == where.actor
        conditions.append(by_name | (AuditEntry.key_id == int(where.actor)) if _is_id(where.actor) else by_name)
    for column, value in ((AuditEntry.action, where.action), (AuditEntry.target_type, where.target_type),
                          (AuditEntry.target_id, where.target_id)):
        if value is not None:
            conditions.append(column == value)
    if where.since is not None:
        conditions.append(AuditEntry.at >= where.since)
    if where.until is not None:
        conditions.append(AuditEntry.at <= where.until)
    with sessions() as session:
        total = session.scalar(select(func.count(AuditEntry.id)).where(*conditions)) or 0
        rows = session.scalars(select(AuditEntry).where(*conditions).order_by(AuditEntry.id.desc())
                               .offset(offset).limit(limit)).all()
    return list(rows), total


def _is_id(value: str) -> bool:
    return value.isascii() and value.isdigit() and 0 < int(value) < 2**31
