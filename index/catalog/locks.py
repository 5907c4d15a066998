"""The catalog's write lock and generation stamp.

Writers take an exclusive file lock (ATTRIB_HOME/catalog.lock), re-entrant within a process. A
process notices another's writes through the `index/generation` stamp (rewritten, under the lock,
by every write and by a load that repaired something) and reloads.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from training.fileio import atomic_write_bytes


class CatalogLocks:
    def __init__(self, home: Path):
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self._loaded_stamp: bytes | None = None
        self._loading = 0
        self._writer = threading.RLock()
        self._lock_depth = 0
        self._lock_handle = None

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Exclusive across threads and processes that share ATTRIB_HOME; re-entrant."""
        with self._writer:
            if self._lock_depth == 0:
                self._lock_handle = open(self.home / "catalog.lock", "a+")
                fcntl.flock(self._lock_handle, fcntl.LOCK_EX)
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
                    self._lock_handle.close()

    @property
    def stamp_path(self) -> Path:
        return self.home / "index" / "generation"

    def _stamp(self) -> bytes | None:
        """The generation file's content: unique per write (an mtime can repeat within a clock tick)."""
        try:
            return self.stamp_path.read_bytes()
        except FileNotFoundError:
            return None

    def _touch(self) -> None:
        atomic_write_bytes(self.stamp_path, f"{time.time_ns()} {os.getpid()} {uuid.uuid4().hex}".encode())
        self._loaded_stamp = self._stamp()

    def _stored_files(self) -> frozenset:
        """What the space indexes and stored features on disk are now (name, inode, size, mtime)."""
        roots = [root for root in (self.home / "index", self.home / "features") if root.is_dir()]
        files = (path for root in roots for path in root.rglob("*") if path.is_file() and path != self.stamp_path)
        return frozenset((str(path), s.st_ino, s.st_size, s.st_mtime_ns) for path in files for s in (path.stat(),))

    @contextmanager
    def maintenance(self) -> Iterator[None]:
        """The write lock, during which this thread's own calls to `spaces()` do not reload."""
        with self.write_lock():
            self._loading += 1
            try:
                yield
            finally:
                self._loading -= 1
