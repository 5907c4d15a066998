"""`attrib worker`: runs ingestion jobs that the API server queued (ATTRIB_INGEST_QUEUE=external).

Several workers, on one machine or several, share the database and ATTRIB_HOME: each claims the
oldest free job (index/queue.py), runs it (index/jobs.py `run_job`) and looks for the next,
waiting `poll_seconds` when the queue is empty. SIGTERM or SIGINT stops the worker after the
current batch is committed and recorded; the job goes back to the queue and resumes from there.
A second signal stops it at once: the job stays `running` until a worker finds its owner gone
and requeues it.
"""

from __future__ import annotations

import logging
import signal
import threading

from index.catalog import Catalog
from index.jobs import get_job, run_job
from index.processes import this_process
from index.queue import claim_next_job, release_job, requeue_orphans

log = logging.getLogger(__name__)


def run_worker(catalog: Catalog, poll_seconds: float, once: bool, stop: threading.Event) -> int:
    """Claim and run jobs until `stop` is set (or, with `once`, until the queue is empty);
    returns how many jobs this worker ran to an end."""
    owner, finished = this_process(), 0
    log.info("worker %s: waiting for ingestion jobs", owner)
    while not stop.is_set():
        requeue_orphans(catalog)
        job_id = claim_next_job(catalog, owner)
        if job_id is None:
            if once:
                break
            stop.wait(poll_seconds)
            continue
        log.info("job %s claimed", job_id)
        run_job(catalog, job_id, should_stop=stop.is_set)
        job = get_job(catalog, job_id)
        if job.state == "running":  # stopped between batches
            release_job(catalog, job_id)
            log.info("job %s back in the queue after %d of %d files", job_id, job.done, job.total)
        else:
            finished += 1
            log.info("job %s %s: %d of %d files", job_id, job.state, job.done, job.total)
    return finished


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
