"""FastAPI application factory. The encoder and the catalog load once, in the lifespan."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.middleware.cors import CORSMiddleware

from app.batcher import ForwardBatcher
from app.errors import install_error_handlers
from app.metrics import BodyLimitMiddleware, Metrics, MetricsMiddleware
from app.ratelimit import RateLimits
from app.routes import (attribute, audit, case_reports, cases, catalog, evidence, ingest, keys, ops, pool, spaces,
                        training, ui)
from app.services import open_catalog, open_pool
from app.settings import Settings
from app.strict import strict_request
from app.timeouts import BodyTimeoutMiddleware
from index.jobs import QUEUED_KIND, mark_interrupted, requeue_orphans, run_job, start_catch_ups, sweep
from training.errors import AttribError
from training.heap import hold_large_buffers_apart

log = logging.getLogger(__name__)
STARTUP_SWEEP_MIN_AGE = 60.0  # another process (the CLI) may be writing files right now

DESCRIPTION = """
Which training-source concepts did a synthetic image most likely come from?

* `POST /attribute` ranks concepts for an uploaded image in every space (`copy`: SSCD's copy-detection
  descriptors; `style`: raw Lite0 features; `content`: a trained head), with the best sources as
  evidence, from one forward of each backbone.
* `GET /spaces`, `PUT /spaces/{name}`: the spaces and their heads; a new head goes live without downtime.
* `/ui` is the reviewer page: upload, decide, work the queue of cases.
* `POST /index` adds source images; large batches run as background jobs (`GET /jobs/{id}`).
* The review desk: `POST /cases` keeps a query with its answer; decisions, rescores, reports,
  exports; `GET /audit` records every write.
* Write endpoints need an `X-API-Key` header (keys: `attrib keys create`) whose role allows them:
  `ingest` (source writes), `reviewer` (cases and decisions), `admin` (everything). Writes and failed
  authentications are rate-limited per key and per client address (429 with `Retry-After`).

Errors are JSON: `{"error": {"code": "...", "message": "..."}}` with a stable `code`.
"""


def inference_batchers(catalog, settings: Settings, metrics: Metrics) -> dict[str, ForwardBatcher]:
    """One inference thread per backbone for every /attribute forward (app/batcher.py), by backbone id."""
    encoder = catalog.encoder
    forwards = {bid: backbone.features_of_pixels for bid, backbone in catalog.backbones.items()}
    forwards[encoder.backbone_id] = lambda pixels: encoder.features(pixels.to(encoder.device))
    return {bid: ForwardBatcher(forward, settings.infer_batch_images, settings.infer_batch_wait_ms,
                                settings.infer_queue, on_batch=metrics.infer_batch.observe)
            for bid, forward in forwards.items()}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        hold_large_buffers_apart()  # uploads and decodes are freed back to the system, not kept
        app.state.settings, app.state.metrics, app.state.run_job = settings, metrics, run_job
        app.state.limits = RateLimits(settings.write_rate_per_minute, settings.write_burst,
                                      settings.auth_failures_per_minute, settings.auth_failure_burst)
        app.state.catalog, app.state.load_error = load_catalog(settings)
        loaded = app.state.catalog
        app.state.pool = open_pool(settings, loaded.sessions) if loaded else None
        if loaded:
            sweep(loaded, pool=app.state.pool, min_age=STARTUP_SWEEP_MIN_AGE)
        app.state.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attrib-job")
        app.state.batchers = inference_batchers(loaded, settings, metrics) if loaded else {}
        stopping, catch_ups = threading.Event(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="attrib-catch-up")
        app.state.catch_ups = start_catch_ups(loaded, catch_ups.submit, stopping.is_set) if loaded else {}
        sweeper = Sweeper(loaded, app.state.pool, settings.sweep_seconds) if loaded else None
        yield
        if sweeper:
            sweeper.stop()
        stopping.set()  # a catch-up stops after its batch and is recorded as interrupted
        catch_ups.shutdown(wait=True)
        for batcher in app.state.batchers.values():
            batcher.close()
        # A running job finishes; queued ones are cancelled and reported as interrupted on restart.
        app.state.executor.shutdown(wait=True, cancel_futures=True)
        if app.state.catalog is not None:
            app.state.catalog.close()

    app = FastAPI(title="attrib", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  dependencies=[Depends(strict_request)])
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    app.add_middleware(BodyTimeoutMiddleware, seconds=settings.body_timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "PUT", "DELETE"], allow_headers=["X-API-Key"],
                           expose_headers=["Retry-After", "Location"], max_age=600)
    # case_reports before cases: GET /cases/export must not be read as GET /cases/{case_id}
    for module in (attribute, ingest, catalog, spaces, pool, training, case_reports, cases, evidence, audit, keys, ops,
                   ui):
        app.include_router(module.router)
    return app


def load_catalog(settings: Settings):
    """(catalog, None) when everything loaded, else (None, reason) so /readyz can say why."""
    try:
        catalog = open_catalog(settings)
    except AttribError as exc:
        log.error("cannot open the catalog: %s", exc.message)
        return None, exc.message
    try:
        catalog.spaces()  # load and reconcile now rather than on the first request
    except AttribError as exc:
        log.error("cannot load the search spaces: %s", exc.message)
        catalog.close()
        return None, exc.message
    external = settings.ingest_queue == "external"
    if external:  # queued ingestion jobs wait for `attrib worker`s; those of dead workers go back
        requeue_orphans(catalog, settings.worker_stale_seconds)
    interrupted = mark_interrupted(catalog, external_kinds=(QUEUED_KIND,) if external else ())
    if interrupted:
        log.warning("%d jobs were interrupted by the last shutdown", interrupted)
    return catalog, None


class Sweeper:
    """Runs the sweep every `seconds` in a daemon thread until stopped."""

    def __init__(self, catalog, pool, seconds: float):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(catalog, pool, seconds), name="attrib-sweep",
                                        daemon=True)
        self._thread.start()

    def _run(self, catalog, pool, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                sweep(catalog, pool=pool)
            except Exception:  # the next round tries again; the server keeps answering
                log.exception("sweep failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
