"""The catalog's core: SQL rows, stored backbone features, per-space vectors and blobs, in step.

Vectors live in a vector store (index/stores: FAISS files by default, or Milvus); this module
and those above it only use the store's interface.

Write order: rows and blobs are committed first, then the backbone features are written (a
durable segment per chunk), then every space's head maps them to vectors, and the space
stores are flushed (at most once a minute during a long ingest, and at its end).
`Catalog` (catalog.py) loads the core: `reconcile.py` (run whenever the catalog loads) repairs
a crash at any point, and `space_admin.open_spaces` opens every space. Both work on this core,
which is why the load is not here.

Writers take an exclusive file lock. Readers never wait for a head build: a new space index
is built aside and swapped in whole. A process notices another's writes through the
`index/generation` stamp (rewritten, under the lock, by every write and by a load that repaired
something) and reloads; a load that changed nothing leaves the stamp alone.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from index.catalog.backbones import FeatureBackbone
from index.catalog.blobs import BlobStore
from index.catalog.calibration_store import CalibrationStore
from index.catalog.features import FeatureStore
from index.catalog.locks import CatalogLocks
from index.catalog.spaces import LiveSpace, SpaceError, update_count
from index.db import Case, Source, make_engine, session_factory, upgrade_database
from index.images import DEFAULT_MAX_PIXELS
from index.stores import DEFAULT_FACTORY, FAISS, open_stores
from training.encoders import Encoder

log = logging.getLogger(__name__)


@dataclass
class CatalogConfig:
    home: Path
    database_url: str
    factory: str = DEFAULT_FACTORY
    max_pixels: int = DEFAULT_MAX_PIXELS
    batch_size: int = 32
    decode_workers: int = 0  # ingestion decodes in this many threads (index/ingest/prepare.py)
    device_decode: str = "auto"  # JPEGs decoded on the device: on | off | auto (on with CUDA)
    target_recall: float = 0.95  # approximate indexes are tuned to this recall@10 when built
    mmap_index: bool = False  # map IVF indexes' lists from disk instead of reading them into memory
    vector_store: str = FAISS  # "faiss" (files under home) or "milvus"
    milvus_uri: str | None = None  # a Milvus Lite file (*.db) or http(s)://host:port
    milvus_index: str = "HNSW"  # HNSW, IVF_FLAT or FLAT
    milvus_prefix: str | None = None  # collection name prefix; derived from database_url when unset
    sync_embed_limit: int = 256  # a load embeds at most this many missing rows of a second backbone


@dataclass
class Hit:
    source_id: int
    score: float


class CatalogCore(CatalogLocks):
    """What the catalog holds and how it writes; `Catalog` (catalog.py) adds how it loads."""

    def __init__(self, config: CatalogConfig, encoder: Encoder, *, copy: FeatureBackbone | None = None,
                 copy_problem: str | None = None, migrate: bool = True):
        self.config = config
        self.encoder = encoder
        self.copy, self.copy_problem = copy, copy_problem  # the copy backbone, or why there is none
        self.backbones: dict[str, FeatureBackbone] = {encoder.backbone_id: encoder}
        if copy is not None:
            self.backbones[copy.backbone_id] = copy
        super().__init__(Path(config.home))
        # the vector store first: a misconfigured or unreachable store fails before anything changes
        self.stores = open_stores(config.vector_store, self.home, config.factory, mmap=config.mmap_index,
                                  target_recall=config.target_recall, milvus_uri=config.milvus_uri,
                                  milvus_index=config.milvus_index, prefix=config.milvus_prefix,
                                  catalog_key=config.database_url)
        self.backbone_id, self.feature_dim = encoder.backbone_id, encoder.feature_dim
        self._features: dict[str, FeatureStore] = {}  # backbone id -> its stored features
        self.pending: dict[str, int] = {}  # backbone id -> sources still to embed (a catch-up's work)
        self.reconcile_on_load = True  # False: load as found, for `attrib verify` to see what is wrong
        self._spaces: dict[str, LiveSpace] = {}
        self._index_lock = threading.Lock()  # a store's add/remove must not run beside a search
        self._unsaved: set[str] = set()
        self._unsaved_since: float | None = None
        if migrate:
            with self.write_lock():  # several worker processes may start at once on a fresh database
                upgrade_database(config.database_url)
        self.engine = make_engine(config.database_url)
        self.sessions = session_factory(self.engine)
        self.blobs = BlobStore.under(self.home)
        self.calibrations = CalibrationStore(self.home)  # per head id, beside the kept heads

    def close(self) -> None:
        self.stores.close()
        self.engine.dispose()

    # -- loading -------------------------------------------------------------------------------

    def space_path(self, name: str) -> Path:
        """Where the FAISS store keeps a space's index file."""
        return self.home / "index" / "spaces" / f"{name}.faiss"

    def spaces(self) -> dict[str, LiveSpace]:
        """The live spaces, loaded on first use and reloaded after another process wrote."""
        if not self._features or self._stamp() != self._loaded_stamp:
            with self.maintenance():  # a nested call while loading (same thread) sees the partial state
                if self._loading == 1 and (not self._features or self._stamp() != self._loaded_stamp):
                    self._load()
        return self._spaces

    @property
    def features(self) -> FeatureStore:
        """The encoder's stored features (loaded, and reconciled with the rows, on first use)."""
        return self.features_of(self.backbone_id)

    def features_of(self, backbone_id: str) -> FeatureStore:
        """A backbone's stored features."""
        self.spaces()
        return self._features[backbone_id]

    def feature_stores(self) -> dict[str, FeatureStore]:
        self.spaces()
        return self._features

    def backbone_of(self, space: LiveSpace) -> FeatureBackbone:
        return self.backbones[space.info.backbone_id]

    def use_features(self, store: FeatureStore | None) -> None:
        """Replace a backbone's feature store (reindex); None makes the next use reload everything."""
        self._features = {} if store is None else {**self._features, store.backbone_id: store}

    def _load(self) -> None:
        """Load the stored features and every space, repairing what a crash left: `Catalog._load`."""
        raise NotImplementedError

    # -- reconcile ----------------------------------------------------------------------------

    def row_ids(self) -> np.ndarray:
        """Every source row's id (a Core query: ORM rows cost about twice as much at 100k)."""
        with self.sessions() as session:
            return np.fromiter(session.connection().execute(select(Source.__table__.c.id)).scalars(), np.int64)

    # -- adding -------------------------------------------------------------------------------

    def add_features(self, ids: list[int], features: dict[str, np.ndarray]) -> None:
        """Store new sources' features (by backbone id) durably, then add the vectors of every space
        on those backbones (saved at `flush`)."""
        with self.write_lock():
            spaces = self.spaces()
            stored = {bid: self._features[bid].add(ids, rows)  # float16: what a later re-heading sees too
                      for bid, rows in features.items() if bid in self._features}
            for name, space in spaces.items():
                if space.info.backbone_id not in stored:
                    continue
                vectors = space.head.apply(stored[space.info.backbone_id])
                with self._index_lock:
                    space.index.add(ids, vectors)
                self._unsaved.add(name)
            self._unsaved_since = self._unsaved_since or time.monotonic()

    def flush(self, max_age: float = 0.0) -> None:
        """Flush unsaved space stores, if any are older than `max_age` seconds."""
        with self.write_lock():
            if self._unsaved_since is not None and time.monotonic() - self._unsaved_since >= max_age:
                for name in sorted(self._unsaved):
                    self.save_space(name)
                self._touch()

    def save_space(self, name: str) -> None:
        space = self._spaces[name]
        with self._index_lock:
            space.index.flush()
        update_count(self.sessions, name, len(space.index))
        self._unsaved.discard(name)
        if not self._unsaved:
            self._unsaved_since = None

    # -- search and removal ------------------------------------------------------------------

    def count(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count(Source.id))) or 0

    def search(self, space: LiveSpace, vector: np.ndarray, k: int) -> list[Hit]:
        """Nearest sources to one query vector in one space, best first."""
        with self._index_lock:
            scores, ids = space.index.search(np.asarray(vector, np.float32).reshape(1, -1), k)
        # unit vectors: clip float rounding so scores stay cosine similarities in [-1, 1]
        return [Hit(int(i), min(1.0, max(-1.0, float(s)))) for s, i in zip(scores[0], ids[0]) if i >= 0]

    def forget(self, source_ids: list[int]) -> dict:
        """Remove sources' stored features and every space's vectors (their rows are already
        gone). Idempotent; returns what was removed."""
        removed = {"features": 0, "vectors": {}}
        with self.write_lock():
            spaces = self.spaces()
            removed["features"] = self.features.remove(source_ids)
            for bid, store in self._features.items():
                if bid != self.backbone_id:
                    store.remove(source_ids)
            for name, space in spaces.items():
                with self._index_lock:
                    removed["vectors"][name] = space.index.remove(source_ids)
                self.save_space(name)
            self._touch()
        return removed

    def delete_unreferenced_blobs(self, shas: set[str]) -> dict:
        """Delete stored images (and thumbnails) that no source or case uses any more."""
        if not shas:
            return {"images": 0, "images_kept_in_use": 0}
        with self.sessions() as session:
            still_used = set(session.scalars(select(Source.sha256).where(Source.sha256.in_(shas))).all())
            still_used |= set(session.scalars(select(Case.sha256).where(Case.sha256.in_(shas))).all())
        for sha in shas - still_used:
            self.blobs.delete(sha)
        return {"images": len(shas - still_used), "images_kept_in_use": len(shas & still_used)}

    def live_space(self, name: str) -> LiveSpace:
        space = self.spaces().get(name)
        if space is None:
            raise SpaceError(f"no space named {name!r}", code="space_not_found", status=404)
        return space

    def install_space(self, name: str, space: LiveSpace) -> None:
        """Swap a freshly built space in: requests already running finish on the old one."""
        self._spaces = {**self._spaces, name: space}
        self._unsaved.discard(name)
        self._touch()

    def drop_space(self, name: str) -> None:
        self._spaces = {k: v for k, v in self._spaces.items() if k != name}
        self.stores.drop(name)
        self._touch()
