"""POST /train: train a head on the catalog's sources and the query pool, in the background."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from app.deps import AdminWrite, CatalogDep
from app.errors import ApiError
from app.schemas import JobAccepted, error_responses
from index.calibration import put_live
from index.catalog import check_name, prepare_head, source_image_paths
from index.jobs import create_work_job, run_work_job

router = APIRouter(tags=["training"])


@router.post("/train", status_code=202, response_model=JobAccepted, dependencies=[AdminWrite],
             responses=error_responses(401, 403, 409),
             summary="Train a head without labels on the sources and the query pool (admin)")
def start_training(
    request: Request, catalog: CatalogDep,
    space: str | None = Query(None, max_length=32, description="Put the new head live in this space when done."),
) -> JSONResponse:
    """The same run as `attrib train --from-catalog`: the catalog's sources are catalog anchors, the
    query pool is the pool; no label is read. `GET /jobs/{id}` counts the images whose features are
    ready, then gives the checkpoint (under ATTRIB_HOME/heads), its head id, the backbone and the
    recipe its self-check kept (efficientnet_lite0 or sscd_distilled, training/backbone_choice.py;
    raw, head, distilled or rendered, training/recipe.py) and the separation check.
    With `space`, the head is put live there at the end, as `PUT /spaces/{space}` would."""
    if space is not None:
        check_name(space)
    sources = source_image_paths(catalog.sessions, catalog.blobs)
    if not sources:
        raise ApiError("the catalog is empty: index source images first", code="empty_catalog", status=409)
    pool = request.app.state.pool.image_paths()
    job_id = create_work_job(catalog, "train", len(sources) + len(pool))
    output = catalog.home / "heads" / f"trained-{job_id}.pt"

    def work(progress) -> dict:
        from training import train

        argv = ["--from-catalog", "--output", str(output), "--cache-dir", str(catalog.home / "feature-cache")]
        train.main(argv, catalog_images=sources, pool_images=pool, progress=progress)
        summary = json.loads(Path(f"{output}.config.json").read_text())
        if space is not None:
            put_live(catalog, space, *prepare_head(catalog, output))
        return {"checkpoint": str(output), "head_id": summary["encoder_id"], "space": space,
                "catalog_anchors": summary["catalog_anchors"], "pool_anchors": summary["pool_anchors"],
                "head_fit": summary["head_fit"]["method"], "recipe": summary["recipe"].get("kept"),
                "backbone": summary["config"]["backbone"],
                "separation_warning": summary["separation_check"].get("warning")}

    request.app.state.executor.submit(run_work_job, catalog, job_id, work)
    url = f"/jobs/{job_id}"
    body = JobAccepted(job_id=job_id, state="queued", total=len(sources) + len(pool), status_url=url)
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": url})
