from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Request, Security, UploadFile

from app.attribution import SOURCES_PER_CONCEPT, attribute_bytes, fuse
from app.cases import open_case
from app.deps import CatalogDep, LimitsDep, MetricsDep, ReadAccess, SettingsDep, api_key_header, reviewer_write
from app.evidence import match_strength, regions_for
from app.params import EvidenceLevel
from app.routes.uploads import read_single_upload, shown_filename
from app.schemas import AttributeResponse, CalibrationOut, ConceptScore, SpaceAnswer, StageTimings, error_responses
from app.schemas_answer import SourceRef, VerdictOut
from app.schemas_evidence import RegionSummary
from index.auth import key_id_of
from training.verdict import MAX_RULE

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
    evidence: EvidenceLevel = "none",
) -> AttributeResponse:
    """One backbone forward of the query serves every space: each space's head maps the same
    features, and each space returns its own concept ranking."""
    actor = reviewer_write(request, catalog, limits, key) if case else None
    key_id = actor.key_id if actor else key_id_of(catalog.sessions, key)
    data, result, answer = attribute_upload(request, catalog, settings, metrics, file, key_id, k, space, sources,
                                            evidence == "regions")
    case_id = None
    if actor is not None:
        case_id = open_case(catalog, actor, data, result.query, shown_filename(file.filename or "query"),
                            {"k": k, "space": space, "sources": sources, "evidence": evidence}, stored_answer(answer))
    return answer.model_copy(update={"case_id": case_id})


def attribute_upload(request: Request, catalog, settings, metrics, file: UploadFile, key_id: int | None,
                     k: int, space: str, sources: int, regions: bool = False):
    """Read and attribute an upload, keep it in the query pool (if so configured); returns the
    bytes, the attribution and the API answer (with matched regions for each space's first
    concept's sources if `regions`)."""
    data = read_single_upload(file, settings.max_upload_bytes)
    result = attribute_bytes(catalog, data, k, settings.share_temperature, space, sources,
                             forward=request.app.state.batchers)
    metrics.observe_stages(flat_timings(result.timings_ms))
    if settings.keep_queries:
        request.app.state.pool.remember(data, result.query, shown_filename(file.filename or "query"), "attribute",
                                        key_id, result.answered_by())
    return data, result, attribute_response(result, k, region_evidence(catalog, result) if regions else None)


def region_evidence(catalog, result) -> dict:
    """Matched regions of each space's first concept's sources and the verdict's source, by id."""
    wanted = {s.id: s.sha256 for answer in result.spaces.values() if answer.concepts
              for s in answer.concepts[0].sources}
    if result.verdict is not None and result.verdict.source is not None:
        wanted[result.verdict.source.id] = result.verdict.source.sha256
    found, result.timings_ms["regions"] = regions_for(catalog, result.query, wanted)
    if result.verdict is not None and result.verdict.method != MAX_RULE:
        result.verdict = fuse(catalog, result.spaces, match_strength(result.spaces, {i: m.inliers for i, m in found.items()}))
    return found


def attribute_response(result, k: int, regions: dict | None = None) -> AttributeResponse:
    """The answer's one shape, for the HTTP API and `attrib attribute --json` alike."""
    return AttributeResponse(
        verdict=verdict_out(result.verdict, regions or {}),
        backbone_id=result.backbone_id, backbones=result.backbones, k=k,
        spaces={name: space_answer(answer, regions or {}) for name, answer in result.spaces.items()},
        timings_ms=StageTimings(**result.timings_ms),
    )


def verdict_out(verdict, regions: dict) -> VerdictOut | None:
    if verdict is None:
        return None
    source = verdict.source
    return VerdictOut(kind=verdict.kind, concept=verdict.concept, probability=verdict.probability,
                      none_probability=verdict.none_probability, spaces=verdict.spaces,
                      source=source_ref(source.id, source.filename, source.score, regions.get(source.id))
                      if source else None,
                      source_space=verdict.source_space, method=verdict.method, chosen=verdict.chosen,
                      read_regions=verdict.read_regions)


def space_answer(answer, regions: dict) -> SpaceAnswer:
    concepts = [
        ConceptScore(concept=match.concept, score=match.score, probability=match.probability, share=match.share,
                     sources=[source_ref(s.id, s.filename, s.score, regions.get(s.id) if rank == 0 else None)
                              for s in match.sources])
        for rank, match in enumerate(answer.concepts)
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


def source_ref(source_id: int, filename: str, score: float, regions=None) -> SourceRef:
    return SourceRef(
        id=source_id,
        filename=filename,
        score=score,
        image_url=f"/sources/{source_id}/image",
        thumbnail_url=f"/sources/{source_id}/thumbnail",
        regions=None if regions is None else RegionSummary(**regions.summary()),
    )
