"""Which FAISS index to use for a catalog of N vectors, and how much memory it will take.

Follows FAISS's own guidelines ("Guidelines to choose an index", faiss wiki): exact search while
it is cheap, an inverted file with full vectors up to about a million, and past that an inverted
file with product-quantised codes and an HNSW coarse quantiser, so that memory is a few dozen
bytes per vector, re-ranked against full vectors on disk. `nlist` grows with sqrt(N) (4-16
sqrt(N) per the guidelines; the compressed recipe takes the low end, so that training its
quantiser stays minutes on a small machine).
Search parameters are tuned to the recall target when the index is built (index/stores/tuning.py).
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


def nlist_for(n: int, per_root: int = 8, rounding=round) -> int:
    """A power of two near `per_root` sqrt(N) (`rounding` its log2), at least 64, so lists hold
    some hundreds of vectors."""
    return max(64, 2 ** rounding(math.log2(per_root * math.sqrt(max(n, 1)))))


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
    """A random rotation, an HNSW coarse quantiser over about 4 sqrt(N) lists, `code_bytes`-byte
    PQ codes, and re-ranking against float16 vectors on disk (index/stores/refine.py).

    Embeddings keep most of their variance in a few dozen directions, so plain PQ spends most of
    its sub-quantisers on dimensions that carry little. A random rotation spreads the variance
    evenly at no training cost (measured at 1M with 32-byte codes: 0.82 of the top 10 among
    16 x 10 candidates, against 0.64 without; OPQ learns a better one but takes many minutes to
    train here)."""
    nlist = nlist_for(n, 4, math.floor)
    code_bytes = min(code_bytes, dim)
    per = code_bytes + ID_BYTES + ID_BYTES  # codes and ids in the lists, and the re-ranking rows' ids
    hnsw_graph = nlist * 32 * 2 * 4  # the coarse quantiser's HNSW32 links (level 0 has 2M)
    fixed = dim * dim * 4 + nlist * dim * 4 + hnsw_graph + code_bytes * 256 * (dim // code_bytes) * 4
    return Advice(f"RR{dim},IVF{nlist}_HNSW32,PQ{code_bytes}", per, fixed, int(n * per + fixed),
                  min(n, 39 * nlist),
                  f"{code_bytes}-byte product-quantised codes after a random rotation, in an inverted file with an "
                  "HNSW coarse quantiser, "
                  f"re-ranked against float16 copies of the vectors read from disk ({dim * 2 + ID_BYTES} bytes a "
                  f"vector on disk, {_size(n * (dim * 2 + ID_BYTES))} here): memory stays a few dozen bytes per "
                  "vector. The codes alone find a fraction of the neighbours; the re-ranking depth (k_factor) "
                  "is tuned with nprobe")


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
    lines.append("  search         nprobe/efSearch (and k_factor) are tuned to ATTRIB_TARGET_RECALL when a space is built")
    return "\n".join(lines)


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"
