"""What the catalog needs of a vector store, whichever holds the vectors (FAISS files, Milvus).

A `VectorStore` is one space's vectors under one head: ids are source row ids, vectors are
unit length (inner product is cosine similarity). `SpaceStores` holds every space's store of
one catalog: it opens the live one, makes a new one aside for a head build, puts a built one
live (the old one is dropped), and drops a space. Nothing above `index/stores` knows which
implementation is in use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from index.errors import StoreError  # noqa: F401 - re-exported
from index.stores.names import FAISS, MILVUS, STORE_KINDS  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from index.stores.vectors import IndexInfo


class VectorStore(Protocol):
    info: IndexInfo  # the head (encoder) id, the index type, dimension, count and tuned search params

    @property
    def dim(self) -> int: ...

    @property
    def encoder_id(self) -> str: ...

    def __len__(self) -> int: ...

    def ids(self) -> np.ndarray:
        """Every stored id (int64)."""

    def add(self, ids, vectors) -> None:
        """Add (or replace) vectors by id."""

    def search(self, vectors, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n, min(k, len)); an empty slot has id -1."""

    def remove(self, ids) -> int:
        """Remove ids (absent ones are ignored); returns how many were removed, once confirmed."""

    def vectors(self, ids) -> np.ndarray:
        """The stored vectors of these ids, in their order."""

    def tune(self, vectors, ids, target: float) -> None:
        """Pick the cheapest search setting that reaches `target` recall@10 on these vectors."""

    def flush(self) -> None:
        """Make every write so far durable."""


class SpaceStores(Protocol):
    kind: str  # the index type new stores get, recorded with each space (a FAISS factory, a Milvus index)

    def open(self, space: str, head_id: str, dim: int) -> VectorStore | None:
        """The live store of `space`, or None when it is missing, unreadable or of another head."""

    def new(self, space: str, head_id: str, dim: int, expected: int = 0, kind: str | None = None) -> VectorStore:
        """An empty store for a head build, beside the live one (`expected` vectors will come), of
        index type `kind` (as recorded with the space) where this store can make it, else `self.kind`."""

    def install(self, space: str, store: VectorStore) -> None:
        """Make a built store the live one of `space` (durably), then drop the one it replaces."""

    def exists(self, space: str) -> bool:
        """Whether `space` has a live store."""

    def drop(self, space: str) -> None: ...

    def check(self) -> None:
        """Raise StoreError when the store cannot answer now (readiness)."""

    def close(self) -> None: ...
