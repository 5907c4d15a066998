"""The sweep: at start-up and periodically, finish what a crash left half done.

- takedowns recorded but not finished are finished (features, vectors, images, thumbnails);
- stored images and thumbnails that no source or case row uses are removed (a crash between storing
  an image and committing its row leaves one);
- spool folders of jobs that are not queued or running (or that never got a job row, because
  the upload was cut before the 202) are removed;
- temp files of interrupted atomic writes (`.<name>.*.tmp`) are removed;
- queries past the pool's retention limits are dropped.

It runs under the catalog's write lock, so no ingest or takedown is in flight meanwhile. Files
younger than `min_age` seconds are left alone (an upload being spooled, a thumbnail being made).
Everything removed is logged.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from sqlalchemy import select

from index.catalog import Catalog, QueryPool, finish_pending
from index.db import Case, Job, Source
from index.jobs.jobs import UNFINISHED

log = logging.getLogger(__name__)
TMP_GLOB = ".*.tmp"


def sweep(catalog: Catalog, min_age: float = 600.0, pool: QueryPool | None = None) -> dict[str, int]:
    with catalog.write_lock():
        removed = {"takedowns_finished": len(finish_pending(catalog))}
        if pool is not None:
            removed["expired_queries"] = pool.enforce_retention()
        with catalog.sessions() as session:
            used = set(session.scalars(select(Source.sha256).distinct()))
            used |= set(session.scalars(select(Case.sha256).distinct()))  # review cases' query images
            live_jobs = set(session.scalars(select(Job.id).where(Job.state.in_(UNFINISHED))))
        cutoff = time.time() - min_age
        removed["images"] = _remove(p for p in _files(catalog.blobs.root) if p.name not in used and _old(p, cutoff))
        removed["thumbnails"] = _remove(
            p for p in _files(catalog.blobs.thumbnails) if p.name.split("_")[0] not in used and _old(p, cutoff))
        removed["spool_folders"] = _remove_dirs(
            p for p in _children(catalog.home / "spool") if p.name not in live_jobs and _old(p, cutoff))
        removed["temp_files"] = _remove(p for p in catalog.home.rglob(TMP_GLOB) if p.is_file() and _old(p, cutoff))
    if any(removed.values()):
        log.warning("sweep removed %s", ", ".join(f"{n} {what}" for what, n in removed.items() if n))
    return removed


def _files(root: Path):
    return (p for p in root.glob("*/*") if p.is_file() and not p.name.startswith(".")) if root.is_dir() else ()


def _children(root: Path):
    return (p for p in root.iterdir() if p.is_dir()) if root.is_dir() else ()


def _old(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime <= cutoff
    except FileNotFoundError:
        return False


def _remove(paths) -> int:
    count = 0
    for path in list(paths):
        path.unlink(missing_ok=True)
        count += 1
    return count


def _remove_dirs(paths) -> int:
    count = 0
    for path in list(paths):
        shutil.rmtree(path, ignore_errors=True)
        count += 1
    return count
