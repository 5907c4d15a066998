"""Store settings checked at settings load, without importing FAISS or pymilvus: the store
kinds, Milvus index types and URIs, and Milvus-safe collection names."""

from __future__ import annotations

import hashlib
import re

from index.errors import StoreError

FAISS, MILVUS = "faiss", "milvus"
STORE_KINDS = (FAISS, MILVUS)
MILVUS_INDEX_TYPES = ("HNSW", "IVF_FLAT", "FLAT")
URI_PATTERN = re.compile(r"(https?|tcp|unix)://[^\s/]+\S*|[^:]*\.db")
PREFIX_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def check_store_settings(kind: str, uri: str | None, index_type: str, prefix: str | None) -> None:
    """Refuse a store setting that cannot work, before anything opens (stable codes)."""
    if kind.lower() not in STORE_KINDS:
        raise StoreError(f"ATTRIB_VECTOR_STORE must be one of {', '.join(STORE_KINDS)}, not {kind!r}",
                         code="bad_vector_store", status=500)
    if index_type.upper() not in MILVUS_INDEX_TYPES:
        raise StoreError(f"ATTRIB_MILVUS_INDEX must be one of {', '.join(MILVUS_INDEX_TYPES)}, not {index_type!r}",
                         code="bad_milvus_index", status=500)
    if prefix is not None and not PREFIX_PATTERN.fullmatch(prefix):
        raise StoreError(f"ATTRIB_MILVUS_PREFIX must be 1-64 letters, digits or '_', starting with a letter or '_', "
                         f"not {prefix!r}", code="bad_milvus_prefix", status=500)
    if kind.lower() == MILVUS:
        check_uri(uri)


def check_uri(uri: str | None) -> str:
    """A Milvus URI pymilvus accepts: `http(s)://host:port` or a Lite file `*.db` (`bad_milvus_uri`)."""
    uri = (uri or "").strip()
    if not URI_PATTERN.fullmatch(uri):
        raise StoreError(f"ATTRIB_MILVUS_URI must be http(s)://host:port (a Milvus server or cluster) or a file "
                         f"path ending in .db (Milvus Lite), not {uri!r}", code="bad_milvus_uri", status=500)
    return uri


def collection_prefix(catalog_key: str) -> str:
    """A Milvus-safe prefix (letters, digits, '_') unique to a catalog."""
    return "attrib_" + hashlib.sha1(catalog_key.encode()).hexdigest()[:10]


def safe_name(text: str) -> str:
    """Milvus names allow letters, digits and '_': other characters become '_' plus a hash of the
    original, so two space names never meet in one collection name."""
    clean = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return clean if clean == text else f"{clean}_{hashlib.sha1(text.encode()).hexdigest()[:6]}"
