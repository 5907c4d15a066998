from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Request, Security, UploadFile

from app.attribution import SOURCES_PER_CONCEPT, attribute_bytes
from app.cases import open_case
from app.deps import CatalogDep, LimitsDep, MetricsDep, ReadAccess, SettingsDep, api_key_header, reviewer_write
from app.routes.uploads import read_single_upload, shown_filename
from app.schemas import (AttributeResponse, CalibrationOut, ConceptScore, SourceRef, SpaceAnswer, StageTimings,
                         VerdictOut, error_responses)
from index.auth import key_id_of

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
    limits: LimitsDep,
    key: Annotated[str | None, Security(api_key_header)],
    file: UploadFile = File(..., description="The image to attribute: JPEG, PNG, WebP, GIF (first frame), BMP or TIFF."),
    k: int = Query(10, ge=1, le=100, description="How many concepts to return per space."),
    space: str = Query("all", max_length=32, description="`content`, `style`, another space's name, or `all`."),
    sources: int = Query(SOURCES_PER_CONCEPT, ge=1, le=50, description="Best sources listed per concept."),
    case: bool = Query(False, description="Also store the answer as a review case (needs a `reviewer` key); "
                       "the response then carries its `case_id`."),
) -> AttributeResponse:
    """One backbone forward of the query serves every space: each space's head maps the same
    features, and each space returns its own concept ranking."""
    actor = reviewer_write(request, catalog, limits, key) if case else None
    key_id = actor.key_id if actor else key_id_of(catalog.sessions, key)
    data, result, answer = attribute_upload(request, catalog, settings, metrics, file, key_id, k, space, sources)
    case_id = None
    if actor is not None:
        case_id = open_case(catalog, actor, data, result.query, shown_filename(file.filename or "query"),
                            {"k": k, "space": space, "sources": sources}, stored_answer(answer))
    return answer.model_copy(update={"case_id": case_id})


def attribute_upload(request: Request, catalog, settings, metrics, file: UploadFile, key_id: int | None,
                     k: int, space: str, sources: int):
    """Read and attribute an upload, keep it in the query pool (if so configured); returns the
    bytes, the attribution and the API answer."""
    data = read_single_upload(file, settings.max_upload_bytes)
    result = attribute_bytes(catalog, data, k, settings.share_temperature, space, sources,
                             forward=request.app.state.batchers)
    metrics.observe_stages(flat_timings(result.timings_ms))
    if settings.keep_queries:
        request.app.state.pool.remember(data, result.query, shown_filename(file.filename or "query"), "attribute",
                                        key_id, result.answered_by())
    return data, result, attribute_response(result, k)


def attribute_response(result, k: int) -> AttributeResponse:
    """The answer's one shape, for the HTTP API and `attrib attribute --json` alike."""
    return AttributeResponse(
        verdict=verdict_out(result.verdict),
        backbone_id=result.backbone_id, backbones=result.backbones, k=k,
        spaces={name: space_answer(answer) for name, answer in result.spaces.items()},
        timings_ms=StageTimings(**result.timings_ms),
    )


def verdict_out(verdict) -> VerdictOut | None:
    if verdict is None:
        return None
    source = verdict.source
    return VerdictOut(kind=verdict.kind, concept=verdict.concept, probability=verdict.probability,
                      none_probability=verdict.none_probability, spaces=verdict.spaces,
                      source=source_ref(source.id, source.filename, source.score) if source else None,
                      source_space=verdict.source_space, method=verdict.method, chosen=verdict.chosen)


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
                       message=answer.message, backbone=answer.backbone, none_probability=answer.none_probability,
                       calibration=calibration, concepts=concepts)


def stored_answer(answer: AttributeResponse) -> dict:
    """The answer as a case keeps it: the response's JSON, without the case id."""
    return answer.model_dump(mode="json", exclude={"case_id"})


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
