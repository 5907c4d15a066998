from __future__ import annotations

from fastapi import APIRouter, File, Query, UploadFile

from app.attribution import attribute_bytes
from app.deps import CatalogDep, MetricsDep, ReadAccess, SettingsDep
from app.routes.uploads import read_single_upload
from app.schemas import AttributeResponse, ConceptScore, SourceRef, StageTimings, error_responses

router = APIRouter(tags=["attribution"])


@router.post(
    "/attribute",
    response_model=AttributeResponse,
    dependencies=[ReadAccess],
    responses=error_responses(400, 401, 409, 413, 415),
    summary="Which source concepts did this image most likely come from?",
)
def attribute(
    catalog: CatalogDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    file: UploadFile = File(..., description="The image to attribute (JPEG, PNG, WebP, GIF: first frame, ...)."),
    k: int = Query(10, ge=1, le=100, description="How many concepts to return."),
) -> AttributeResponse:
    data = read_single_upload(file, settings.max_upload_bytes)
    result = attribute_bytes(catalog, data, k, settings.share_temperature)
    metrics.observe_stages(result.timings_ms)
    concepts = [
        ConceptScore(
            concept=match.concept,
            score=match.score,
            share=match.share,
            sources=[source_ref(s.id, s.filename, s.score) for s in match.sources],
        )
        for match in result.concepts
    ]
    return AttributeResponse(
        encoder_id=result.encoder_id, k=k, concepts=concepts, timings_ms=StageTimings(**result.timings_ms)
    )


def source_ref(source_id: int, filename: str, score: float) -> SourceRef:
    return SourceRef(
        id=source_id,
        filename=filename,
        score=score,
        image_url=f"/sources/{source_id}/image",
        thumbnail_url=f"/sources/{source_id}/thumbnail",
    )
