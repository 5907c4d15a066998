"""Every space's Milvus collection of one catalog (see index/stores/milvus_store.py)."""

from __future__ import annotations

import json
import logging
import math
import re
import uuid

from index.errors import StoreError
from index.stores.milvus_client import INFO_PROPERTY, connect, milvus_errors
from index.stores.milvus_store import STRONG, MilvusStore
from index.stores.names import MILVUS_INDEX_TYPES, safe_name
from index.stores.vectors import IndexInfo

log = logging.getLogger(__name__)
HNSW_BUILD = {"M": 32, "efConstruction": 128}


class MilvusSpaces:
    def __init__(self, uri: str, index_type: str, prefix: str, client=None):
        self.uri, self.index_type, self.prefix = uri, index_type, safe_name(prefix)
        self.kind = f"milvus:{index_type}"
        self.client = client or connect(uri)

    def alias(self, space: str) -> str:
        return f"{self.prefix}_{safe_name(space)}"

    def _live(self, space: str) -> str | None:
        """The collection the space's alias points at (None: no alias yet)."""
        alias = self.alias(space)
        with milvus_errors(f"reading the alias {alias}"):
            if alias not in self.client.list_aliases().get("aliases", []):
                return None
            return self.client.describe_alias(alias)["collection_name"]

    def _collections(self, space: str) -> list[str]:
        pattern = re.compile(re.escape(self.alias(space)) + r"__g[0-9a-f]{12}")
        with milvus_errors("listing collections"):
            return [name for name in self.client.list_collections() if pattern.fullmatch(name)]

    def open(self, space: str, head_id: str, dim: int) -> MilvusStore | None:
        collection = self._live(space)
        if collection is None:
            return None
        with milvus_errors(f"opening {collection}"):
            properties = self.client.describe_collection(collection).get("properties", {})
            self.client.load_collection(collection)
        try:
            info = IndexInfo(**json.loads(properties[INFO_PROPERTY]), count=0)
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("space %s: collection %s has no readable record (%s); rebuilding it", space, collection, exc)
            return None
        if info.encoder_id != head_id or info.dim != dim:
            log.warning("space %s: collection %s holds head %s, not %s; rebuilding it", space, collection,
                        info.encoder_id, head_id)
            return None
        return MilvusStore(self.client, collection, info)

    def new(self, space: str, head_id: str, dim: int, expected: int = 0, kind: str | None = None) -> MilvusStore:
        """A new collection beside the live one; leftovers (the collection a previous build
        replaced, or one a crash cut) are dropped first."""
        from pymilvus import DataType, MilvusClient

        live = self._live(space)
        for old in self._collections(space):
            if old != live:
                self._drop_collection(old)
        name = f"{self.alias(space)}__g{uuid.uuid4().hex[:12]}"
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index_type = kind.split(":", 1)[1] if kind and kind.startswith("milvus:") else self.index_type
        index_type = index_type if index_type in MILVUS_INDEX_TYPES else self.index_type
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type=index_type, metric_type="IP",
                        params=self._build_params(index_type, expected))
        with milvus_errors(f"creating {name}"):
            self.client.create_collection(name, schema=schema, index_params=index, consistency_level=STRONG)
        store = MilvusStore(self.client, name, IndexInfo(head_id, f"milvus:{index_type}", dim, 0))
        store.save_info()
        return store

    @staticmethod
    def _build_params(index_type: str, expected: int) -> dict:
        if index_type == "HNSW":
            return dict(HNSW_BUILD)
        if index_type == "IVF_FLAT":
            return {"nlist": min(65536, max(64, int(4 * math.sqrt(max(expected, 1)))))}
        return {}

    def install(self, space: str, store: MilvusStore) -> None:
        store.flush(wait_for_index=True)
        alias, live = self.alias(space), self._live(space)
        with milvus_errors(f"putting {store.collection} live as {alias}"):
            if live is None:
                self.client.create_alias(store.collection, alias)
            elif live != store.collection:
                self.client.alter_alias(store.collection, alias)

    def exists(self, space: str) -> bool:
        return self._live(space) is not None

    def drop(self, space: str) -> None:
        if self._live(space) is not None:
            with milvus_errors(f"dropping the alias {self.alias(space)}"):
                self.client.drop_alias(self.alias(space))
        for name in self._collections(space):
            self._drop_collection(name)

    def _drop_collection(self, name: str) -> None:
        with milvus_errors(f"dropping {name}"):
            self.client.drop_collection(name)
        log.info("dropped the Milvus collection %s", name)

    def check(self, timeout: float = 5.0) -> None:
        """One cheap call (list the collections), so /readyz says when Milvus stops answering."""
        try:
            with milvus_errors("answering a health check"):
                self.client.list_collections(timeout=timeout)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - a transport error: the server is not there
            raise StoreError(f"cannot reach Milvus at {self.uri}: {type(exc).__name__}: {exc}",
                             code="milvus_unreachable") from exc

    def close(self) -> None:
        self.client.close()
