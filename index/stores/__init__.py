"""Vector stores: where each space's vectors live. `faiss` (files under ATTRIB_HOME, the
default) or `milvus` (a Milvus Lite file or a Milvus server/cluster); see base.py. Importing
this package loads neither FAISS nor pymilvus."""

from __future__ import annotations

from pathlib import Path

from index.errors import StoreError
from index.stores.base import SpaceStores, VectorStore
from index.stores.names import FAISS, MILVUS, STORE_KINDS, check_store_settings, collection_prefix

__all__ = ["FAISS", "MILVUS", "STORE_KINDS", "SpaceStores", "StoreError", "VectorStore", "open_stores"]


def open_stores(kind: str, home: Path, factory: str, *, mmap: bool = False, target_recall: float = 0.95,
                milvus_uri: str | None = None, milvus_index: str = "HNSW", prefix: str | None = None,
                catalog_key: str = "") -> SpaceStores:
    """The stores of one catalog; Milvus collections get `prefix`, or one derived from `catalog_key`
    (the database URL), so two catalogs on one Milvus never share a collection."""
    check_store_settings(kind, milvus_uri, milvus_index, prefix)
    if kind == FAISS:
        from index.stores.faiss_store import FaissSpaces

        return FaissSpaces(Path(home) / "index" / "spaces", factory, mmap, target_recall)
    from index.stores.milvus_spaces import MilvusSpaces

    return MilvusSpaces(milvus_uri or "", milvus_index, prefix or collection_prefix(catalog_key))
