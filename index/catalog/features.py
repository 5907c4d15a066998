"""The feature store: every source's pooled backbone features, stored once, as float16.

Every search space's vectors are a head applied to these rows, so a new head costs a matrix
product over the store instead of a backbone forward per image.

Layout: ATTRIB_HOME/features/<backbone_id>/seg-<seq>.npz, each an immutable segment holding
`ids` (int64), `features` (float16, N x dim) and `replaces` (the segments it supersedes). Every
segment is written atomically. Adding writes a new segment. Removing rewrites the segments that
hold the ids; the rewrite names the segments it replaces, and they are deleted after it lands.
A crash in between is finished by the next `refresh`, so removed features never come back.
When there are more than MAX_SEGMENTS segments, the small ones are merged into one.

Only ids are kept in memory; features are read from disk when a head is applied.
Callers serialise writes (the catalog's write lock). Readers never take it: a read works on a
snapshot, the segments it opened at its start, which stay readable even when a merge or a removal
in this or another process deletes their files meanwhile (POSIX keeps an open file's data). A
file deleted between the listing and the opening makes the read start again on a fresh listing.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from training.fileio import atomic_write_bytes

log = logging.getLogger(__name__)
MAX_SEGMENTS = 64
MERGE_BELOW_ROWS = 16384
SNAPSHOT_TRIES = 8
_SEGMENT = re.compile(r"^seg-(\d{10})\.npz$")


class FeatureStore:
    def __init__(self, root: str | Path, backbone_id: str, dim: int):
        self.dir = Path(root) / backbone_id
        self.backbone_id, self.dim = backbone_id, dim
        self._ids: dict[int, np.ndarray] = {}  # seq -> ids of that segment
        self._lock = threading.RLock()  # guards _ids between writers and readers' snapshots
        self.refresh()

    # -- reading ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Pick up segments written by another process and finish interrupted rewrites."""
        with self._lock:
            for seq in self._listing():
                if seq not in self._ids:
                    try:
                        ids, replaces = self._read(seq, with_features=False)
                    except FileNotFoundError:  # replaced by another process meanwhile
                        continue
                    self._ids[seq] = ids
                    for old in replaces:
                        self._path(old).unlink(missing_ok=True)
            for seq in set(self._ids) - set(self._listing()):
                del self._ids[seq]

    def _listing(self) -> list[int]:
        if not self.dir.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := _SEGMENT.match(p.name)))

    def _path(self, seq: int) -> Path:
        return self.dir / f"seg-{seq:010d}.npz"

    def _read(self, seq: int, with_features: bool = True):
        with np.load(self._path(seq)) as data:
            ids, replaces = data["ids"].astype(np.int64), data["replaces"].astype(np.int64).tolist()
            if with_features:
                return ids, data["features"]
        return ids, replaces

    def ids(self) -> np.ndarray:
        with self._lock:
            parts = [self._ids[seq] for seq in sorted(self._ids)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(ids) for ids in self._ids.values())

    @contextmanager
    def _snapshot(self) -> Iterator[list[tuple[np.ndarray, BinaryIO]]]:
        """[(ids, open segment file)] as the store is now; the files stay readable until the end."""
        for _ in range(SNAPSHOT_TRIES):
            with ExitStack() as files:
                with self._lock:
                    listed = sorted(self._ids.items())
                try:
                    opened = [(ids, files.enter_context(open(self._path(seq), "rb"))) for seq, ids in listed]
                except FileNotFoundError:  # rewritten meanwhile: list again
                    self.refresh()
                    continue
                yield opened
                return
        raise OSError(f"the feature store {self.dir} kept changing while it was read")

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, float16 features) segment by segment, from one snapshot."""
        with self._snapshot() as segments:
            for ids, handle in segments:
                if len(ids):
                    yield _load(handle)

    def get(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """(ids found, their features) for the wanted ids, in store order, from one snapshot."""
        wanted = np.asarray(ids, np.int64)
        found_ids, found = [], []
        with self._snapshot() as segments:
            for seg_ids, handle in segments:
                mask = np.isin(seg_ids, wanted)
                if mask.any():
                    seg_ids, features = _load(handle)
                    found_ids.append(seg_ids[mask])
                    found.append(features[mask])
        if not found:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float16)
        return np.concatenate(found_ids), np.concatenate(found)

    # -- writing ----------------------------------------------------------------------------

    def add(self, ids, features) -> np.ndarray:
        """Store rows; returns them as stored (float16), which is what a head will see later."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        features = np.asarray(features)
        if features.shape != (len(ids), self.dim):
            raise ValueError(f"expected features of shape ({len(ids)}, {self.dim}), got {features.shape}")
        stored = features.astype(np.float16)
        if len(ids):
            self._write(ids, stored, replaces=[])
            self._maybe_merge()
        return stored

    def remove(self, ids) -> int:
        """Drop the rows of these ids; returns how many were stored."""
        wanted = np.asarray(ids, np.int64)
        removed = 0
        for seq in sorted(dict(self._ids)):
            mask = np.isin(self._ids[seq], wanted)
            if mask.any():
                seg_ids, features = self._read(seq)
                self._write(seg_ids[~mask], features[~mask], replaces=[seq])
                removed += int(mask.sum())
        return removed

    def _write(self, ids: np.ndarray, features: np.ndarray, replaces: list[int]) -> None:
        self.refresh()
        seq = max(self._listing(), default=0) + 1
        buffer = io.BytesIO()
        np.savez(buffer, ids=ids, features=features, replaces=np.asarray(replaces, np.int64))
        atomic_write_bytes(self._path(seq), buffer.getvalue())
        with self._lock:
            self._ids[seq] = ids
            for old in replaces:  # only after the rewrite has landed; open readers keep their copy
                self._path(old).unlink(missing_ok=True)
                self._ids.pop(old, None)

    def _maybe_merge(self) -> None:
        if len(self._ids) <= MAX_SEGMENTS:
            return
        small = [seq for seq in sorted(self._ids) if len(self._ids[seq]) < MERGE_BELOW_ROWS]
        if len(small) < 2:
            return
        parts = [self._read(seq) for seq in small]
        ids = np.concatenate([p[0] for p in parts])
        features = np.concatenate([p[1] for p in parts])
        self._write(ids, features, replaces=small)
        log.info("merged %d feature segments (%d rows)", len(small), len(ids))

    def delete_all(self) -> None:
        """Remove this backbone's whole store (after the catalog moved to another backbone)."""
        with self._lock:
            for seq in self._listing():
                self._path(seq).unlink(missing_ok=True)
            self._ids.clear()


def _load(handle: BinaryIO) -> tuple[np.ndarray, np.ndarray]:
    """(ids, features) of an open segment file."""
    handle.seek(0)
    with np.load(handle) as data:
        return data["ids"].astype(np.int64), data["features"]
