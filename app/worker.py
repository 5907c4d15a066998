"""`attrib worker`: runs ingestion jobs that the API server queued (ATTRIB_INGEST_QUEUE=external).

Several workers, on one machine or several, share the database and ATTRIB_HOME: each claims the
oldest free job (index/jobs/queue.py), runs it (index/jobs/jobs.py `run_job`) and looks for the next,
waiting `poll_seconds` when the queue is empty. SIGTERM or SIGINT stops the worker after the
current batch is committed and recorded; the job goes back to the queue and resumes from there.
A second signal stops it at once: the job stays `running` until a worker finds its owner gone
and requeues it. While it runs a job, a thread beats for it (index/jobs/queue.py `beat`), so that
workers on other hosts can tell a live worker from a lost one.
"""

from __future__ import annotations

import logging
import signal
import threading

from index.catalog import Catalog
from index.jobs import (DEFAULT_STALE_AFTER, HEARTBEAT_SECONDS, TransientFailure, beat, claim_next_job, get_job,
                        is_transient, release_job, requeue_orphans, run_job, this_process)

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 60.0


def run_worker(catalog: Catalog, poll_seconds: float, once: bool, stop: threading.Event,
               stale_after: float = DEFAULT_STALE_AFTER) -> int:
    """Claim and run jobs until `stop` is set (or, with `once`, until the queue is empty);
    returns how many jobs this worker ran to an end. While the database or the vector store is
    out, the job in hand goes back to the queue and the worker waits, twice as long each time
    (up to MAX_BACKOFF_SECONDS), then reloads the catalog, which repairs a half-stored batch."""
    owner, finished, backoff = this_process(), 0, poll_seconds
    log.info("worker %s: waiting for ingestion jobs", owner)
    while not stop.is_set():
        try:
            outcome = _next_job(catalog, owner, stop, stale_after)
        except Exception as exc:  # an outage is waited out; anything else ends the worker
            if not (isinstance(exc, TransientFailure) or is_transient(exc)):
                raise
            log.warning("the database or the vector store is not answering (%s); trying again in %.0f s", exc, backoff)
            catalog.use_features(None)  # reload (and reconcile) before the next batch
            stop.wait(backoff)
            backoff = min(2 * backoff, MAX_BACKOFF_SECONDS)
            continue
        backoff = poll_seconds
        if outcome is None:
            if once:
                break
            stop.wait(poll_seconds)
        elif outcome:
            finished += 1
    return finished


def _next_job(catalog: Catalog, owner: str, stop: threading.Event, stale_after: float) -> bool | None:
    """Run the next queued job: None when there is none, else whether it ended."""
    requeue_orphans(catalog, stale_after)
    job_id = claim_next_job(catalog, owner)
    if job_id is None:
        return None
    log.info("job %s claimed", job_id)
    try:
        with Heartbeat(catalog, job_id, owner):
            run_job(catalog, job_id, should_stop=stop.is_set, retry_transient=True)
    except TransientFailure:
        _release(catalog, job_id, stop)
        raise
    job = get_job(catalog, job_id)
    if job.state == "running":  # stopped between batches
        release_job(catalog, job_id)
        log.info("job %s back in the queue after %d of %d files", job_id, job.done, job.total)
        return False
    log.info("job %s %s: %d of %d files", job_id, job.state, job.done, job.total)
    return True


def _release(catalog: Catalog, job_id: str, stop: threading.Event) -> None:
    """Put the job back in the queue, waiting for the database if it is the one that is out."""
    while True:
        try:
            release_job(catalog, job_id)
            log.warning("job %s back in the queue", job_id)
            return
        except Exception as exc:
            if not is_transient(exc):
                raise
            if stop.wait(MAX_BACKOFF_SECONDS / 4):
                return  # stopping: the job stays `running` until it is found orphaned


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
