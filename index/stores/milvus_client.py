"""Connecting to Milvus, and its errors as StoreErrors with stable codes.

`ATTRIB_MILVUS_URI` is a local file path ending in `.db` (Milvus Lite, started embedded by
pymilvus; one process per file) or `http(s)://host:port` (a Milvus server or cluster).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from index.errors import StoreError
from index.stores.names import check_uri

log = logging.getLogger(__name__)
INFO_PROPERTY = "attrib.info"
CONNECT_TIMEOUT_S = 10.0
CONNECT_ATTEMPTS = 3  # for a server that refuses fast; an unreachable one fails after one timeout


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
    for attempt in range(CONNECT_ATTEMPTS):
        started = time.monotonic()
        try:
            return MilvusClient(uri=uri, timeout=timeout)
        except (MilvusException, OSError, RuntimeError) as exc:
            # A server that answers and turns the connection away (gRPC GOAWAY "too_many_pings" from
            # Milvus Lite under load) fails fast and is tried again; one that never answers used up
            # the whole timeout and is not.
            refused_fast = time.monotonic() - started < timeout / 2
            if not refused_fast or attempt == CONNECT_ATTEMPTS - 1:
                raise StoreError(f"cannot reach Milvus at {uri}: {getattr(exc, 'message', exc)}",
                                 code="milvus_unreachable") from exc
            log.warning("Milvus at %s turned the connection away (%s); trying again", uri, getattr(exc, "message", exc))
            time.sleep(0.25 * (attempt + 1))
    raise AssertionError("unreachable")


@contextmanager
def milvus_errors(doing: str) -> Iterator[None]:
    """Turn a failed Milvus call into StoreError `milvus_error` naming what was being done."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise StoreError(f"Milvus failed {doing}: {exc.message}", code="milvus_error") from exc
