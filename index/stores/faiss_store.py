"""FAISS stores: one index file per space, ATTRIB_HOME/index/spaces/<name>.faiss, with its
JSON sidecar (index/stores/vectors.py). The default store."""

from __future__ import annotations

import logging
from pathlib import Path

from index.stores.factories import VectorIndexError
from index.stores.refine import remove_files
from index.stores.tuning import DEFAULT_TARGET_RECALL
from index.stores.vectors import VectorIndex, sidecar_path

log = logging.getLogger(__name__)


class FaissStore(VectorIndex):
    """A FAISS index that knows its file: `flush` saves it there (atomically)."""

    path: Path | None = None

    def vectors(self, ids):
        return self.vectors_of(ids)

    def flush(self) -> None:
        if self.path is not None:
            self.save(self.path)


class FaissSpaces:
    def __init__(self, root: Path, factory: str, mmap: bool = False, target_recall: float = DEFAULT_TARGET_RECALL):
        self.root, self.kind, self.mmap, self.target_recall = Path(root), factory, mmap, target_recall

    def path(self, space: str) -> Path:
        return self.root / f"{space}.faiss"

    def open(self, space: str, head_id: str, dim: int) -> FaissStore | None:
        path = self.path(space)
        if not path.exists():
            return None
        try:
            store = FaissStore.load(path, mmap=self.mmap)
        except VectorIndexError as exc:
            log.warning("space %s: %s; rebuilding it from the stored features", space, exc.message)
            return None
        if store.encoder_id != head_id or store.dim != dim:
            log.warning("space %s: the index file was built with head %s, not %s; rebuilding it",
                        space, store.encoder_id, head_id)
            return None
        store.path, store.info.target_recall = path, self.target_recall  # the configured target, for a staged index
        return store

    def new(self, space: str, head_id: str, dim: int, expected: int = 0, kind: str | None = None) -> FaissStore:
        """An empty index of `kind` (a FAISS factory string recorded with the space), else the configured one."""
        factory = kind if kind and not kind.startswith("milvus:") else self.kind
        store = FaissStore(dim, head_id, factory, spool=self.path(space))
        store.info.target_recall = self.target_recall
        return store

    def install(self, space: str, store: FaissStore) -> None:
        store.path = self.path(space)  # the atomic rename replaces the old file
        store.flush()
        remove_files(self.root, store.path.name, keep=store.info.refine)  # a crashed build's leftovers

    def exists(self, space: str) -> bool:
        return self.path(space).exists()

    def drop(self, space: str) -> None:
        self.path(space).unlink(missing_ok=True)
        sidecar_path(self.path(space)).unlink(missing_ok=True)
        remove_files(self.root, self.path(space).name)

    def check(self) -> None:
        """Nothing to reach: the indexes are local files, read when the catalog loads."""

    def close(self) -> None:
        pass
