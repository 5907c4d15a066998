"""Search spaces: list them, put a new head live without downtime, roll back, calibrate."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from app.deps import AdminWrite, AdminWriter, CatalogDep, ReadAccess, SettingsDep
from app.routes.uploads import read_single_upload
from app.schemas import JobAccepted, SpaceOut, error_responses
from index.calibration import (decision_queries, fit_summary, labelled_fits, labelled_work, put_live, record_fit, refit,
                               rollback)
from index.catalog import SpaceInfo, check_name, prepare_head
from index.jobs import create_work_job, run_work_job
from training.calibration import DECISIONS

router = APIRouter(tags=["spaces"])


def space_out(info: SpaceInfo, self_check: dict | None = None) -> SpaceOut:
    return SpaceOut(
        name=info.name, head_id=info.head_id, head="identity" if info.head_path is None else "trained",
        backbone=info.backbone, backbone_id=info.backbone_id, dim=info.dim, factory=info.factory, count=info.count,
        built_at=info.built_at, previous_head_id=info.previous_head_id, self_check=self_check,
    )


@router.get("/spaces", response_model=list[SpaceOut], dependencies=[ReadAccess],
            responses=error_responses(401), summary="The catalog's search spaces and their heads")
def list_spaces(catalog: CatalogDep) -> list[SpaceOut]:
    return [space_out(space.info, space.head.self_check) for _, space in sorted(catalog.spaces().items())]


@router.put(
    "/spaces/{name}", status_code=202, response_model=JobAccepted, dependencies=[AdminWrite],
    responses=error_responses(400, 401, 403, 413), summary="Put a new head live in a space (built in the background; admin)",
)
def put_space(
    name: str, request: Request, catalog: CatalogDep, settings: SettingsDep,
    checkpoint: UploadFile | None = File(None, description="An `attrib train` checkpoint; omit for the identity head."),
    force: bool = Query(False, description="Put the head live even though it lost its self-check to the raw backbone."),
) -> JSONResponse:
    """The head is checked at once: one trained on another backbone, for another feature width,
    or an unreadable file is refused with 422 and the space keeps serving as before, as is a head
    that lost its own self-check to the raw backbone (`head_loses_self_check`) unless `force`. A good head's
    index is then built from the stored features in the background (`GET /jobs/{id}` shows
    progress) and swapped in atomically: requests keep being answered by the old head until the
    switch, and by the new one after it. The replaced head stays available for rollback."""
    check_name(name)
    head, kept = _checked_head(catalog, checkpoint, settings.max_request_bytes, force)
    total = len(catalog.features)
    job_id = create_work_job(catalog, "space_build", total)

    def build(progress) -> dict:
        info = put_live(catalog, name, head, kept, progress)
        return {"space": info.name, "head_id": info.head_id, "count": info.count}

    request.app.state.executor.submit(run_work_job, catalog, job_id, build)
    url = f"/jobs/{job_id}"
    body = JobAccepted(job_id=job_id, state="queued", total=total, status_url=url)
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": url})


def _checked_head(catalog, upload: UploadFile | None, limit: int, force: bool):
    if upload is None:
        return prepare_head(catalog, None)
    data = read_single_upload(upload, limit)
    spool = catalog.home / "spool"  # the sweep removes what a crash leaves here
    spool.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=spool) as folder:
        path = Path(folder) / "head.pt"
        path.write_bytes(data)
        return prepare_head(catalog, path, force)


@router.post("/spaces/{name}/rollback", response_model=SpaceOut, dependencies=[AdminWrite],
             responses=error_responses(401, 403, 404, 409), summary="Put a space's previous head back live (admin)")
def rollback_space(name: str, catalog: CatalogDep) -> SpaceOut:
    info = rollback(catalog, check_name(name))
    return space_out(info, catalog.spaces()[info.name].head.self_check)


@router.post(
    "/spaces/{name}/calibration", status_code=202, response_model=JobAccepted,
    responses=error_responses(401, 403, 404, 422), summary="Fit a space's calibrated probabilities again (admin)",
)
def calibrate_space(
    name: str, request: Request, catalog: CatalogDep, actor: AdminWriter,
    source: Literal["decisions", "catalog"] = Query(
        "decisions", alias="from", description="`decisions`: from the review desk's decided cases (at least 20); "
        "`catalog`: the label-free self-fit, redone."),
) -> JSONResponse:
    """`attrib calibrate --from-decisions --space NAME` (or `attrib calibrate --space NAME`) in the
    background, for the live head of the space: `GET /jobs/{id}` counts backbone forwards, then
    gives the fit. Too few decided cases is refused at once (422 `too_few_decisions`), and the
    space keeps its fit. Answers use the new fit as soon as it is stored; the audit log records it
    (`calibration.fit`)."""
    spaces = {name: catalog.live_space(check_name(name))}
    if source == "decisions":
        queries = decision_queries(catalog)
        total = labelled_work(spaces, queries)

        def fit(progress):
            return labelled_fits(catalog, spaces, queries, f"reviewers' decisions on {len(queries)} cases",
                                 DECISIONS, progress)[name]
    else:
        total = 0

        def fit(progress):
            return refit(catalog, spaces[name])
    def work(progress) -> dict:
        calibration = fit(progress)
        record_fit(catalog, actor, name, calibration)
        return _fitted(name, calibration)

    job_id = create_work_job(catalog, "calibrate", total)
    request.app.state.executor.submit(run_work_job, catalog, job_id, work)
    url = f"/jobs/{job_id}"
    body = JobAccepted(job_id=job_id, state="queued", total=total, status_url=url)
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": url})


def _fitted(space: str, calibration) -> dict:
    summary = calibration.summary or {}
    return {"space": space, **fit_summary(calibration), "fit_none_auroc": _finite(summary.get("fit_none_auroc")),
            "fit_top1_ece": _finite(summary.get("fit_top1_ece"))}


def _finite(value) -> float | None:
    """None for a figure that could not be computed (NaN), which JSON columns cannot hold."""
    return value if value is not None and math.isfinite(value) else None
