"""Milvus stores: one collection per space, under an alias that names the live one.

A space's collection is `<prefix>_<space>__g<12 hex>`: the source id is its int64 primary key,
the vector a FLOAT_VECTOR of the head's dimension, searched by inner product (vectors are unit
length) through an HNSW, IVF_FLAT or FLAT index (ATTRIB_MILVUS_INDEX). The alias
`<prefix>_<space>` points at the live collection, so a head build fills a new collection aside
and `install` moves the alias in one step; the replaced collection is dropped at the space's
next build (requests in flight, and other processes until they reload, finish on it). The
head id, dimension and tuned search parameters are kept in the collection's properties.

Reads and deletes use Strong consistency, so a write is seen by the next read and a removal
is confirmed by a query before it is reported.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict

import numpy as np

from index.errors import StoreError
from index.stores.milvus_client import INFO_PROPERTY, milvus_errors
from index.stores.tuning import exact_top_k, sample_queries, walk_knob
from index.stores.vectors import IndexInfo

log = logging.getLogger(__name__)
STRONG = "Strong"
BATCH = 2000
EF_VALUES = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
NPROBE_VALUES = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048]


class MilvusStore:
    def __init__(self, client, collection: str, info: IndexInfo):
        self.client, self.collection, self.info = client, collection, info
        self.info.count = self._count()

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def encoder_id(self) -> str:
        return self.info.encoder_id

    def __len__(self) -> int:
        return self.info.count

    def _count(self) -> int:
        with milvus_errors(f"counting {self.collection}"):
            rows = self.client.query(self.collection, filter="", output_fields=["count(*)"], consistency_level=STRONG)
        return int(rows[0]["count(*)"])

    def ids(self) -> np.ndarray:
        found = []
        with milvus_errors(f"listing the ids of {self.collection}"):
            iterator = self.client.query_iterator(self.collection, batch_size=10_000, filter="", output_fields=["id"],
                                                  consistency_level=STRONG)
            while batch := iterator.next():
                found.extend(row["id"] for row in batch)
            iterator.close()
        return np.array(sorted(found), np.int64)

    def add(self, ids, vectors) -> None:
        ids, vectors = _as_ids(ids), self._as_vectors(vectors)
        if len(ids) != len(vectors):
            raise StoreError(f"{len(ids)} ids for {len(vectors)} vectors", code="vector_index_error", status=500)
        with milvus_errors(f"writing to {self.collection}"):
            for start in range(0, len(ids), BATCH):  # upsert: an id present already is replaced, never doubled
                rows = [{"id": int(i), "vector": v} for i, v in zip(ids[start:start + BATCH], vectors[start:start + BATCH])]
                self.client.upsert(self.collection, rows)
        if len(ids):
            self.info.count = self._count()

    def search(self, vectors, k: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = self._as_vectors(vectors)
        k = min(int(k), self.info.count)
        scores, ids = np.full((len(vectors), max(k, 0)), -np.inf, np.float32), np.full((len(vectors), max(k, 0)), -1, np.int64)
        if k <= 0 or not len(vectors):
            return scores, ids
        with milvus_errors(f"searching {self.collection}"):
            results = self.client.search(self.collection, data=list(vectors), limit=k, output_fields=["id"],
                                         search_params={"metric_type": "IP", "params": self._params(k)},
                                         consistency_level=STRONG)
        for row, hits in enumerate(results):
            for column, hit in enumerate(hits):
                scores[row, column], ids[row, column] = hit["distance"], hit["id"]
        return scores, ids

    def _params(self, k: int) -> dict:
        params = dict(self.info.search_params)
        if "ef" in params:
            params["ef"] = max(params["ef"], k)  # HNSW needs ef >= k
        return params

    def remove(self, ids) -> int:
        """Delete ids, then confirm by a Strong query that none is left (else `delete_unconfirmed`)."""
        ids = _as_ids(ids)
        present = self._present(ids)
        if not len(present):
            return 0
        with milvus_errors(f"deleting from {self.collection}"):
            for start in range(0, len(present), BATCH):
                self.client.delete(self.collection, ids=present[start:start + BATCH].tolist())
        left = self._present(present)
        if len(left):
            raise StoreError(f"Milvus did not confirm the removal of {len(left)} vectors from {self.collection}",
                             code="delete_unconfirmed")
        self.info.count = self._count()
        return len(present)

    def _present(self, ids: np.ndarray) -> np.ndarray:
        found = []
        with milvus_errors(f"reading {self.collection}"):
            for start in range(0, len(ids), BATCH):
                chunk = ids[start:start + BATCH].tolist()
                rows = self.client.query(self.collection, filter=f"id in {chunk}", output_fields=["id"],
                                         consistency_level=STRONG)
                found.extend(row["id"] for row in rows)
        return np.array(sorted(found), np.int64)

    def vectors(self, ids) -> np.ndarray:
        ids = _as_ids(ids)
        with milvus_errors(f"reading {self.collection}"):
            rows = self.client.get(self.collection, ids=ids.tolist(), output_fields=["vector"])
        by_id = {row["id"]: row["vector"] for row in rows}
        return np.array([by_id[int(i)] for i in ids], np.float32).reshape(len(ids), self.dim)

    def tune(self, vectors, ids, target: float) -> None:
        """Walk ef (HNSW) or nprobe (IVF_FLAT) up to the cheapest value reaching `target`
        recall@10 on noisy copies of stored vectors, as index/stores/tuning.py does for FAISS."""
        knobs = {"milvus:HNSW": ("ef", EF_VALUES), "milvus:IVF_FLAT": ("nprobe", NPROBE_VALUES)}
        name, values = knobs.get(self.info.factory, (None, None))
        if name is None or self.info.count == 0:
            return
        self.flush(wait_for_index=True)
        with milvus_errors(f"reloading {self.collection}"):  # searches then use the built index, not a scan
            self.client.release_collection(self.collection)
            self.client.load_collection(self.collection)
        queries = sample_queries(vectors)  # the vectors may be a memory-mapped copy: read in chunks
        truth = exact_top_k(vectors, _as_ids(ids), queries, min(10, self.info.count))

        def search_with(value: int) -> np.ndarray:
            self.info.search_params = {name: value}
            return self.search(queries, truth.shape[1])[1]

        tuning = walk_knob(name, values, search_with, truth, target)
        self.info.search_params, self.info.recall = tuning.params, tuning.recall
        self.save_info()
        log.info("tuned %s (%s): %s, recall@10 %.3f in %.1fs", self.collection, self.info.factory, tuning.params,
                 tuning.recall, tuning.seconds)

    def save_info(self) -> None:
        info = {k: v for k, v in asdict(self.info).items() if k != "count"}
        with milvus_errors(f"recording {self.collection}"):
            self.client.alter_collection_properties(self.collection, properties={INFO_PROPERTY: json.dumps(info)})

    def flush(self, wait_for_index: bool = False, timeout: float = 600.0) -> None:
        """Make what was written durable; with `wait_for_index`, also wait until the index covers it
        (a build's, before it is tuned and put live; an ingest's new rows are searched unindexed)."""
        deadline = time.monotonic() + timeout
        with milvus_errors(f"flushing {self.collection}"):
            self.client.flush(self.collection)
            while wait_for_index and self.client.describe_index(self.collection, "vector").get("pending_index_rows", 0):
                if time.monotonic() > deadline:
                    raise StoreError(f"Milvus did not finish indexing {self.collection} in {timeout:.0f}s",
                                     code="milvus_timeout")
                time.sleep(0.2)

    def _as_vectors(self, vectors) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise StoreError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}",
                             code="vector_index_error", status=500)
        return vectors


def _as_ids(ids) -> np.ndarray:
    return np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
