"""API keys: created once (the plain key is shown only then), stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from index.errors import NotFoundError
from index.models import ApiKey, utcnow

KEY_PREFIX = "attrib_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(sessions: sessionmaker[Session], name: str) -> tuple[ApiKey, str]:
    """Returns the stored row and the plain key, which is never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with sessions.begin() as session:
        row = ApiKey(name=name, prefix=key[: len(KEY_PREFIX) + 6], key_hash=hash_key(key))
        session.add(row)
    return row, key


def list_keys(sessions: sessionmaker[Session]) -> list[ApiKey]:
    with sessions() as session:
        return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_key(sessions: sessionmaker[Session], key_id: int) -> ApiKey:
    with sessions.begin() as session:
        row = session.get(ApiKey, key_id)
        if row is None:
            raise NotFoundError(f"no API key with id {key_id}", code="key_not_found")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return row


def verify_key(sessions: sessionmaker[Session], key: str | None) -> bool:
    if not key:
        return False
    digest = hash_key(key)
    with sessions() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    return row is not None and row.revoked_at is None and hmac.compare_digest(row.key_hash, digest)


def key_id_of(sessions: sessionmaker[Session], key: str | None) -> int | None:
    """The id of a valid, unrevoked key (None for no key or a bad one)."""
    if not key:
        return None
    with sessions() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    return row.id if row is not None and row.revoked_at is None else None
