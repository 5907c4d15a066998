"""Search at scale: build FAISS indexes of N clustered 512-d vectors and measure what a user gets.

    .venv/bin/python benchmarks/search.py --sizes 1000000 10000000 [--out var/benchmarks/search]

For each size and factory: build time, file size, resident memory of the loaded index (in a
fresh process, read into memory and memory-mapped), single-query p50/p95 latency, and recall@10
against exact search (the overlap of the top 10 with the exact top 10, and the share of queries
whose exact nearest neighbour is in the top 10).

Compressed (PQ) indexes re-rank their candidates against float16 vectors on disk (index/stores/refine.py);
their row gives the size of those files too, and the resident memory is the process's.

Data: a Gaussian mixture with a decaying spectrum, like real embeddings (most variance in a few
dozen directions, a cluster per near-duplicate family), normalised to unit length; generated in
chunks from fixed seeds, so 10M vectors never sit in memory at once. Exact ground truth comes from
chunked brute force for 300 evaluation queries, and separately for 200 tuning queries (the
tuning never sees the evaluation queries). Search parameters are tuned to --target recall with
index/stores/tuning.py, as `attrib` does when it builds a space.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from index.stores import (
    advise,  # noqa: E402
    sidecar_path,
)
from index.stores.advice import compressed
from index.stores.refine import remove_files  # noqa: E402
from index.stores.tuning import sample_queries, tune_with_truth  # noqa: E402
from index.stores.vectors import VectorIndex  # noqa: E402

CHUNK = 1 << 18


class Mixture:
    """Unit vectors around `clusters` centres; variance decays as i^-0.7 over the dimensions."""

    def __init__(self, dim: int, clusters: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.dim, self.scale = dim, (np.arange(1, dim + 1) ** -0.35).astype(np.float32)
        self.centres = (rng.standard_normal((clusters, dim)).astype(np.float32) * self.scale)
        self.seed = seed

    def draw(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        vectors = self.centres[rng.integers(0, len(self.centres), n)]
        vectors = vectors + 0.6 * rng.standard_normal((n, self.dim), dtype=np.float32) * self.scale
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def chunks(self, n: int):
        for number, start in enumerate(range(0, n, CHUNK)):
            yield start, self.draw(min(CHUNK, n - start), seed=1_000_000 + number)


def exact_truth(data: Mixture, n: int, queries: np.ndarray, k: int = 10) -> np.ndarray:
    best_scores = np.full((len(queries), k), -np.inf, np.float32)
    best_ids = np.full((len(queries), k), -1, np.int64)
    for start, chunk in data.chunks(n):
        scores = queries @ chunk.T
        ids = np.broadcast_to(np.arange(start, start + len(chunk)), scores.shape)
        merged_scores, merged_ids = np.hstack([best_scores, scores]), np.hstack([best_ids, ids])
        top = np.argpartition(-merged_scores, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, top, axis=1)
        best_ids = np.take_along_axis(merged_ids, top, axis=1)
    order = np.argsort(-best_scores, axis=1)
    return np.take_along_axis(best_ids, order, axis=1)


def build(data: Mixture, n: int, factory: str, train_size: int, path: Path) -> tuple[VectorIndex, float]:
    """What attrib builds: a VectorIndex (a PQ index spools its re-ranking vectors beside `path`)."""
    started = time.perf_counter()
    index = VectorIndex(data.dim, "benchmark", factory, spool=path)
    if not index.index.is_trained:
        index.index.train(data.draw(min(n, max(train_size, 10_000)), seed=7))
        print(f"    trained in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    for start, chunk in data.chunks(n):
        index.add(np.arange(start, start + len(chunk)), chunk)
        print(f"    added {start + len(chunk):,}/{n:,}", file=sys.stderr, end="\r")
    return index, time.perf_counter() - started


def measure_loaded(path: Path, queries_path: Path, truth_path: Path, mmap: bool, cold: bool = False) -> dict:
    """In a fresh process: resident memory after loading, per-query latency and recall, as
    `attrib` loads and searches the index (tuned parameters from its sidecar; one thread).
    Warm: the queries run once untimed first, so whatever they read from disk is in the page
    cache. `cold`: the re-ranking vectors are dropped from the page cache instead, so every
    candidate is read from the disk."""
    code = f"""
import json, os, time, numpy as np, faiss, sys
sys.path.insert(0, {str(REPO)!r})
from index.stores.tuning import recall_at_k
from index.stores.vectors import VectorIndex
def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096
queries, truth = np.load({str(queries_path)!r}), np.load({str(truth_path)!r})
faiss.omp_set_num_threads(1)
before = rss()
index = VectorIndex.load({str(path)!r}, mmap={mmap!r})
index.search(queries[:5], 10)
loaded = rss() - before
if {cold!r}:
    for name in (index.refine.paths() if index.refine else ()):
        fd = os.open(name, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
else:
    index.search(queries, 10)  # warm: what these queries read is in the page cache
times, found = [], []
for q in queries:
    started = time.perf_counter(); _, ids = index.search(q[None], 10); times.append(time.perf_counter() - started)
    found.append(ids[0])
found = np.array(found)
print(json.dumps({{"rss_mb": round(loaded / 2**20, 1), "rss_after_search_mb": round((rss() - before) / 2**20, 1),
  "p50_ms": round(1000 * float(np.percentile(times, 50)), 3), "p95_ms": round(1000 * float(np.percentile(times, 95)), 3),
  "recall_10_at_10": round(recall_at_k(found, truth), 4),
  "recall_1_at_10": round(float(np.mean([truth[i, 0] in found[i] for i in range(len(truth))])), 4)}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def factories_for(n: int, dim: int) -> list[str]:
    """The advised factory; below 2M also HNSW32 and the compressed recipe, for comparison."""
    chosen = [advise(n, dim).factory]
    if n <= 2_000_000:
        chosen = ["HNSW32", *chosen, compressed(n, dim).factory]
    return list(dict.fromkeys(chosen))


def run_size(n: int, dim: int, target: float, out: Path, factories: list[str] | None) -> list[dict]:
    data = Mixture(dim, clusters=max(1000, n // 2000))
    evaluation = data.draw(300, seed=11)
    tuning_queries = sample_queries(data.draw(2000, seed=12), seed=13)
    started = time.perf_counter()
    truth = exact_truth(data, n, np.vstack([evaluation, tuning_queries]))
    print(f"  exact truth for {len(truth)} queries over {n:,} vectors in {time.perf_counter() - started:.0f}s",
          file=sys.stderr)
    np.save(out / f"queries-{n}.npy", evaluation)
    np.save(out / f"truth-{n}.npy", truth[:300])
    rows = []
    for factory in factories or factories_for(n, dim):
        print(f"  {factory}: building", file=sys.stderr)
        path = out / f"{factory.replace(',', '_')}-{n}.faiss"
        index, seconds = build(data, n, factory, advise(n, dim).train_vectors, path)
        tuning = tune_with_truth(index.index, tuning_queries, truth[300:], target,
                                 index.search_with if index.refine is not None else None)
        params = tuning.params if tuning else {}
        index.info.search_params = params
        index.save(path)
        refine_mb = sum(p.stat().st_size for p in index.refine.paths()) / 2**20 if index.refine else 0
        del index
        row = {"n": n, "factory": factory, "build_s": round(seconds, 1), "file_mb": round(path.stat().st_size / 2**20, 1),
               "refine_file_mb": round(refine_mb, 1), "params": params, "tuned_recall": tuning.recall if tuning else None,
               "expected_mb": round(advise(n, dim).memory_bytes / 2**20, 1) if factory == advise(n, dim).factory else None}
        for mode in ("memory", "mmap", "mmap, cold"):
            if (mode != "memory" and "IVF" not in factory) or (mode == "mmap, cold" and not refine_mb):
                continue
            row[mode] = measure_loaded(path, out / f"queries-{n}.npy", out / f"truth-{n}.npy", "mmap" in mode,
                                       cold="cold" in mode)
        print("  " + json.dumps(row), file=sys.stderr)
        rows.append(row)
        for leftover in (path, sidecar_path(path)):
            leftover.unlink()
        remove_files(path.parent, path.name)
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ["| N | factory | build s | params | load | RSS MB | p50 ms | p95 ms | R10@10 | R1@10 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for mode in ("memory", "mmap", "mmap, cold"):
            if mode in row:
                m = row[mode]
                lines.append(f"| {row['n']:,} | `{row['factory']}` | {row['build_s']} | {row['params']} | {mode} | "
                             f"{m['rss_after_search_mb']} | {m['p50_ms']} | {m['p95_ms']} | {m['recall_10_at_10']} | "
                             f"{m['recall_1_at_10']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--factory", action="append", help="only these factories (default: by size)")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "benchmarks" / "search")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        rows += run_size(n, args.dim, args.target, args.out, args.factory)
        (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(format_rows(rows))
    print(f"peak RSS of the benchmark process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
