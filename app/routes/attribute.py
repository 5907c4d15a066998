from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Request, Security, UploadFile

from app.attribution import SOURCES_PER_CONCEPT, attribute_bytes
from app.deps import CatalogDep, MetricsDep, ReadAccess, SettingsDep, api_key_header
from app.routes.uploads import read_single_upload, shown_filename
from app.schemas import (AttributeResponse, CalibrationOut, ConceptScore, SourceRef, SpaceAnswer, StageTimings,
                         error_responses)
from index.keys import key_id_of

router = APIRouter(tags=["attribution"])


@router.post(
    "/attribute",
    response_model=AttributeResponse,
    dependencies=[ReadAccess],
    responses=error_responses(400, 401, 404, 409, 413, 415),
    summary="Which source concepts did this image most likely come from?",
)
def attribute(
    request: Request,
    catalog: CatalogDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    key: Annotated[str | None, Security(api_key_header)],
    file: UploadFile = File(..., description="The image to attribute: JPEG, PNG, WebP, GIF (first frame), BMP or TIFF."),
    k: int = Query(10, ge=1, le=100, description="How many concepts to return per space."),
    space: str = Query("all", max_length=32, description="`content`, `style`, another space's name, or `all`."),
    sources: int = Query(SOURCES_PER_CONCEPT, ge=1, le=50, description="Best sources listed per concept."),
) -> AttributeResponse:
    """One backbone forward of the query serves every space: each space's head maps the same
    features, and each space returns its own concept ranking."""
    data = read_single_upload(file, settings.max_upload_bytes)
    result = attribute_bytes(catalog, data, k, settings.share_temperature, space, sources)
    metrics.observe_stages(flat_timings(result.timings_ms))
    if settings.keep_queries:
        request.app.state.pool.remember(data, result.query, shown_filename(file.filename or "query"), "attribute",
                                        key_id_of(catalog.sessions, key), result.answered_by())
    return attribute_response(result, k)


def attribute_response(result, k: int) -> AttributeResponse:
    """The answer's one shape, for the HTTP API and `attrib attribute --json` alike."""
    return AttributeResponse(
        backbone_id=result.backbone_id, k=k,
        spaces={name: space_answer(answer) for name, answer in result.spaces.items()},
        timings_ms=StageTimings(**result.timings_ms),
    )


def space_answer(answer) -> SpaceAnswer:
    concepts = [
        ConceptScore(concept=match.concept, score=match.score, probability=match.probability, share=match.share,
                     sources=[source_ref(s.id, s.filename, s.score) for s in match.sources])
        for match in answer.concepts
    ]
    note = answer.calibration
    calibration = None if note is None else CalibrationOut(method=note.method, head_id=note.head_id,
                                                           fitted_on=note.fitted_on, fitted_at=note.fitted_at)
    return SpaceAnswer(space=answer.space, head_id=answer.head_id, available=answer.available,
                       message=answer.message, none_probability=answer.none_probability,
                       calibration=calibration, concepts=concepts)


def flat_timings(timings: dict) -> dict[str, float]:
    """decode, embed, and search:<space> for the stage histogram."""
    flat = {"decode": timings["decode"], "embed": timings["embed"]}
    return flat | {f"search:{name}": ms for name, ms in timings["search"].items()}


def source_ref(source_id: int, filename: str, score: float) -> SourceRef:
    return SourceRef(
        id=source_id,
        filename=filename,
        score=score,
        image_url=f"/sources/{source_id}/image",
        thumbnail_url=f"/sources/{source_id}/thumbnail",
    )
