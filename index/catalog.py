"""The catalog: SQL rows, FAISS vectors and stored blobs of the training sources, kept in step.

Write order: rows and blobs are committed first, then vectors are added and the index saved.
A crash in between leaves rows without vectors; `reconcile` (run whenever the index is loaded)
embeds those from their stored blobs, and drops vectors whose rows are gone. Writers take an
exclusive file lock, and a process notices another's save by the sidecar's mtime and reloads.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from sqlalchemy import delete, func, select

from index.blobs import BlobStore
from index.db import make_engine, session_factory, upgrade_database
from index.images import DEFAULT_MAX_PIXELS, ImageError, decode_image
from index.models import Concept, IndexBuild, Source
from index.vectors import DEFAULT_FACTORY, VectorIndex, build_index, sidecar_path
from training.encoders import Encoder
from training.errors import AttribError

log = logging.getLogger(__name__)
Progress = Callable[[int], None]


class CatalogError(AttribError):
    code = "catalog_error"
    status = 409


class NotFoundError(AttribError):
    code = "not_found"
    status = 404


@dataclass
class CatalogConfig:
    home: Path
    database_url: str
    factory: str = DEFAULT_FACTORY
    max_pixels: int = DEFAULT_MAX_PIXELS
    batch_size: int = 32


@dataclass
class Hit:
    source_id: int
    score: float


class Catalog:
    def __init__(self, config: CatalogConfig, encoder: Encoder, *, migrate: bool = True):
        self.config = config
        self.encoder = encoder
        self.home = Path(config.home)
        self.home.mkdir(parents=True, exist_ok=True)
        if migrate:
            upgrade_database(config.database_url)
        self.engine = make_engine(config.database_url)
        self.sessions = session_factory(self.engine)
        self.blobs = BlobStore.under(self.home)
        self.index_path = self.home / "index" / "vectors.faiss"
        self._index: VectorIndex | None = None
        self._index_stamp: int | None = None
        self._thread_lock = threading.RLock()
        self._lock_depth = 0
        self._unsaved_since: float | None = None
        self._lock_handle = None

    def close(self) -> None:
        self.engine.dispose()

    # -- locking and loading -------------------------------------------------------------

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Exclusive across threads and processes that share ATTRIB_HOME; re-entrant."""
        with self._thread_lock:
            if self._lock_depth == 0:
                self._lock_handle = open(self.home / "catalog.lock", "a+")
                fcntl.flock(self._lock_handle, fcntl.LOCK_EX)
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
                    self._lock_handle.close()

    def _stamp(self) -> int | None:
        try:
            return os.stat(sidecar_path(self.index_path)).st_mtime_ns
        except FileNotFoundError:
            return None

    @property
    def vectors(self) -> VectorIndex:
        """The live index, loaded (and checked against the encoder) on first use or after another
        process saved it."""
        with self._thread_lock:
            if self._index is None or self._stamp() != self._index_stamp:
                with self.write_lock():
                    self._load_index()
            return self._index

    def _load_index(self) -> None:
        if self.index_path.exists():
            index = VectorIndex.load(self.index_path)
            self._check_encoder(index)
            if index.info.factory != self.config.factory:
                log.warning("the index is %r, not the configured %r; `attrib reindex` rebuilds it",
                            index.info.factory, self.config.factory)
        else:
            index = VectorIndex(self.encoder.dim, self.encoder.encoder_id, self.config.factory)
            self._record_build(index)
        self._index = index
        self.reconcile()
        self._index_stamp = self._stamp()

    def _check_encoder(self, index: VectorIndex) -> None:
        if index.encoder_id != self.encoder.encoder_id:
            raise CatalogError(
                f"the vector index in {self.home} was built with encoder {index.encoder_id}, but the "
                f"configured encoder is {self.encoder.encoder_id}. Run `attrib reindex` to re-embed "
                "every stored source with the configured encoder, or set ATTRIB_ENCODER back.",
                code="encoder_mismatch",
            )

    def reconcile(self) -> None:
        """Drop vectors without rows and embed rows without vectors."""
        with self.sessions() as session:
            row_ids = np.array(session.scalars(select(Source.id)).all(), dtype=np.int64)
        vector_ids = self._index.ids()
        orphans = np.setdiff1d(vector_ids, row_ids)
        missing = np.setdiff1d(row_ids, vector_ids)
        if len(orphans):
            self._index.remove(orphans)
        if len(missing):
            log.warning("embedding %d sources that have no vector yet", len(missing))
            ids, vectors = self._embed_stored(missing.tolist())
            self._index.add(ids, vectors)
        if len(orphans) or len(missing) or not self.index_path.exists():
            self._save()

    def add_vectors(self, ids: list[int], vectors: np.ndarray) -> None:
        """Add vectors under the write lock; they reach disk at the next `flush`."""
        with self.write_lock():
            self.vectors.add(ids, vectors)
            self._unsaved_since = self._unsaved_since or time.monotonic()

    def flush(self, max_age: float = 0.0) -> None:
        """Save unsaved vectors, if any are older than `max_age` seconds."""
        with self.write_lock():
            if self._unsaved_since is not None and time.monotonic() - self._unsaved_since >= max_age:
                self._save()

    def _save(self) -> None:
        self._unsaved_since = None
        self._index.save(self.index_path)
        self._index_stamp = self._stamp()
        with self.sessions.begin() as session:
            build = session.scalars(select(IndexBuild).order_by(IndexBuild.id.desc()).limit(1)).first()
            if build is not None and build.encoder_id == self._index.encoder_id:
                build.count = len(self._index)

    def _record_build(self, index: VectorIndex) -> None:
        with self.sessions.begin() as session:
            session.add(IndexBuild(encoder_id=index.encoder_id, factory=index.info.factory, dim=index.dim, count=len(index)))

    # -- embedding stored sources ----------------------------------------------------------

    def _embed_stored(self, source_ids: list[int], progress: Progress | None = None) -> tuple[list[int], np.ndarray]:
        """Re-embed sources from their stored blobs, in batches. Unreadable blobs are skipped."""
        ids, chunks = [], []
        batch = self.config.batch_size
        for start in range(0, len(source_ids), batch):
            chunk = source_ids[start : start + batch]
            with self.sessions() as session:
                rows = session.execute(select(Source.id, Source.sha256).where(Source.id.in_(chunk))).all()
            images = []
            for source_id, sha in rows:
                try:
                    images.append(decode_image(self.blobs.read(sha), max_pixels=2**62).image)
                    ids.append(source_id)
                except (OSError, ImageError) as exc:
                    log.error("source %d: stored image %s cannot be read (%s); it stays unsearchable", source_id, sha, exc)
            chunks.append(self.encoder.embed_images(images, batch))
            if progress:
                progress(len(chunk))
        vectors = np.concatenate(chunks) if chunks else np.zeros((0, self.encoder.dim), np.float32)
        return ids, vectors

    def reindex(self, progress: Progress | None = None) -> VectorIndex:
        """Re-embed every stored source with the configured encoder and replace the index."""
        with self.write_lock():
            with self.sessions() as session:
                source_ids = session.scalars(select(Source.id).order_by(Source.id)).all()
            ids, vectors = self._embed_stored(list(source_ids), progress)
            if len(ids):
                index = build_index(ids, vectors, self.encoder.encoder_id, self.config.factory)
            else:
                index = VectorIndex(self.encoder.dim, self.encoder.encoder_id, self.config.factory)
            self._record_build(index)
            self._index = index
            self._save()
            return index

    # -- search and removal ----------------------------------------------------------------

    def count(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count(Source.id))) or 0

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """Nearest sources to one query vector, best first."""
        index = self.vectors
        with self._thread_lock:
            scores, ids = index.search(np.asarray(vector, np.float32).reshape(1, -1), k)
        # unit vectors: clip float rounding so scores stay cosine similarities in [-1, 1]
        return [Hit(int(i), min(1.0, max(-1.0, float(s)))) for s, i in zip(scores[0], ids[0]) if i >= 0]

    def remove_sources(self, source_ids: list[int]) -> int:
        """Delete rows, vectors and (when no other row uses them) blobs. Returns rows deleted."""
        with self.write_lock():
            index = self.vectors
            with self.sessions.begin() as session:
                shas = session.scalars(select(Source.sha256).where(Source.id.in_(source_ids))).all()
                deleted = session.execute(delete(Source).where(Source.id.in_(source_ids))).rowcount
            index.remove(source_ids)
            self._save()
            self.delete_unreferenced_blobs(set(shas))
        return deleted

    def delete_unreferenced_blobs(self, shas: set[str]) -> None:
        if not shas:
            return
        with self.sessions() as session:
            still_used = set(session.scalars(select(Source.sha256).where(Source.sha256.in_(shas))).all())
        for sha in shas - still_used:
            self.blobs.delete(sha)

    def remove_concept(self, name: str) -> int:
        """Delete a concept with all its sources. Returns the number of sources deleted."""
        with self.write_lock():
            with self.sessions() as session:
                concept_id = session.scalar(select(Concept.id).where(Concept.name == name))
                if concept_id is None:
                    raise NotFoundError(f"no concept named {name!r}", code="concept_not_found")
                source_ids = session.scalars(select(Source.id).where(Source.concept_id == concept_id)).all()
            removed = self.remove_sources(list(source_ids))
            with self.sessions.begin() as session:
                session.execute(delete(Concept).where(Concept.id == concept_id))
        return removed
