"""Background work: ingestion jobs and work jobs (space builds, calibrations, training) recorded
in the database (jobs.py), the queue that `attrib worker` processes claim them from (queue.py),
which process owns a job (processes.py), and the sweep that finishes what a crash left half done
(sweeper.py).
"""

from index.jobs.catch_ups import CATCH_UP, start_catch_ups
from index.jobs.jobs import (TransientFailure, create_job, create_work_job, get_job, is_transient, mark_interrupted,
                             run_job, run_work_job)
from index.jobs.processes import this_process
from index.jobs.queue import (DEFAULT_STALE_AFTER, HEARTBEAT_SECONDS, QUEUED_KIND, beat, claim_next_job, release_job,
                              requeue_orphans)
from index.jobs.sweeper import sweep
from index.jobs.consistency import Problem, Report, open_as_found, repair, verify

__all__ = ["CATCH_UP", "DEFAULT_STALE_AFTER", "Problem", "Report", "open_as_found", "repair", "verify", "HEARTBEAT_SECONDS", "QUEUED_KIND", "TransientFailure", "beat", "claim_next_job",
           "create_job", "create_work_job", "get_job", "is_transient", "mark_interrupted", "release_job",
           "requeue_orphans", "run_job", "run_work_job", "start_catch_ups", "sweep", "this_process"]
