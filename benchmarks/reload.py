"""How long a reader process pauses to reload the catalog after another process writes.

    .venv/bin/python benchmarks/reload.py --sizes 10000,100000

With several worker processes (`attrib serve --workers N`), every write (an ingest batch, a
takedown, a head switch) makes each other worker reload the stored features and every space
index on its next request (index/catalog/core.py). For each size: a SQLite catalog of N synthetic
sources (rows, random backbone features, the served spaces' FAISS indexes) and two `Catalog`s on
the same home, a writer and a reader, with the index read into memory and with it mapped
(ATTRIB_INDEX_MMAP). The writer adds one source; the reader's next `spaces()` call, the one a
request would wait on, is timed, and so is a search after it. Also printed: the first load, and
how much the reader's resident memory grew with it (mapped pages are the page cache's, shared by
every worker that maps the file).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index.catalog import Catalog, CatalogConfig  # noqa: E402
from index.db import Concept, Source  # noqa: E402
from training.encoders import load_encoder  # noqa: E402

CHUNK = 10_000


def add_sources(catalog: Catalog, start: int, count: int, concept_id: int) -> None:
    """`count` rows, then their features and vectors (in chunks), then a save: one write."""
    rng = np.random.default_rng(start)
    for first in range(start, start + count, CHUNK):
        rows = [Source(sha256=hashlib.sha256(str(i).encode()).hexdigest(), concept_id=concept_id,
                       filename=f"{i}.jpg", format="jpeg", width=256, height=256)
                for i in range(first, min(first + CHUNK, start + count))]
        with catalog.sessions.begin() as session:
            session.add_all(rows)
            session.flush()
            ids = [row.id for row in rows]
        features = rng.normal(size=(len(ids), catalog.feature_dim)).astype(np.float32)
        catalog.add_features(ids, features / np.linalg.norm(features, axis=1, keepdims=True))
    catalog.flush()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(size: int, encoder, rounds: int) -> list[dict]:
    home = Path(tempfile.mkdtemp(prefix="attrib-reload-"))
    writer = Catalog(CatalogConfig(home, f"sqlite:///{home / 'attrib.db'}"), encoder)
    with writer.sessions.begin() as session:
        session.add(concept := Concept(name="synthetic"))
        session.flush()
        concept_id = concept.id
    writer.spaces()
    add_sources(writer, 0, size, concept_id)
    query = np.random.default_rng(1).normal(size=encoder.feature_dim).astype(np.float32)
    rows = []
    for mmap in (False, True):
        before = rss_mb()
        reader = Catalog(CatalogConfig(home, f"sqlite:///{home / 'attrib.db'}", mmap_index=mmap), encoder)
        started = time.perf_counter()
        reader.spaces()
        first_load, grown = time.perf_counter() - started, rss_mb() - before
        reloads, searches = [], []
        for _ in range(rounds):
            add_sources(writer, size + len(reader.features), 1, concept_id)
            started = time.perf_counter()
            spaces = reader.spaces()
            reloads.append(time.perf_counter() - started)
            started = time.perf_counter()
            reader.search(spaces["style"], query, 10)
            searches.append(time.perf_counter() - started)
        assert len(reader.features) == len(writer.features), "the reader must see the writes"
        rows.append({"size": size, "mapped": mmap, "first_load_s": first_load, "rss_grown_mb": grown,
                     "reload_s": statistics.median(reloads), "search_ms": statistics.median(searches) * 1000})
        reader.close()
    writer.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="catalog sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="writes per size; the median reload is kept")
    args = parser.parse_args()
    encoder = load_encoder("default", device="cpu", engine="torch")
    print("| sources | style index | first load s | reader RSS grown MB | reload after one write s "
          "| search after it ms |")
    print("|---:|---|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        for row in measure(size, encoder, max(1, args.rounds)):
            print(f"| {row['size']:,} | {'mapped' if row['mapped'] else 'in memory'} | {row['first_load_s']:.2f} "
                  f"| {row['rss_grown_mb']:.0f} | {row['reload_s']:.3f} | {row['search_ms']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
