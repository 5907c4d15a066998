"""The review desk's cases: store a query with its answer, list and read cases, record
decisions (append-only), re-score with the heads live now. Reviewer keys (admin too)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import FileResponse

from app.attribution import SOURCES_PER_CONCEPT, attribute_bytes
from app.cases import compare, head_ids, headline, open_case
from app.deps import CatalogDep, MetricsDep, ReviewerRead, ReviewerWriter, SettingsDep
from app.errors import ApiError
from app.params import MAX_NAME_LENGTH, NO_CONTROL_CHARACTERS, CaseId, EvidenceLevel, Limit, Offset
from app.routes.attribute import attribute_response, attribute_upload, region_evidence, stored_answer
from app.routes.catalog import IMAGE_RESPONSE, IMAGE_TYPES, image_file
from app.routes.uploads import shown_filename
from app.schemas import Page, error_responses
from app.schemas_desk import CaseOut, CaseSummary, DecisionIn, DecisionOut, RescoreOut, Status
from index.db import Case, CaseDecision, CaseRescore
from index.calibration import maybe_refit_from_decisions
from index.desk import (CaseFilter, CaseRecord, add_decision, add_rescore, case_image, decision_counts, get_case,
                        list_cases)

router = APIRouter(tags=["review desk"])


def as_utc(value: datetime | None, name: str) -> datetime | None:
    """A filter time in UTC (a time without an offset is taken as UTC)."""
    if value is None:
        return None
    try:
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    except (OverflowError, ValueError) as exc:
        raise ApiError(f"{name}: {value.isoformat()} is out of range", code="invalid_request", status=422) from exc


def case_filter(
    status: Status | None = Query(None, description="`open`, `match`, `no_match` or `escalated`."),
    concept: str | None = Query(None, min_length=1, max_length=MAX_NAME_LENGTH, pattern=NO_CONTROL_CHARACTERS,
                                description="The case's top concept."),
    since: datetime | None = Query(None, description="Created at or after (ISO 8601; UTC without an offset)."),
    until: datetime | None = Query(None, description="Created at or before."),
    min_confidence: float | None = Query(None, ge=0, le=1, description="The headline confidence at least this."),
    reviewer: str | None = Query(None, min_length=1, max_length=MAX_NAME_LENGTH, pattern=NO_CONTROL_CHARACTERS,
                                 description="Cases with a decision by this key (its id or its name)."),
    sort: Literal["newest", "verdict"] = Query("newest", description="`newest` first, or by `verdict`: the surest "
                                              "match first (the verdict's probability), then newest."),
) -> CaseFilter:
    return CaseFilter(status, concept, as_utc(since, "since"), as_utc(until, "until"), min_confidence, reviewer, sort)


CaseFilterDep = Depends(case_filter)


def decision_out(row: CaseDecision, superseded_by: int | None) -> DecisionOut:
    return DecisionOut(id=row.id, case_id=row.case_id, decision=row.decision, concepts=row.concepts or [],
                       source_ids=row.source_ids or [], note=row.note or "", key_id=row.key_id,
                       key_name=row.key_name, created_at=row.created_at, superseded_by=superseded_by)


def decisions_out(rows: list[CaseDecision]) -> list[DecisionOut]:
    """Oldest first; each is superseded by the next one."""
    return [decision_out(row, rows[i + 1].id if i + 1 < len(rows) else None) for i, row in enumerate(rows)]


def rescore_out(row: CaseRescore) -> RescoreOut:
    return RescoreOut(id=row.id, created_at=row.created_at, key_id=row.key_id, key_name=row.key_name,
                      previous_answer=row.previous_answer, answer=row.answer, head_ids=row.head_ids or {},
                      changed=row.changed, changes=row.changes or {})


def case_out(record: CaseRecord) -> CaseOut:
    case = record.case
    return CaseOut(
        id=case.id, status=case.status, created_at=case.created_at, key_id=case.key_id, key_name=case.key_name,
        filename=case.filename, image_url=f"/cases/{case.id}/image", report_url=f"/cases/{case.id}/report",
        backbone_id=case.backbone_id, head_ids=case.head_ids or {}, answer=case.answer,
        top_concept=case.top_concept, confidence=case.confidence, none_probability=case.none_probability,
        decisions=decisions_out(record.decisions), rescores=[rescore_out(row) for row in record.rescores],
    )


def case_summary(case: Case, decisions: int) -> CaseSummary:
    return CaseSummary(id=case.id, status=case.status, created_at=case.created_at, filename=case.filename,
                       top_concept=case.top_concept, confidence=case.confidence,
                       none_probability=case.none_probability, image_url=f"/cases/{case.id}/image",
                       decisions=decisions)


@router.post("/cases", status_code=201, response_model=CaseOut, responses=error_responses(400, 401, 404, 409, 413, 415),
             summary="Attribute an image and keep it as a review case (reviewer)")
def create_case(
    request: Request, catalog: CatalogDep, settings: SettingsDep, metrics: MetricsDep, actor: ReviewerWriter,
    file: UploadFile = File(..., description="The image under review."),
    k: int = Query(10, ge=1, le=100, description="How many concepts to keep per space."),
    space: str = Query("all", max_length=32, description="`content`, `style`, another space's name, or `all`."),
    sources: int = Query(SOURCES_PER_CONCEPT, ge=1, le=50, description="Best sources kept per concept."),
    evidence: EvidenceLevel = "none",
) -> CaseOut:
    """The same attribution as POST /attribute (the image joins the query pool likewise); the case
    keeps the image, the whole answer, the heads that gave it, the time and the key."""
    data, result, answer = attribute_upload(request, catalog, settings, metrics, file, actor.key_id, k, space, sources,
                                            evidence == "regions")
    case_id = open_case(catalog, actor, data, result.query, shown_filename(file.filename or "query"),
                        {"k": k, "space": space, "sources": sources, "evidence": evidence}, stored_answer(answer))
    return case_out(get_case(catalog.sessions, case_id))


@router.get("/cases", response_model=Page[CaseSummary], dependencies=[ReviewerRead],
            responses=error_responses(401), summary="Cases, newest first, filtered (reviewer)")
def cases(catalog: CatalogDep, where: CaseFilter = CaseFilterDep, offset: Offset = 0,
          limit: Limit = 50) -> Page[CaseSummary]:
    rows, total = list_cases(catalog.sessions, where, offset, limit)
    return Page[CaseSummary](items=[case_summary(*row) for row in rows], total=total, offset=offset, limit=limit)


@router.get("/cases/{case_id}", response_model=CaseOut, dependencies=[ReviewerRead],
            responses=error_responses(401, 404), summary="One case with its evidence, decisions and rescores")
def read_case(case_id: CaseId, catalog: CatalogDep) -> CaseOut:
    return case_out(get_case(catalog.sessions, case_id))


@router.get("/cases/{case_id}/image", dependencies=[ReviewerRead], response_class=FileResponse,
            responses={**IMAGE_RESPONSE, **error_responses(401, 404, 409)}, summary="The case's query image as uploaded")
def read_case_image(case_id: CaseId, catalog: CatalogDep) -> FileResponse:
    case = case_image(catalog.sessions, case_id)
    path = catalog.blobs.path(case.sha256)
    if not path.is_file():
        raise ApiError(f"case {case_id}'s stored image is missing", code="case_image_missing", status=409)
    media_type, suffix = IMAGE_TYPES.get(case.format.upper(), ("application/octet-stream", "bin"))
    disposition = "attachment" if suffix == "bin" else "inline"
    return image_file(path, media_type, f'{disposition}; filename="case-{case_id}.{suffix}"')


@router.post("/cases/{case_id}/decision", status_code=201, response_model=DecisionOut,
             responses=error_responses(400, 401, 404), summary="Record a decision on a case (append-only)")
def decide(case_id: CaseId, body: DecisionIn, catalog: CatalogDep, actor: ReviewerWriter) -> DecisionOut:
    """`match` names at least one concept (and optionally the sources judged copied), `no_match`
    names none, `escalate` may name some. Concepts and sources must appear in one of the case's
    answers or in the catalog (422 `unknown_concept`, `unknown_source`). A decision is never
    changed or removed: the next one supersedes it, and the case's status follows the latest."""
    row = add_decision(catalog.sessions, actor, case_id, body.decision, body.concepts, body.source_ids, body.note)
    counts = decision_counts(catalog.sessions)  # the verdict learns from them once there are enough
    maybe_refit_from_decisions(catalog, counts.get("match", 0) + counts.get("no_match", 0), actor)
    return decision_out(row, None)


@router.post("/cases/{case_id}/rescore", status_code=201, response_model=RescoreOut,
             responses=error_responses(401, 404, 409), summary="Re-attribute a case with the heads live now")
def rescore(request: Request, case_id: CaseId, catalog: CatalogDep, settings: SettingsDep,
            actor: ReviewerWriter) -> RescoreOut:
    """Runs the stored image through the backbone and every space's live head again, with the
    case's `k`, `space` and `sources`. The new answer becomes the case's; the one before is kept
    on the rescore, and `changed` says whether any space's top concept moved."""
    case = case_image(catalog.sessions, case_id)
    try:
        data = catalog.blobs.read(case.sha256)
    except FileNotFoundError as exc:
        raise ApiError(f"case {case_id}'s stored image is missing", code="case_image_missing", status=409) from exc
    params = {"k": 10, "space": "all", "sources": SOURCES_PER_CONCEPT} | (case.params or {})
    result = attribute_bytes(catalog, data, params["k"], settings.share_temperature, params["space"], params["sources"],
                             forward=request.app.state.batchers)
    regions = region_evidence(catalog, result) if params.get("evidence") == "regions" else None
    answer = stored_answer(attribute_response(result, params["k"], regions))
    row = add_rescore(catalog.sessions, actor, case_id, answer, head_ids(answer), headline(answer), compare)
    return rescore_out(row)
