"""The same vector workload on each vector store, through attrib's own store interface.

    .venv/bin/python benchmarks/stores.py [--n 50000] [--faiss-1m] [--out var/benchmarks/stores]

N clustered 512-d unit vectors (benchmarks/search.py's mixture, same seeds) go into a space's
store in chunks of 10,000 as the catalog adds them (FAISS in memory; Milvus Lite through
pymilvus upserts), then the store is tuned to --target recall@10 (index/stores/tuning.py's walk, on
noisy copies of stored vectors) and put live (FAISS: the atomic file save; Milvus: flush and
the alias switch). Reported per store and index type: insert rate (vectors/s over the adds),
the tune and put-live times, single-query search p50/p95 (one query a call, as /attribute
searches; FAISS on one thread, as benchmarks/search.py), and recall@10 of 300 held-out queries
against exact search. `--faiss-1m` adds
FAISS at 1M vectors (Flat and HNSW32; Milvus Lite is not run at that size).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import faiss
from search import Mixture, exact_truth

from index.stores import open_stores
from index.stores.tuning import recall_at_k

CONFIGS = [("faiss", "Flat"), ("faiss", "HNSW32"), ("milvus", "FLAT"), ("milvus", "HNSW"), ("milvus", "IVF_FLAT")]
ADD_CHUNK = 10_000


def run_store(kind: str, index_type: str, data: Mixture, n: int, queries: np.ndarray, truth: np.ndarray,
              target: float, work: Path) -> dict:
    stores = open_stores(kind, work / "home", index_type if kind == "faiss" else "Flat",
                         milvus_uri=str(work / "milvus.db"), milvus_index=index_type if kind == "milvus" else "HNSW",
                         prefix=f"b{uuid.uuid4().hex[:8]}")
    store = stores.new("bench", "bench-head", data.dim, expected=n)
    added, kept = 0.0, []
    for start, chunk in data.chunks(n):
        for offset in range(0, len(chunk), ADD_CHUNK):
            part = chunk[offset:offset + ADD_CHUNK]
            ids = np.arange(start + offset, start + offset + len(part))
            started = time.perf_counter()
            store.add(ids, part)
            added += time.perf_counter() - started
        kept.append(chunk)
        print(f"    {kind}:{index_type} added {start + len(chunk):,}/{n:,}", file=sys.stderr, end="\r")
    started = time.perf_counter()
    store.tune(np.concatenate(kept), np.arange(n), target)  # as a space build: every vector, for the exact truth
    tuned = time.perf_counter() - started
    started = time.perf_counter()
    stores.install("bench", store)
    installed = time.perf_counter() - started
    store.search(queries[:5], 10)  # warm-up
    times, found = [], []
    for query in queries:
        started = time.perf_counter()
        found.append(store.search(query[None], 10)[1][0])
        times.append(time.perf_counter() - started)
    row = {"store": kind, "index": index_type, "n": n, "insert_per_s": round(n / added), "tune_s": round(tuned, 1),
           "put_live_s": round(installed, 2), "params": store.info.search_params,
           "p50_ms": round(1000 * float(np.percentile(times, 50)), 3),
           "p95_ms": round(1000 * float(np.percentile(times, 95)), 3),
           "recall_10_at_10": round(recall_at_k(np.array(found), truth), 4)}
    stores.drop("bench")
    stores.close()
    print("  " + json.dumps(row), file=sys.stderr)
    return row


def format_rows(rows: list[dict]) -> str:
    lines = ["| store | index | N | insert vectors/s | tune s | put live s | params | p50 ms | p95 ms | recall@10 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['store']} | `{r['index']}` | {r['n']:,} | {r['insert_per_s']:,} | {r['tune_s']} | "
                     f"{r['put_live_s']} | {r['params'] or '-'} | {r['p50_ms']} | {r['p95_ms']} | {r['recall_10_at_10']} |")
    return "\n".join(lines)


def run_size(n: int, configs: list[tuple[str, str]], dim: int, target: float) -> list[dict]:
    data = Mixture(dim, clusters=max(1000, n // 2000))  # as benchmarks/search.py
    queries = data.draw(300, seed=11)
    truth = exact_truth(data, n, queries)
    rows = []
    for kind, index_type in configs:
        with tempfile.TemporaryDirectory(prefix="attrib-stores-") as work:
            rows.append(run_store(kind, index_type, data, n, queries, truth, target, Path(work)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--only", action="append", help="store:index, e.g. milvus:HNSW (default: all five)")
    parser.add_argument("--faiss-1m", action="store_true", help="also FAISS Flat and HNSW32 at 1M vectors")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "benchmarks" / "stores")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)  # one query a call, as benchmarks/search.py measures FAISS
    configs = [tuple(c.split(":", 1)) for c in args.only] if args.only else CONFIGS
    rows = run_size(args.n, configs, args.dim, args.target)
    if args.faiss_1m:
        rows += run_size(1_000_000, [("faiss", "Flat"), ("faiss", "HNSW32")], args.dim, args.target)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"stores-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(rows, indent=2))
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
