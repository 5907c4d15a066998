"""Vector stores: where each space's vectors live. `faiss` (files under ATTRIB_HOME, the
default) or `milvus` (a Milvus Lite file or a Milvus server/cluster); see base.py."""

from __future__ import annotations

from pathlib import Path

from index.stores.base import (
    FAISS,
    MILVUS,
    STORE_KINDS,
    SpaceStores,
    StoreError,
    VectorStore,
)

__all__ = ["FAISS", "MILVUS", "STORE_KINDS", "SpaceStores", "StoreError", "VectorStore", "open_stores"]


def open_stores(kind: str, home: Path, factory: str, *, mmap: bool = False, milvus_uri: str | None = None,
                milvus_index: str = "HNSW", prefix: str | None = None, catalog_key: str = "") -> SpaceStores:
    """The stores of one catalog; Milvus collections get `prefix`, or one derived from `catalog_key`
    (the database URL), so two catalogs on one Milvus never share a collection."""
    if kind == FAISS:
        from index.stores.faiss_store import FaissSpaces

        return FaissSpaces(Path(home) / "index" / "spaces", factory, mmap)
    if kind == MILVUS:
        from index.stores.milvus_client import collection_prefix
        from index.stores.milvus_spaces import MilvusSpaces

        return MilvusSpaces(milvus_uri or "", milvus_index, prefix or collection_prefix(catalog_key))
    raise StoreError(f"ATTRIB_VECTOR_STORE must be one of {', '.join(STORE_KINDS)}, not {kind!r}",
                     code="bad_config", status=500)
