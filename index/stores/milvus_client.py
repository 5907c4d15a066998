"""Connecting to Milvus, and its errors as StoreErrors with stable codes.

`ATTRIB_MILVUS_URI` is a local file path ending in `.db` (Milvus Lite, started embedded by
pymilvus; one process per file) or `http(s)://host:port` (a Milvus server or cluster).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from index.stores.base import StoreError

INFO_PROPERTY = "attrib.info"
URI_PATTERN = re.compile(r"(https?|tcp|unix)://\S+|[^:]*\.db")
CONNECT_TIMEOUT_S = 10.0


def check_uri(uri: str | None) -> str:
    """A Milvus URI pymilvus accepts: `http(s)://host:port` or a Lite file `*.db` (`bad_milvus_uri`)."""
    uri = (uri or "").strip()
    if not URI_PATTERN.fullmatch(uri) or uri.endswith("://"):
        raise StoreError(f"ATTRIB_MILVUS_URI must be http(s)://host:port (a Milvus server) or a file path ending "
                         f"in .db (Milvus Lite), not {uri!r}", code="bad_milvus_uri", status=500)
    return uri


def connect(uri: str, timeout: float = CONNECT_TIMEOUT_S):
    """A MilvusClient for `uri` (a Lite file's folder is made first); `milvus_unreachable` if it fails."""
    uri = check_uri(uri)
    try:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException
    except ImportError as exc:
        raise StoreError(f"ATTRIB_VECTOR_STORE=milvus needs pymilvus (and milvus-lite for a file URI): "
                         f"pip install 'attrib[milvus]' ({exc})", code="milvus_not_installed", status=500) from exc
    if "://" not in uri:
        Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        return MilvusClient(uri=uri, timeout=timeout)
    except (MilvusException, OSError, RuntimeError) as exc:
        raise StoreError(f"cannot reach Milvus at {uri}: {getattr(exc, 'message', exc)}",
                         code="milvus_unreachable") from exc


@contextmanager
def milvus_errors(doing: str) -> Iterator[None]:
    """Turn a failed Milvus call into StoreError `milvus_error` naming what was being done."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise StoreError(f"Milvus failed {doing}: {exc.message}", code="milvus_error") from exc


def collection_prefix(catalog_key: str) -> str:
    """A Milvus-safe prefix (letters, digits, '_') unique to a catalog."""
    import hashlib

    return "attrib_" + hashlib.sha1(catalog_key.encode()).hexdigest()[:10]


def safe_name(text: str) -> str:
    """Milvus names allow letters, digits and '_': other characters become '_' plus a hash of the
    original, so two space names never meet in one collection name."""
    import hashlib

    clean = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return clean if clean == text else f"{clean}_{hashlib.sha1(text.encode()).hexdigest()[:6]}"
