"""FAISS wrapper whose ids are source row ids.

The index type comes from a FAISS factory string ("Flat" exact inner product by default;
"HNSW32", "IVF4096,PQ64", "OPQ64_256,IVF4096_HNSW32,PQ64", ... go through the same code; see
index/stores/advice.py for which to choose). Vectors are unit-length, so inner product is cosine
similarity. Saves are atomic (temp file + rename) and write a JSON sidecar with the encoder id,
factory, dimension, count and the tuned search parameters (index/stores/tuning.py).

A product-quantised index ("...,PQ32") re-ranks its candidates against float16 copies of the
vectors kept on disk beside it (index/stores/refine.py): `k_factor` x k candidates, tuned with `nprobe`.

Any index can be loaded memory-mapped (`mmap=True`, index/stores/factories.py: mmap_flags): an IVF
index's lists, or another index's vectors, stay in the file, only the pages a search touches are
resident, and processes that map the same file share them. A mapped index is read-only, so the
first write loads it into memory.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import faiss
import numpy as np

from index.stores.factories import (VectorIndexError, exact_index, mmap_flags, needs_refine, new_faiss_index,
                                    set_search_defaults, try_train)
from index.stores.refine import DEFAULT_K_FACTOR, RefineStore, remove_files
from index.stores.tuning import DEFAULT_TARGET_RECALL, apply_params, tune_search
from training.fileio import atomic_write, atomic_write_bytes

log = logging.getLogger(__name__)
DEFAULT_FACTORY = "Flat"


@dataclass
class IndexInfo:
    encoder_id: str
    factory: str
    dim: int
    count: int
    search_params: dict[str, int] = field(default_factory=dict)  # e.g. {"nprobe": 24}, from tuning
    recall: float | None = None  # the recall@10 the tuning reached
    refine: str | None = None  # the token of the re-ranking vectors' files (index/stores/refine.py)
    target_recall: float = DEFAULT_TARGET_RECALL  # what tuning aims at, now and when a staged index trains
    staged: bool = False  # too few vectors yet to train the factory: held in an exact index


class VectorIndex:
    def __init__(self, dim: int, encoder_id: str, factory: str = DEFAULT_FACTORY, index=None,
                 info: IndexInfo | None = None, mapped_from: Path | None = None, refine: RefineStore | None = None,
                 spool: Path | None = None):
        """`spool`: the file this index will be saved as, so that a compressed index's re-ranking
        vectors go to disk beside it while it is built (else they wait in memory until saved)."""
        self.info = info or IndexInfo(encoder_id, factory, dim, 0)
        self.index = index if index is not None else new_faiss_index(dim, factory)
        self.info.count = self.index.ntotal
        self.mapped_from = mapped_from  # the file an mmap-loaded index reads from
        if refine is None and needs_refine(self.info.factory):
            refine = RefineStore(dim, spool.parent, spool.name) if spool else RefineStore(dim)
        self.refine = refine
        set_search_defaults(self.index)
        apply_params(self.index, self.info.search_params)

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def encoder_id(self) -> str:
        return self.info.encoder_id

    def __len__(self) -> int:
        return self.index.ntotal

    def ids(self) -> np.ndarray:
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is None:
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        lists = ivf.invlists
        chunks = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy() for i in range(ivf.nlist)]
        return np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, np.int64)

    def add(self, ids, vectors) -> None:
        """Add vectors. A factory that trains trains on the first add that has enough vectors for
        it; until then they wait in an exact index (`info.staged`), searched exactly."""
        ids, vectors = _as_ids(ids), self._as_vectors(vectors)
        if len(ids) != len(vectors):
            raise VectorIndexError(f"{len(ids)} ids for {len(vectors)} vectors")
        if not len(ids):
            return
        self._writable()
        if not self.index.is_trained and not try_train(self.index, vectors):
            log.info("%d vectors are too few to train %r: searched exactly until there are enough",
                     len(vectors), self.info.factory)
            self.index, self.info.staged = exact_index(self.dim), True
        if self.refine is not None:
            self.refine.append(ids, vectors)
        self.index.add_with_ids(vectors, ids)
        self.info.count = self.index.ntotal
        if self.info.staged:
            self._promote()

    def _promote(self) -> None:
        """Train the configured factory on the staged vectors once they suffice, move them into it
        and tune its search."""
        ids = self.ids()
        vectors = self.index.index.reconstruct_n(0, self.index.ntotal)
        index = new_faiss_index(self.dim, self.info.factory)
        if not try_train(index, vectors):
            return
        index.add_with_ids(vectors, ids)
        self.index, self.info.staged = index, False
        set_search_defaults(self.index)
        log.info("trained %r on %d staged vectors", self.info.factory, len(ids))
        self.tune(vectors, ids, self.info.target_recall)

    def tune(self, vectors, ids, target: float = DEFAULT_TARGET_RECALL) -> None:
        """Pick the cheapest search setting that reaches `target` recall@10 on these vectors."""
        self.info.target_recall = target
        ids = _as_ids(ids)  # the vectors may be a memory-mapped copy: read in chunks, never whole
        vectors = vectors if isinstance(vectors, np.ndarray) else np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(ids), self.dim):
            raise VectorIndexError(f"expected vectors of shape ({len(ids)}, {self.dim}), got {vectors.shape}")
        tuning = tune_search(self.index, vectors, ids, target,
                             search_with=None if self.refine is None or self.info.staged else self.search_with)
        if tuning is not None:
            self.info.search_params, self.info.recall = tuning.params, tuning.recall
            log.info("tuned %s: %s, recall@10 %.3f in %.1fs", self.info.factory, tuning.params, tuning.recall,
                     tuning.seconds)

    def _writable(self) -> None:
        """A memory-mapped index can't change: load it into memory before the first write."""
        if self.mapped_from is not None:
            log.info("loading the mapped index %s into memory for a write", self.mapped_from)
            self.index = faiss.read_index(str(self.mapped_from))
            self.mapped_from = None
            set_search_defaults(self.index)
            apply_params(self.index, self.info.search_params)

    def search(self, vectors, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, ids), each (n, k'); k' = min(k, len). Missing slots are dropped."""
        vectors = self._as_vectors(vectors)
        k = min(int(k), self.index.ntotal)
        if k <= 0:
            return np.zeros((len(vectors), 0), np.float32), np.zeros((len(vectors), 0), np.int64)
        with _threads_for(len(vectors)):
            if self.refine is None or self.info.staged:
                return self.index.search(vectors, k)
            k_factor = int(self.info.search_params.get("k_factor", DEFAULT_K_FACTOR))
            _, candidates = self.index.search(vectors, min(k * k_factor, self.index.ntotal))
        return self.refine.rerank(vectors, candidates, k)

    def search_with(self, queries: np.ndarray, k: int, params: dict[str, int]) -> np.ndarray:
        """The ids found with these search parameters (which stay set); for tuning."""
        apply_params(self.index, params)
        self.info.search_params = dict(params)
        return self.search(queries, k)[1]

    def remove(self, ids) -> int:
        ids = _as_ids(ids)
        if not len(ids):
            return 0
        self._writable()
        if self.refine is not None:
            self.refine.erase(ids)
        try:
            removed = self.index.remove_ids(ids)
        except RuntimeError:
            removed = self._rebuild_without(ids)
        self.info.count = self.index.ntotal
        return int(removed)

    def _rebuild_without(self, ids: np.ndarray) -> int:
        """For index types without remove_ids (HNSW): rebuild from the stored vectors."""
        keep = np.setdiff1d(self.ids(), ids)
        vectors = self.vectors_of(keep)
        before = self.index.ntotal
        self.index, self.info.staged = new_faiss_index(self.dim, self.info.factory), False
        set_search_defaults(self.index)
        apply_params(self.index, self.info.search_params)
        self.add(keep, vectors)
        return before - self.index.ntotal

    def vectors_of(self, ids) -> np.ndarray:
        """The stored vectors of these ids (float16-exact for a re-ranked index, else FAISS's own)."""
        if self.refine is not None:
            return self.refine.read(self.refine.rows_of(ids))
        return np.array([self.index.reconstruct(int(i)) for i in ids], np.float32).reshape(-1, self.dim)

    def _as_vectors(self, vectors) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise VectorIndexError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        return vectors

    def save(self, path: str | Path) -> None:
        path = Path(path)
        started = time.perf_counter()
        previous = _refine_token(path)
        if self.refine is not None:
            self._place_refine(path)
        atomic_write(path, lambda tmp: faiss.write_index(self.index, tmp))
        atomic_write_bytes(sidecar_path(path), json.dumps(asdict(self.info), indent=2).encode())
        if previous and previous != self.info.refine:
            remove_files(path.parent, path.name, previous)
        log.info("saved %d vectors to %s in %.3fs", len(self), path, time.perf_counter() - started)

    def _place_refine(self, path: Path) -> None:
        """Put the re-ranking vectors beside `path` (copied there, or compacted when removals left
        more dead rows than live ones), on disk before the index that names them."""
        refine = self.refine
        if refine.directory != path.parent or refine.stem != path.name or len(refine) > 2 * len(self) + 10_000:
            self.refine = refine.save_to(path.parent, path.name, self.ids())
            refine.close()
        self.refine.sync()
        self.info.refine = self.refine.token

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False) -> "VectorIndex":
        """Load an index; with `mmap`, its lists or vectors are mapped from the file, not read."""
        path = Path(path)
        try:
            info = IndexInfo(**json.loads(sidecar_path(path).read_text()))
            index = faiss.read_index(str(path), mmap_flags(info.factory, info.staged) if mmap else 0)
        except (OSError, ValueError, TypeError, RuntimeError) as exc:
            raise VectorIndexError(f"cannot load the vector index at {path}: {exc}") from exc
        if index.d != info.dim:
            raise VectorIndexError(f"vector index {path} has dimension {index.d}, its sidecar says {info.dim}")
        refine = None
        if needs_refine(info.factory):
            refine = RefineStore.existing(info.dim, path.parent, path.name, info.refine)
            if refine is None or len(refine) < index.ntotal:
                raise VectorIndexError(f"the re-ranking vectors of {path} are missing or short")
        return cls(info.dim, info.encoder_id, info.factory, index, info, path if mmap else None, refine)


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _refine_token(path: Path) -> str | None:
    try:
        return json.loads(sidecar_path(path).read_text()).get("refine")
    except (OSError, ValueError, AttributeError):
        return None


def build_index(ids, vectors, encoder_id: str, factory: str = DEFAULT_FACTORY,
                target_recall: float = DEFAULT_TARGET_RECALL) -> VectorIndex:
    """The one function that builds a whole index (training it first where the type needs it),
    then tunes an approximate index's search parameters to the recall target."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    started = time.perf_counter()
    index = VectorIndex(vectors.shape[1], encoder_id, factory)
    index.add(ids, vectors)
    index.tune(vectors, ids, target_recall)
    log.info("built %s index of %d vectors in %.3fs", factory, len(index), time.perf_counter() - started)
    return index


@contextmanager
def _threads_for(queries: int) -> Iterator[None]:
    """One OpenMP thread for a one-query search. FAISS splits a search over its queries, so the
    other threads have nothing to do, yet each parallel region wakes them and they spin after it:
    that doubled the CPU time of an /attribute request's path outside the forward (4.7 against
    10.8 ms), time the forward of other requests needed. The setting is the calling thread's."""
    if queries > 1:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _as_ids(ids) -> np.ndarray:
    return np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)


