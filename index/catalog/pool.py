"""The query pool: unlabeled synthetic images the service has been asked about (or that were
imported), kept as training material for `attrib train --from-catalog`.

Each image is stored once under ATTRIB_HOME/pool/ by its SHA-256, with a row that records
when it was first and last seen, how often, the key that asked, and the heads that answered.
The pool is never searched for evidence: attribution only ever ranks catalog sources.
Retention drops the oldest first, by count and by age. Removing a query removes its row, its
stored image and its cached training features.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from index.catalog.blobs import BlobStore
from index.db import Query, utcnow
from index.errors import NotFoundError
from index.images import DecodedImage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    max_queries: int  # 0: no count limit
    max_age_days: float  # 0: no age limit


class QueryPool:
    def __init__(self, home: Path, sessions: sessionmaker[Session], retention: Retention,
                 feature_cache: Path | None = None):
        self.blobs = BlobStore(Path(home) / "pool", Path(home) / "pool" / "thumbnails")
        self.sessions, self.retention = sessions, retention
        self.feature_cache = feature_cache or Path(home) / "feature-cache"

    def remember(self, data: bytes, decoded: DecodedImage, filename: str, origin: str,
                 key_id: int | None = None, answered_by: dict | None = None) -> int:
        """Keep one image (once per content); returns its query id."""
        try:
            query_id = self._upsert(data, decoded, filename, origin, key_id, answered_by)
        except IntegrityError:  # the same image arrived twice at once: the other insert won
            query_id = self._upsert(data, decoded, filename, origin, key_id, answered_by)
        self.enforce_retention()
        return query_id

    def _upsert(self, data: bytes, decoded: DecodedImage, filename: str, origin: str,
                key_id: int | None, answered_by: dict | None) -> int:
        with self.sessions.begin() as session:
            seen = {"times_seen": Query.times_seen + 1, "last_seen_at": utcnow()}
            if answered_by:
                seen["answered_by"] = answered_by
            if session.execute(update(Query).where(Query.sha256 == decoded.sha256).values(**seen)).rowcount:
                return session.scalar(select(Query.id).where(Query.sha256 == decoded.sha256))
            self.blobs.put(decoded.sha256, data)
            row = Query(sha256=decoded.sha256, filename=filename[:512], format=decoded.format[:16],
                        width=decoded.width, height=decoded.height, origin=origin, key_id=key_id,
                        answered_by=answered_by or {}, times_seen=1, created_at=utcnow(), last_seen_at=utcnow())
            session.add(row)
            session.flush()
            return row.id

    def enforce_retention(self) -> int:
        """Drop the oldest queries beyond the count limit and those older than the age limit."""
        doomed: list[int] = []
        with self.sessions() as session:
            if self.retention.max_age_days:
                cutoff = utcnow() - timedelta(days=self.retention.max_age_days)
                doomed += session.scalars(select(Query.id).where(Query.created_at < cutoff)).all()
            if self.retention.max_queries:
                excess = (session.scalar(select(func.count(Query.id))) or 0) - self.retention.max_queries
                if excess > 0:
                    doomed += session.scalars(select(Query.id).order_by(Query.created_at, Query.id).limit(excess)).all()
        return self.remove(sorted(set(doomed))) if doomed else 0

    def remove(self, query_ids: list[int]) -> int:
        """Remove queries, their stored images and their cached training features."""
        with self.sessions.begin() as session:
            shas = session.scalars(select(Query.sha256).where(Query.id.in_(query_ids))).all()
            session.execute(delete(Query).where(Query.id.in_(query_ids)))
        for sha in shas:
            self.blobs.delete(sha)
            for cached in self.feature_cache.glob(f"v*/*/*/{sha[:2]}/{sha}.npy"):
                cached.unlink(missing_ok=True)
        return len(shas)

    def remove_one(self, query_id: int) -> None:
        if not self.remove([query_id]):
            raise NotFoundError(f"no query with id {query_id}", code="query_not_found")

    def all_ids(self) -> list[int]:
        with self.sessions() as session:
            return list(session.scalars(select(Query.id)))

    def listing(self, offset: int, limit: int) -> tuple[list[Query], int]:
        with self.sessions() as session:
            total = session.scalar(select(func.count(Query.id))) or 0
            rows = session.scalars(select(Query).order_by(Query.id.desc()).offset(offset).limit(limit)).all()
        return list(rows), total

    def stats(self) -> dict:
        with self.sessions() as session:
            count, seen, first, last = session.execute(
                select(func.count(Query.id), func.sum(Query.times_seen), func.min(Query.created_at),
                       func.max(Query.last_seen_at))).one()
            origins = dict(session.execute(select(Query.origin, func.count(Query.id)).group_by(Query.origin)).all())
        return {"queries": count or 0, "requests": int(seen or 0), "by_origin": origins,
                "first": _iso(first), "last": _iso(last)}

    def image_paths(self) -> list[Path]:
        with self.sessions() as session:
            return [self.blobs.path(sha) for sha in session.scalars(select(Query.sha256).order_by(Query.id))]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
