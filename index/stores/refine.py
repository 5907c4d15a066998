"""Re-ranking for compressed indexes: exact scores from float16 copies of the vectors, read from disk.

Product-quantised codes lose neighbours: at 1M clustered 512-d vectors, 32-byte codes alone find
0.12 of the exact top 10. Scoring `k_factor` x k candidates against the full vectors brings that
back (0.96 at k_factor 64). FAISS's own IndexRefine keeps those vectors in memory (1 KB for a
512-d vector: 10 GB at 10M). Here they stay in a file beside the index and only the candidates'
rows are read, with `os.pread` (in several threads, so that rows not in the page cache come off
the disk in parallel): the page cache holds them, not the process.

Files, named by a token that the index's sidecar records:
  <index>.refine-<token>.f16   rows of float16 vectors
  <index>.refine-<token>.ids   int64, each row's source id
Rows are only appended; vectors are written before their ids, so a row counts only once both
have landed. Removal overwrites a row's vector with zeros, so a takedown leaves no copy behind. An id
added again gets a new row, and the last row of an id wins. Only the ids are in memory
(8 bytes a vector). A store that has no directory yet keeps its rows in memory until it is saved.
"""

from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

DEFAULT_K_FACTOR = 16  # until the index is tuned
READ_PART = 160  # rows per reading thread; measured here, 1,280 uncached rows: 72 ms in one thread, 20 in 8
_READERS: ThreadPoolExecutor | None = None
_READERS_LOCK = threading.Lock()


def _readers() -> ThreadPoolExecutor:
    global _READERS
    with _READERS_LOCK:
        if _READERS is None:
            _READERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="attrib-refine")
        return _READERS


class RefineStore:
    def __init__(self, dim: int, directory: Path | None = None, stem: str = "index", token: str | None = None):
        self.dim, self.row_bytes = dim, dim * 2
        self.directory, self.stem = (Path(directory) if directory else None), stem
        self.token = token or uuid.uuid4().hex[:16]
        self._ids = np.zeros(1024, np.int64)
        self._rows = 0
        self._order: np.ndarray | None = None  # a stable argsort of the ids, when they are not ascending
        self._ascending = True
        self._memory = np.zeros((0, dim), np.float16)  # the rows, while there is no directory
        self._fds: tuple[int, int] | None = None
        if self.directory is not None:
            self._open()

    @classmethod
    def existing(cls, dim: int, directory: Path, stem: str, token: str | None) -> "RefineStore | None":
        """The store of this token, or None when its files are not there."""
        if not token or not all(p.exists() for p in _paths(Path(directory), stem, token)):
            return None
        return cls(dim, directory, stem, token)

    # -- files --------------------------------------------------------------------------------

    def paths(self) -> tuple[Path, Path]:
        return _paths(self.directory, self.stem, self.token)

    def _open(self) -> None:
        vectors_path, ids_path = self.paths()
        self.directory.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT
        self._fds = (os.open(vectors_path, flags, 0o644), os.open(ids_path, flags, 0o644))
        rows = min(os.fstat(self._fds[0]).st_size // self.row_bytes, os.fstat(self._fds[1]).st_size // 8)
        os.ftruncate(self._fds[0], rows * self.row_bytes)  # an append cut short by a crash
        os.ftruncate(self._fds[1], rows * 8)
        ids = np.fromfile(ids_path, np.int64, count=rows) if rows else np.zeros(0, np.int64)
        self._ids, self._rows = np.zeros(0, np.int64), 0
        self._remember(ids)

    def sync(self) -> None:
        if self._fds:
            for fd in self._fds:
                os.fsync(fd)

    def close(self) -> None:
        if self._fds:
            for fd in self._fds:
                os.close(fd)
            self._fds = None

    def __del__(self) -> None:  # a reader that reloads drops its old index: its files close with it
        self.close()

    def delete(self) -> None:
        self.close()
        if self.directory is not None:
            remove_files(self.directory, self.stem, self.token)

    def save_to(self, directory: Path, stem: str, keep) -> "RefineStore":
        """A new store under `directory` holding the last row of every id in `keep` (compaction,
        or an in-memory store's first save); this store is left as it was."""
        keep = np.sort(np.asarray(keep, np.int64))  # ascending ids look up without a sort order
        target = RefineStore(self.dim, directory, stem)
        for start in range(0, len(keep), 65_536):
            ids = keep[start:start + 65_536]
            rows = self.rows_of(ids)
            found = rows >= 0
            target.append(ids[found], self.read(rows[found]))
        target.sync()
        return target

    # -- rows ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._rows

    def append(self, ids, vectors) -> None:
        ids = np.asarray(ids, np.int64).reshape(-1)
        block = np.ascontiguousarray(vectors, np.float16).reshape(len(ids), self.dim)
        if not len(ids):
            return
        if self._fds:
            os.pwrite(self._fds[0], block.tobytes(), self._rows * self.row_bytes)
            os.pwrite(self._fds[1], ids.tobytes(), self._rows * 8)
        else:
            self._memory = _with_room(self._memory, self._rows, self._rows + len(ids))
            self._memory[self._rows:self._rows + len(ids)] = block
        self._remember(ids)

    def _remember(self, ids: np.ndarray) -> None:
        self._ids = _with_room(self._ids, self._rows, self._rows + len(ids))
        still = self._ascending and bool(np.all(np.diff(ids) > 0)) and (
            self._rows == 0 or not len(ids) or ids[0] > self._ids[self._rows - 1])
        self._ascending, self._order = still, None  # before the rows show, for readers in other threads
        self._ids[self._rows:self._rows + len(ids)] = ids
        self._rows += len(ids)

    def ids(self) -> np.ndarray:
        return self._ids[:self._rows]

    def rows_of(self, ids) -> np.ndarray:
        """Each id's last row, or -1 where it has none."""
        wanted, stored = np.asarray(ids, np.int64), self.ids()
        if not len(stored):
            return np.full(len(wanted), -1, np.int64)
        if self._ascending:
            rows = np.searchsorted(stored, wanted, side="right") - 1
        else:
            order = self._order  # another thread may append meanwhile: use one consistent pair
            if order is None or len(order) != len(stored):
                order = self._order = np.argsort(stored, kind="stable")
            at = np.searchsorted(stored, wanted, side="right", sorter=order) - 1
            rows = np.where(at >= 0, order[np.maximum(at, 0)], -1)
        hit = (rows >= 0) & (stored[np.maximum(rows, 0)] == wanted)
        return np.where(hit, rows, -1)

    def read(self, rows) -> np.ndarray:
        """float32 vectors of these rows (one `pread` each; the rows must exist)."""
        rows = np.asarray(rows, np.int64)
        if not self._fds:
            return self._memory[rows].astype(np.float32)
        out = bytearray(len(rows) * self.row_bytes)
        view, fd, size = memoryview(out), self._fds[0], self.row_bytes

        def read_part(start: int) -> None:
            for i, row in enumerate(rows[start:start + READ_PART].tolist(), start):
                view[i * size:(i + 1) * size] = os.pread(fd, size, row * size)

        starts = range(0, len(rows), READ_PART)
        if len(starts) > 1:  # rows not in the page cache come from the disk: several reads at once
            list(_readers().map(read_part, starts))
        elif starts:
            read_part(0)
        return np.frombuffer(out, np.float16).reshape(len(rows), self.dim).astype(np.float32)

    def erase(self, ids) -> int:
        """Overwrite every row of these ids with zeros; returns how many rows."""
        rows = np.flatnonzero(np.isin(self.ids(), np.asarray(ids, np.int64)))
        zeros = bytes(self.row_bytes)
        for row in rows.tolist():
            if self._fds:
                os.pwrite(self._fds[0], zeros, row * self.row_bytes)
            else:
                self._memory[row] = 0
        return len(rows)

    # -- search -------------------------------------------------------------------------------

    def rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products of each query with its candidates; the best k, padded with -1."""
        scores = np.full((len(queries), k), -np.inf, np.float32)
        found = np.full((len(queries), k), -1, np.int64)
        for i, (query, ids) in enumerate(zip(queries, candidates)):
            ids = np.unique(ids[ids >= 0])
            rows = self.rows_of(ids)
            ids, rows = ids[rows >= 0], rows[rows >= 0]
            exact = np.einsum("ij,j->i", self.read(rows), query)  # not BLAS: its threads spin on a busy CPU
            best = np.argsort(-exact, kind="stable")[:k]
            scores[i, :len(best)], found[i, :len(best)] = exact[best], ids[best]
        return scores, found


def _with_room(array: np.ndarray, used: int, needed: int) -> np.ndarray:
    """`array` if it has `needed` rows, else a larger copy of its first `used` rows (at least doubled)."""
    if needed <= len(array):
        return array
    grown = np.zeros((max(2 * len(array), needed, 1024), *array.shape[1:]), array.dtype)
    grown[:used] = array[:used]
    return grown


def _paths(directory: Path, stem: str, token: str) -> tuple[Path, Path]:
    return directory / f"{stem}.refine-{token}.f16", directory / f"{stem}.refine-{token}.ids"


def remove_files(directory: Path, stem: str, token: str | None = None, keep: str | None = None) -> None:
    """Delete the re-ranking files of one token, or with None, of every token of `stem` but `keep`
    (what a crashed build left behind)."""
    for path in Path(directory).glob(f"{stem}.refine-{token or '*'}.*"):
        if path.suffix in (".f16", ".ids") and not (keep and path.name.startswith(f"{stem}.refine-{keep}.")):
            path.unlink(missing_ok=True)
