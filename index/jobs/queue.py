"""The ingestion queue for external workers (ATTRIB_INGEST_QUEUE=external, PostgreSQL only).

The server records a `queued` ingestion job and spools its files (index/jobs/jobs.py); an `attrib
worker` claims the oldest with `SELECT ... FOR UPDATE SKIP LOCKED`, setting it `running` under
its own owner name in the same transaction, so two workers never claim the same job.

Recovery: a `running` job whose owner is certainly gone (same host, index/jobs/processes.py) goes
back to `queued`, keeping its spool files and its recorded results; the next run resumes after
the files already recorded (index/jobs/jobs.py `run_job`), and files committed after the last recorded
batch come out as duplicates, as ingestion skips (concept, sha256) pairs already indexed. A job
orphaned MAX_ORPHANED times (one that kills its workers) is marked interrupted instead.

Owners on other hosts cannot be checked directly, so a running worker beats: it refreshes its
job's `updated_at` every HEARTBEAT_SECONDS (`beat`, from a thread in `attrib worker`). A job of
another host whose last beat is older than `stale_after` seconds counts as orphaned too. The
hosts' clocks must agree to well within `stale_after` (NTP).
"""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta

from sqlalchemy import select, update

from index.catalog import Catalog
from index.db import Job, utcnow
from index.jobs.jobs import spool_dir
from index.jobs.processes import is_alive, on_this_host

log = logging.getLogger(__name__)
QUEUED_KIND = "ingest"  # space builds and training still run in the server that accepted them
MAX_ORPHANED = 3
HEARTBEAT_SECONDS = 15.0
DEFAULT_STALE_AFTER = 120.0


def claim_next_job(catalog: Catalog, owner: str) -> str | None:
    """The oldest queued ingestion job, now `running` under `owner`; None when none is free."""
    with catalog.sessions.begin() as session:
        job = session.scalars(
            select(Job).where(Job.state == "queued", Job.kind == QUEUED_KIND)
            .order_by(Job.created_at, Job.id).limit(1).with_for_update(skip_locked=True)
        ).first()
        if job is None:
            return None
        job.state, job.owner = "running", owner
        return job.id


def release_job(catalog: Catalog, job_id: str) -> None:
    """Put a job this worker stopped between batches back in the queue (its spool files stay)."""
    with catalog.sessions.begin() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is not None and job.state == "running":
            job.state = "queued"


def beat(catalog: Catalog, job_id: str, owner: str) -> bool:
    """Refresh the running job's `updated_at` for its owner; False when it is no longer ours."""
    with catalog.sessions.begin() as session:
        done = session.execute(update(Job).where(Job.id == job_id, Job.owner == owner, Job.state == "running")
                               .values(updated_at=utcnow()))
    return done.rowcount == 1


def _orphaned(job: Job, stale_after: float) -> bool:
    """Its owner is certainly gone (this host), or has not beaten for `stale_after` s (another host)."""
    if not job.owner or not is_alive(job.owner):
        return True
    return not on_this_host(job.owner) and job.updated_at < utcnow() - timedelta(seconds=stale_after)


def requeue_orphans(catalog: Catalog, stale_after: float = DEFAULT_STALE_AFTER) -> list[str]:
    """Running ingestion jobs of processes that are gone: back to `queued`, or `interrupted` after
    MAX_ORPHANED tries. Returns the ids requeued."""
    requeued, given_up = [], []
    with catalog.sessions.begin() as session:
        running = session.scalars(
            select(Job).where(Job.state == "running", Job.kind == QUEUED_KIND).with_for_update(skip_locked=True))
        for job in running:
            if not _orphaned(job, stale_after):
                continue
            if _count_orphaning(catalog, job.id) >= MAX_ORPHANED:
                job.state = "interrupted"
                job.error = (f"the workers running this job stopped {MAX_ORPHANED} times before it finished: "
                             f"{job.done} of {job.total} files were processed (their results are listed)")
                given_up.append(job.id)
            else:
                job.state, job.owner = "queued", None
                requeued.append(job.id)
    for job_id in given_up:
        shutil.rmtree(spool_dir(catalog, job_id), ignore_errors=True)
    if requeued or given_up:
        log.warning("jobs of workers that are gone: requeued %s, given up %s", requeued, given_up)
    return requeued


def _count_orphaning(catalog: Catalog, job_id: str) -> int:
    """Record one more orphaning of the job beside its spooled files; returns the count so far."""
    marks = spool_dir(catalog, job_id) / "orphaned"
    try:
        with open(marks, "a+") as handle:
            handle.write("x")
            handle.seek(0)
            return len(handle.read())
    except FileNotFoundError:  # no spool folder: nothing to run again
        return MAX_ORPHANED
