from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from app.deps import CatalogDep, IngestWriter, KeyAccess, SettingsDep
from app.errors import ApiError
from app.manifest import parse_manifest
from app.params import JobId
from app.routes.uploads import filename_problem, read_limited, shown_filename, too_large_message
from app.schemas import (CalibrationJobOut, CatchUpOut, IndexResponse, IngestResultOut, JobAccepted, JobOut, SpaceBuildOut,
                         TrainOut, error_responses)
from index.ingest import IngestItem, ingest
from index.jobs import create_job, get_job

router = APIRouter(tags=["ingestion"])

MANIFEST_HELP = (
    'JSON naming each file\'s concept: either {"<filename>": "<concept>", ...} or '
    '[{"filename": ..., "concept": ..., "meta": {...}}, ...].'
)


@router.post(
    "/index",
    response_model=IndexResponse,
    responses={202: {"model": JobAccepted, "description": "Large batch accepted as a background job."},
               **error_responses(400, 401, 413)},
    summary="Add a batch of source images to the catalog",
)
def index_files(
    request: Request,
    catalog: CatalogDep,
    settings: SettingsDep,
    actor: IngestWriter,
    files: list[UploadFile] = File(..., description="The images."),
    concept: list[str] | None = Form(None, description="One concept for all files, or one per file in order."),
    manifest: str | None = Form(None, description=MANIFEST_HELP),
):
    """Each file is `indexed`, a `duplicate` (same bytes, same concept) or `rejected` with a reason;
    one bad file never fails the others. Batches over ATTRIB_ASYNC_BATCH_FILES files answer 202
    with a job to poll at GET /jobs/{id}, run by this server or, with ATTRIB_INGEST_QUEUE=external,
    by an `attrib worker`."""
    names = concept_names(files, concept, manifest)
    items = [upload_item(upload, name, meta, settings.max_upload_bytes) for upload, (name, meta) in zip(files, names)]
    if len(items) > settings.async_batch_files:
        job_id = create_job(catalog, items, actor)
        if settings.ingest_queue == "inline":  # else an `attrib worker` claims it (index/jobs/queue.py)
            request.app.state.executor.submit(request.app.state.run_job, catalog, job_id, actor)
        url = f"/jobs/{job_id}"
        body = JobAccepted(job_id=job_id, state="queued", total=len(items), status_url=url)
        return JSONResponse(body.model_dump(), status_code=202, headers={"Location": url})
    results = [IngestResultOut(**asdict(result)) for result in ingest(catalog, items, actor=actor)]
    return IndexResponse(**tally(results), results=results)


def upload_item(upload: UploadFile, concept: str | None, meta: dict, limit: int) -> IngestItem:
    filename = upload.filename or "upload"
    problem = filename_problem(filename)
    if problem:
        return IngestItem(shown_filename(filename), concept, data=b"", meta=meta, rejection=("bad_filename", problem))
    data = read_limited(upload, limit)
    if data is None:
        return IngestItem(filename, concept, data=b"", meta=meta,
                          rejection=("file_too_large", too_large_message(upload, limit)))
    return IngestItem(filename, concept, data=data, meta=meta)


def concept_names(files: list[UploadFile], concepts: list[str] | None, manifest: str | None) -> list[tuple]:
    """(concept, meta) for each file, from the manifest or from the `concept` fields."""
    if manifest is not None:
        by_name = parse_manifest(manifest)
        return [by_name.get(upload.filename or "", (None, {})) for upload in files]
    if not concepts:
        raise ApiError("give each file a concept: a `concept` form field or a JSON `manifest` part",
                       code="missing_concept", status=422)
    if len(concepts) == 1:
        return [(concepts[0], {})] * len(files)
    if len(concepts) != len(files):
        raise ApiError(f"got {len(concepts)} `concept` fields for {len(files)} files: give one, or one per file",
                       code="bad_manifest", status=422)
    return [(name, {}) for name in concepts]


def tally(results: list[IngestResultOut]) -> dict[str, int]:
    return {
        "indexed": sum(r.status == "indexed" for r in results),
        "duplicates": sum(r.status == "duplicate" for r in results),
        "rejected": sum(r.status == "rejected" for r in results),
    }


@router.get("/jobs/{job_id}", response_model=JobOut, responses=error_responses(401, 404), dependencies=[KeyAccess],
            summary="State and progress of a background job (ingestion, a space build, training, a calibration, "
            "a backbone's catch-up)")
def job_status(job_id: JobId, catalog: CatalogDep) -> JobOut:
    job = get_job(catalog, job_id)
    outcome = job.results[0] if job.kind != "ingest" and job.results else None
    space = SpaceBuildOut(**outcome) if job.kind == "space_build" and outcome else None
    train = TrainOut(**outcome) if job.kind == "train" and outcome else None
    calibration = CalibrationJobOut(**outcome) if job.kind == "calibrate" and outcome else None
    catch_up = CatchUpOut(**outcome) if job.kind == "catch_up" and outcome else None
    results = [IngestResultOut(**result) for result in job.results] if job.kind == "ingest" else []
    return JobOut(
        id=job.id, kind=job.kind, state=job.state, total=job.total, done=job.done, **tally(results),
        results=results, space=space, train=train, calibration=calibration, catch_up=catch_up, error=job.error,
        created_at=job.created_at, updated_at=job.updated_at,
    )
