from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.attribution import unavailable_reason
from app.deps import MetricsDep
from app.schemas import ReadyResponse, SpaceStatus
from index.catalog import COPY, catalog_counts, job_counts
from index.desk import case_counts, decision_counts
from training.errors import AttribError

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])
JOB_STATES = ("queued", "running", "succeeded", "failed", "interrupted")


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/ui")  # the reviewer page; it links the API docs (/docs)


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyResponse,
            responses={503: {"model": ReadyResponse, "description": "Not ready; `checks` says why."}},
            summary="Readiness: encoder, search spaces, database and vector store; every space's size, head and build time")
def readyz(request: Request):
    checks = readiness_checks(request.app)
    ready = all(value == "ok" for value in checks.values())
    spaces, waiting = {}, {}
    if checks["index"] == "ok":
        catalog = request.app.state.catalog
        spaces = {name: SpaceStatus(backbone=space.info.backbone, head_id=space.info.head_id, count=len(space.index),
                                    built_at=space.info.built_at)
                  for name, space in catalog.spaces().items()}
        jobs = getattr(request.app.state, "catch_ups", {})
        if COPY not in spaces:
            job = jobs.get(catalog.copy.backbone_id) if catalog.copy else None
            waiting[COPY] = unavailable_reason(catalog, COPY) + (f"; progress: GET /jobs/{job}" if job else "")
    body = ReadyResponse(ready=ready, checks=checks, spaces=spaces, waiting=waiting)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


def readiness_checks(app) -> dict[str, str]:
    catalog = app.state.catalog
    if catalog is None:
        reason = app.state.load_error or "not loaded"
        return {"encoder": reason, "index": reason, "database": reason, "vector_store": reason}
    checks = {"encoder": "ok"}
    try:
        checks["index"] = "ok" if catalog.spaces() else "no search spaces"
    except AttribError as exc:
        checks["index"] = exc.message
    try:
        with catalog.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means unreachable
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        catalog.stores.check()
        checks["vector_store"] = "ok"
    except AttribError as exc:
        checks["vector_store"] = exc.message
    return checks


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}})
def metrics(request: Request, registry: MetricsDep) -> Response:
    catalog = request.app.state.catalog
    batchers = getattr(request.app.state, "batchers", None) or {}
    if batchers:
        registry.infer_queue.set(sum(batcher.depth() for batcher in batchers.values()))
    if catalog is not None:
        try:
            counts = catalog_counts(catalog.sessions)
            registry.sources.set(counts["sources"])
            registry.concepts.set(counts["concepts"])
            registry.set_spaces(catalog.spaces())
            jobs = job_counts(catalog.sessions)
            for state in JOB_STATES:
                registry.jobs.labels(state).set(jobs.get(state, 0))
            registry.set_desk(case_counts(catalog.sessions), decision_counts(catalog.sessions))
        except Exception as exc:  # metrics must answer even when the database does not
            log.warning("catalog gauges not updated: %s", exc)
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
