"""`attrib worker`: runs ingestion jobs that the API server queued (ATTRIB_INGEST_QUEUE=external).

Several workers, on one machine or several, share the database and ATTRIB_HOME: each claims the
oldest free job (index/queue.py), runs it (index/jobs.py `run_job`) and looks for the next,
waiting `poll_seconds` when the queue is empty. SIGTERM or SIGINT stops the worker after the
current batch is committed and recorded; the job goes back to the queue and resumes from there.
A second signal stops it at once: the job stays `running` until a worker finds its owner gone
and requeues it. While it runs a job, a thread beats for it (index/queue.py `beat`), so that
workers on other hosts can tell a live worker from a lost one.
"""

from __future__ import annotations

import logging
import signal
import threading

from index.catalog import Catalog
from index.jobs import get_job, run_job
from index.processes import this_process
from index.queue import (DEFAULT_STALE_AFTER, HEARTBEAT_SECONDS, beat, claim_next_job, release_job,
                         requeue_orphans)

log = logging.getLogger(__name__)


def run_worker(catalog: Catalog, poll_seconds: float, once: bool, stop: threading.Event,
               stale_after: float = DEFAULT_STALE_AFTER) -> int:
    """Claim and run jobs until `stop` is set (or, with `once`, until the queue is empty);
    returns how many jobs this worker ran to an end."""
    owner, finished = this_process(), 0
    log.info("worker %s: waiting for ingestion jobs", owner)
    while not stop.is_set():
        requeue_orphans(catalog, stale_after)
        job_id = claim_next_job(catalog, owner)
        if job_id is None:
            if once:
                break
            stop.wait(poll_seconds)
            continue
        log.info("job %s claimed", job_id)
        with Heartbeat(catalog, job_id, owner):
            run_job(catalog, job_id, should_stop=stop.is_set)
        job = get_job(catalog, job_id)
        if job.state == "running":  # stopped between batches
            release_job(catalog, job_id)
            log.info("job %s back in the queue after %d of %d files", job_id, job.done, job.total)
        else:
            finished += 1
            log.info("job %s %s: %d of %d files", job_id, job.state, job.done, job.total)
    return finished


class Heartbeat:
    """Beats for a job every `seconds` in a daemon thread while the `with` block runs."""

    def __init__(self, catalog: Catalog, job_id: str, owner: str, seconds: float = HEARTBEAT_SECONDS):
        self._args, self._seconds, self._done = (catalog, job_id, owner), seconds, threading.Event()
        self._thread = threading.Thread(target=self._run, name="attrib-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._done.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._done.wait(self._seconds):
            try:
                beat(*self._args)
            except Exception:  # a missed beat is retried; the job itself goes on
                log.exception("heartbeat for job %s failed", self._args[1])


def stop_on_signals() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT; the second one interrupts at once."""
    stop = threading.Event()

    def handle(number, _frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.warning("%s: stopping after the current batch (again to stop now)", signal.Signals(number).name)
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, handle)
    return stop
