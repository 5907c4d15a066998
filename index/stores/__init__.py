"""Vector stores: where each space's vectors live. `faiss` (files under ATTRIB_HOME, the
default) or `milvus` (a Milvus Lite file or a Milvus server/cluster); see base.py. The FAISS
index itself is here too: vectors.py (the index file and its sidecar), factories.py (index types),
tuning.py (search parameters tuned to a recall target), refine.py (exact re-ranking rows) and
advice.py (which index for N vectors).

Importing this package loads neither FAISS nor pymilvus: the names below that need FAISS load it
on first use (`__getattr__`)."""

from __future__ import annotations

from pathlib import Path

from index.errors import StoreError
from index.stores.advice import advise, format_advice
from index.stores.base import SpaceStores, VectorStore
from index.stores.names import FAISS, MILVUS, STORE_KINDS, check_store_settings, collection_prefix

__all__ = ["DEFAULT_FACTORY", "DEFAULT_TARGET_RECALL", "FAISS", "MILVUS", "STORE_KINDS", "SpaceStores", "StoreError",
           "VectorStore", "advise", "check_store_settings", "format_advice", "open_stores", "sidecar_path"]


def __getattr__(name: str):
    """The names that need FAISS, imported when first asked for."""
    if name in ("DEFAULT_FACTORY", "sidecar_path"):
        from index.stores import vectors

        return getattr(vectors, name)
    if name == "DEFAULT_TARGET_RECALL":
        from index.stores import tuning

        return tuning.DEFAULT_TARGET_RECALL
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
