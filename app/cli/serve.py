"""`attrib serve` (the HTTP API) and `attrib worker` (runs the ingestion jobs the server queued)."""

from __future__ import annotations

import logging
import os
import sys

from app.settings import MAX_POLL_SECONDS, MAX_WORKERS, Settings
from training.errors import AttribError


def add_serve_parser(commands) -> None:
    serve = commands.add_parser("serve", help="start the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, metavar="N",
                       help="worker processes on one socket (default: ATTRIB_WORKERS, 1); see docs/performance.md")
    serve.set_defaults(handler=cmd_serve)

    worker = commands.add_parser("worker", help="run ingestion jobs queued by the server (ATTRIB_INGEST_QUEUE=external)")
    worker.add_argument("--poll-seconds", type=float, metavar="S",
                        help="wait between looks at an empty queue (default: ATTRIB_WORKER_POLL_SECONDS, 2)")
    worker.add_argument("--once", action="store_true", help="run the queued jobs, then exit when none is left")
    worker.set_defaults(handler=cmd_worker)


def cmd_serve(args, _rest) -> int:
    from app.timeouts import run_server, server_config

    settings = Settings()
    workers = settings.workers if args.workers is None else args.workers
    if workers < 1:
        raise AttribError(f"--workers must be at least 1, not {workers}", code="bad_argument")
    if workers > MAX_WORKERS:
        raise AttribError(f"--workers must be at most {MAX_WORKERS}, not {workers}", code="bad_argument")
    os.environ["ATTRIB_WORKERS"] = str(workers)  # the workers read their settings (mapped indexes) from it
    run_server(server_config(settings, args.host, args.port, workers))
    return 0


def cmd_worker(args, _rest) -> int:
    from app.services import open_catalog
    from app.worker import run_worker, stop_on_signals

    settings = Settings()
    if settings.ingest_queue != "external":
        raise AttribError("`attrib worker` runs jobs queued for workers: set ATTRIB_INGEST_QUEUE=external (with a "
                          "PostgreSQL database) for the server and the workers", code="queue_not_external")
    poll = settings.worker_poll_seconds if args.poll_seconds is None else args.poll_seconds
    if not 0 < poll <= MAX_POLL_SECONDS:  # also refuses nan
        raise AttribError(f"--poll-seconds must be positive and at most {MAX_POLL_SECONDS:g}, not {poll}",
                          code="bad_argument")
    logging.getLogger("app.worker").setLevel(logging.INFO)
    logging.getLogger("index.jobs.jobs").setLevel(logging.INFO)
    stop = stop_on_signals()
    catalog = open_catalog(settings)
    try:
        finished = run_worker(catalog, poll, args.once, stop, settings.worker_stale_seconds)
    finally:
        catalog.close()
    print(f"worker stopped: ran {finished} jobs", file=sys.stderr)
    return 0
