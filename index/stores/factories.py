"""What a FAISS factory string asks of the index built from it.

Building the empty index, FAISS's search defaults raised for recall, and which factories need
training, re-ranking (index/stores/refine.py) or an IVF file layout (memory-mappable). Until a factory
that trains has enough vectors to train on, its vectors wait in an exact index (`exact_index`):
see `VectorIndex.add`.
"""

from __future__ import annotations

import faiss

from training.errors import AttribError


class VectorIndexError(AttribError):
    code = "vector_index_error"
    status = 500


def new_faiss_index(dim: int, factory: str):
    """IVF types keep ids themselves (an IDMap around them breaks on removal); others get IDMap2.

    IVF gets no direct map: removal scans the lists' ids (8 bytes a vector), where a hash table
    from id to slot would cost tens of bytes per vector, more than PQ codes themselves."""
    try:
        inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise VectorIndexError(f"invalid FAISS factory string {factory!r}: {exc}", code="bad_config") from exc
    ivf = faiss.try_extract_index_ivf(inner)
    if ivf is not None:
        return inner
    return faiss.IndexIDMap2(inner)


def exact_index(dim: int):
    """Exact inner product with ids: what holds the vectors of a factory not yet trained."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def try_train(index, vectors) -> bool:
    """Train `index` on `vectors`; False when FAISS says they are too few (or too alike)."""
    try:
        index.train(vectors)
    except RuntimeError:
        return False
    return bool(index.is_trained)


def set_search_defaults(index) -> None:
    """Recall-friendly defaults for approximate types (FAISS's own are tuned for speed)."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = min(ivf.nlist, 16)
        return
    inner = faiss.downcast_index(index.index)
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = max(inner.hnsw.efSearch, 64)


def is_ivf_factory(factory: str) -> bool:
    return "IVF" in factory.upper()


def mmap_flags(factory: str, staged: bool) -> int:
    """How to map an index file instead of reading it: an IVF index's lists stay on disk
    (IO_FLAG_MMAP); any other index's vectors or codes (Flat, an HNSW graph's storage, a staged
    index) are used in place from the mapped file (IO_FLAG_MMAP_IFC). Either way the pages are
    the page cache's, shared by every process that maps the file. A mapped index is read-only:
    FAISS aborts the process on a write, so `VectorIndex` reads the file into memory first."""
    if is_ivf_factory(factory) and not staged:
        return faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
    return faiss.IO_FLAG_MMAP_IFC


def needs_refine(factory: str) -> bool:
    """Product-quantised codes (PQ, OPQ) lose too much to rank alone; they are re-ranked."""
    return "PQ" in factory.upper()
