"""The server's catch-up jobs: a catalog that loads with a backbone still to embed (`catalog.pending`,
index/catalog/reconcile.py) gets a `catch_up` job per such backbone, run in the background while
the other spaces answer. `GET /jobs/{id}` counts the sources embedded; `/readyz` names the job.
A job stopped by a shutdown is recorded as interrupted with its counts, and the next start
resumes where the stored features end.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Callable

from index.catalog import Catalog, catch_up, catch_up_running
from index.jobs.jobs import JobStopped, create_work_job, run_work_job

log = logging.getLogger(__name__)
CATCH_UP = "catch_up"


def start_catch_ups(catalog: Catalog, submit: Callable, should_stop: Callable[[], bool]) -> dict[str, str]:
    """Submit a catch-up job for each pending backbone that no other process (another server
    worker, `attrib reindex --backbone`) is catching up already; returns {backbone id: job id}."""
    started = {}
    for backbone_id, missing in sorted(catalog.pending.items()):
        if catch_up_running(catalog.home, backbone_id):
            continue
        job_id = create_work_job(catalog, CATCH_UP, missing)
        submit(run_work_job, catalog, job_id, _work(catalog, backbone_id, should_stop))
        log.warning("catching the catalog up with backbone %s: %d sources to embed (job %s)",
                    backbone_id, missing, job_id)
        started[backbone_id] = job_id
    return started


def _work(catalog: Catalog, backbone_id: str, should_stop: Callable[[], bool]):
    def work(progress: Callable[[int], None]) -> dict:
        done = catch_up(catalog, backbone_id, progress, should_stop)
        if not done.finished:
            raise JobStopped(f"stopped after {done.embedded} of {done.sources} sources; the next start resumes")
        return asdict(done)

    return work
