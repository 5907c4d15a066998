"""Which FAISS index to use for a catalog of N vectors, and how much memory it will take.

Follows FAISS's own guidelines ("Guidelines to choose an index", faiss wiki): exact search while
it is cheap, an inverted file with full vectors up to about a million, and past that an inverted
file with product-quantised codes, an HNSW coarse quantiser and an OPQ rotation, so that memory
is a few dozen bytes per vector. `nlist` grows with sqrt(N) (4-16 sqrt(N) per the guidelines).
Search parameters are tuned to the recall target when the index is built (index/tuning.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ID_BYTES = 8  # an int64 source id per vector in every index type used here
FLAT_LIMIT = 100_000
IVF_FLAT_LIMIT = 1_000_000


@dataclass
class Advice:
    factory: str
    bytes_per_vector: float
    fixed_bytes: int
    memory_bytes: int
    train_vectors: int
    why: str


def nlist_for(n: int) -> int:
    """A power of two near 8 sqrt(N), at least 64, so lists hold some hundreds of vectors."""
    return max(64, 2 ** round(math.log2(8 * math.sqrt(max(n, 1)))))


def advise(n: int, dim: int = 512, code_bytes: int = 64) -> Advice:
    """The recommended factory for `n` vectors of `dim` floats, and its expected resident memory."""
    if n < 0 or dim < 1:
        raise ValueError("n must be ≥ 0 and dim ≥ 1")
    if n <= FLAT_LIMIT:
        per = dim * 4 + ID_BYTES
        return Advice("Flat", per, 0, int(n * per), 0,
                      "exact search is fast enough below 100k vectors and needs no training")
    if n <= IVF_FLAT_LIMIT:
        nlist = nlist_for(n)
        per = dim * 4 + ID_BYTES
        fixed = nlist * dim * 4
        return Advice(f"IVF{nlist},Flat", per, fixed, int(n * per + fixed), 39 * nlist,
                      "an inverted file over full vectors: exact distances, a fraction of the lists scanned")
    return compressed(n, dim, code_bytes)


def compressed(n: int, dim: int = 512, code_bytes: int = 64) -> Advice:
    """OPQ rotation, HNSW coarse quantiser over sqrt(N)-scaled lists, `code_bytes`-byte PQ codes."""
    nlist = nlist_for(n)
    code_bytes = min(code_bytes, dim)
    rotated = _rotated_dim(dim, code_bytes)
    per = code_bytes + ID_BYTES
    hnsw_graph = nlist * 32 * 2 * 4  # the coarse quantiser's HNSW32 links (level 0 has 2M)
    fixed = nlist * rotated * 4 + hnsw_graph + dim * rotated * 4 + code_bytes * 256 * (rotated // code_bytes) * 4
    return Advice(f"OPQ{code_bytes}_{rotated},IVF{nlist}_HNSW32,PQ{code_bytes}", per, fixed, int(n * per + fixed),
                  min(n, max(39 * nlist, 256 * 100)),
                  f"{code_bytes}-byte product-quantised codes after an OPQ rotation, with an HNSW coarse quantiser "
                  "over the lists: memory stays a few dozen bytes per vector. Codes alone lose recall (measured at "
                  "1M without OPQ: 0.19 recall@10); reaching 0.95 needs re-ranking against full vectors, not built "
                  "yet (docs/performance.md)")


def _rotated_dim(dim: int, code_bytes: int) -> int:
    """OPQ's output: 4 dimensions per sub-quantiser, never more than the input, a multiple of M."""
    return max(code_bytes, min(dim - dim % code_bytes, 4 * code_bytes))


def format_advice(n: int, dim: int, advice: Advice) -> str:
    lines = [
        f"catalog of {n:,} vectors of {dim} dimensions",
        f"  factory        ATTRIB_INDEX_FACTORY={advice.factory}",
        f"  memory         {_size(advice.memory_bytes)} resident ({advice.bytes_per_vector:.0f} bytes per vector "
        f"+ {_size(advice.fixed_bytes)} fixed)",
        f"  why            {advice.why}",
    ]
    if advice.train_vectors:
        lines.append(f"  training       needs about {advice.train_vectors:,} vectors at the first build")
    lines.append("  search         nprobe/efSearch are tuned to ATTRIB_TARGET_RECALL when a space is built")
    return "\n".join(lines)


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"
