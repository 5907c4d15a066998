"""Region evidence at the review desk: what in a case's query matches what in one source, as JSON
and as a side-by-side PNG (app/evidence.py). Reviewer keys (admin too)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response

from app.deps import CatalogDep, ReviewerRead
from app.evidence import encoded, match_stored, overlay
from app.params import CaseId, SourceId
from app.schemas import error_responses
from app.schemas_evidence import RegionEvidence
from index.catalog import get_source
from index.desk import case_image
from training.regions import RegionMatch

router = APIRouter(tags=["review desk"])
METHOD = "ORB keypoints, mutual nearest neighbours with a ratio test, RANSAC similarity (query also mirrored)"
PNG = {200: {"content": {"image/png": {}}, "description": "The query (left) and the source (right), matched "
             "regions outlined, the query's frame drawn in the source, lines between matched points."}}


def matched(catalog, case_id: int, source_id: int):
    """Both decoded images and their region match."""
    case = case_image(catalog.sessions, case_id)
    source, _ = get_source(catalog.sessions, source_id)
    return match_stored(catalog, case.sha256, source.sha256)


@router.get("/cases/{case_id}/evidence/{source_id}", response_model=RegionEvidence, dependencies=[ReviewerRead],
            responses=error_responses(401, 404, 409), summary="Matched regions between a case's query and a source")
def case_evidence(case_id: CaseId, source_id: SourceId, catalog: CatalogDep) -> RegionEvidence:
    """Local correspondences between the case's query and any catalog source: the inlier pairs, the
    fitted transform (query pixels to source pixels), the boxes around the matches in both images,
    and where the whole query lies in the source. Few inliers (under 3: `matched` false) mean that
    no region is claimed."""
    started = time.perf_counter()
    query, source, match = matched(catalog, case_id, source_id)
    return evidence_out(case_id, source_id, match, query, source, (time.perf_counter() - started) * 1000)


@router.get("/cases/{case_id}/evidence/{source_id}/overlay.png", dependencies=[ReviewerRead], response_class=Response,
            responses={**PNG, **error_responses(401, 404, 409)}, summary="The matched regions, side by side (PNG)")
def case_evidence_overlay(case_id: CaseId, source_id: SourceId, catalog: CatalogDep) -> Response:
    query, source, match = matched(catalog, case_id, source_id)
    return Response(encoded(overlay(query, source, match), "PNG"), media_type="image/png", headers={"Cache-Control": "private, max-age=300",
                                                          "X-Content-Type-Options": "nosniff"})


def evidence_out(case_id: int, source_id: int, match: RegionMatch, query, source, ms: float) -> RegionEvidence:
    return RegionEvidence(
        case_id=case_id, source_id=source_id, method=METHOD, matched=match.matched, matches=match.matches,
        transform=match.transform, scale=match.scale, rotation=match.rotation, source_quad=match.source_quad,
        query_points=match.query_points, source_points=match.source_points, **match.summary(),
        query_size=[query.width, query.height], source_size=[source.width, source.height],
        overlay_url=f"/cases/{case_id}/evidence/{source_id}/overlay.png", timing_ms=round(ms, 1),
    )
