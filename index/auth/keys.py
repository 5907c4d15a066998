"""API keys: created once (the plain key is shown only then), stored as a SHA-256 hash, each with
a role. Every write to a key is recorded in the audit log with the write."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from index.db import CLI, Actor, ApiKey, record, utcnow
from index.errors import NotFoundError
from training.errors import AttribError

KEY_PREFIX = "attrib_"
# What each role may do: admin everything; reviewer cases and decisions; ingest source writes.
ROLES = ("admin", "reviewer", "ingest")
GRANTS = {"admin": frozenset(ROLES), "reviewer": frozenset({"reviewer"}), "ingest": frozenset({"ingest"})}


class KeyRequestError(AttribError):
    code = "bad_key_request"
    status = 422


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def allows(role: str | None, needed: str) -> bool:
    """Whether a key with `role` may do what `needed` may."""
    return role is not None and needed in GRANTS.get(role, ())


def check_role(role: str) -> str:
    if role not in ROLES:
        raise KeyRequestError(f"unknown role {role!r}: use one of {', '.join(ROLES)}", code="bad_role")
    return role


def key_state(row: ApiKey) -> dict:
    return {"name": row.name, "prefix": row.prefix, "role": row.role,
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None}


def create_key(sessions: sessionmaker[Session], name: str, role: str = "admin",
               actor: Actor = CLI) -> tuple[ApiKey, str]:
    """Returns the stored row and the plain key, which is never stored."""
    check_role(role)
    if name == CLI.name:
        raise KeyRequestError(f"{CLI.name!r} names the command line in the audit log; choose another name",
                              code="reserved_name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with sessions.begin() as session:
        row = ApiKey(name=name, prefix=key[: len(KEY_PREFIX) + 6], key_hash=hash_key(key), role=role)
        session.add(row)
        session.flush()
        record(session, actor, "key.create", "key", row.id, after=key_state(row))
    return row, key


def list_keys(sessions: sessionmaker[Session]) -> list[ApiKey]:
    with sessions() as session:
        return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def _key_row(session: Session, key_id: int) -> ApiKey:
    row = session.get(ApiKey, key_id, with_for_update=True) if 0 < key_id < 2**31 else None
    if row is None:
        raise NotFoundError(f"no API key with id {key_id}", code="key_not_found")
    return row


def revoke_key(sessions: sessionmaker[Session], key_id: int, actor: Actor = CLI) -> ApiKey:
    """Revoke a key (once: revoking it again changes nothing and records nothing)."""
    with sessions.begin() as session:
        row = _key_row(session, key_id)
        if row.revoked_at is None:
            before = key_state(row)
            row.revoked_at = utcnow()
            record(session, actor, "key.revoke", "key", row.id, before=before, after=key_state(row))
        return row


def set_role(sessions: sessionmaker[Session], key_id: int, role: str, actor: Actor = CLI) -> ApiKey:
    check_role(role)
    with sessions.begin() as session:
        row = _key_row(session, key_id)
        if row.role != role:
            before = key_state(row)
            row.role = role
            record(session, actor, "key.role", "key", row.id, before=before, after=key_state(row))
        return row


def authenticate(sessions: sessionmaker[Session], key: str | None) -> Actor | None:
    """The actor behind a valid, unrevoked key (its role may be None), or None."""
    if not key:
        return None
    digest = hash_key(key)
    with sessions() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return Actor(row.id, row.name, row.role)


def verify_key(sessions: sessionmaker[Session], key: str | None) -> bool:
    return authenticate(sessions, key) is not None


def key_id_of(sessions: sessionmaker[Session], key: str | None) -> int | None:
    """The id of a valid, unrevoked key (None for no key or a bad one)."""
    actor = authenticate(sessions, key)
    return actor.key_id if actor else None
