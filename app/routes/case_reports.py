"""A case's printable report, and exports of filtered case lists (CSV or JSON). Reviewer keys."""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from app.deps import CatalogDep, ReviewerRead
from app.params import CaseId
from app.evidence import encoded, match_stored, overlay
from app.report import CANDIDATES_PER_SPACE, CONTENT_SECURITY_POLICY, RegionFigure, render_report
from app.routes.cases import CaseFilterDep
from app.schemas import error_responses
from app.schemas_desk import CaseExport
from index.catalog import Catalog, get_source
from index.desk import CaseFilter, get_case, latest_decisions, list_cases, source_shas
from index.errors import AttribError
from index.images import ImageError, decode_image

log = logging.getLogger(__name__)
router = APIRouter(tags=["review desk"])
EXPORT_MAX_ROWS = 10_000
REPORT_IMAGE_SIZE = 800
COLUMNS = ("id", "status", "created_at", "filename", "key_name", "top_concept", "confidence", "none_probability",
           "decisions", "decision", "decision_concepts", "decision_source_ids", "decision_note", "decided_by",
           "decided_at", "backbone_id", "head_ids")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@router.get("/cases/export", dependencies=[ReviewerRead], response_model=CaseExport,
            responses={200: {"content": {"text/csv": {}}, "description": "CSV with `format=csv`."},
                       **error_responses(401)},
            summary="Export the cases that match the list filters, as CSV or JSON")
def export_cases(catalog: CatalogDep, where: CaseFilter = CaseFilterDep,
                 format: Literal["csv", "json"] = Query("json", description="`csv` or `json`.")) -> Response:
    """Newest first, at most 10,000 rows: `X-Total-Count` says how many matched and
    `X-Export-Truncated: true` that some were left out (the JSON body says so too). Each row
    carries the case's latest decision. In CSV, a text cell that starts with `=`, `+`, `-` or `@`
    is prefixed with `'` so that a spreadsheet never runs it as a formula."""
    rows, total = list_cases(catalog.sessions, where, 0, EXPORT_MAX_ROWS)
    latest = latest_decisions(catalog.sessions, [case.id for case, _ in rows])
    items = [export_row(case, count, latest.get(case.id)) for case, count in rows]
    truncated = total > len(items)
    headers = {"X-Total-Count": str(total), "X-Export-Truncated": str(truncated).lower(),
               "X-Export-Max-Rows": str(EXPORT_MAX_ROWS)}
    if format == "json":
        body = CaseExport(items=items, total=total, truncated=truncated, max_rows=EXPORT_MAX_ROWS)
        return JSONResponse(body.model_dump(mode="json"), headers=headers)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for item in items:
        writer.writerow({name: _cell(value) for name, value in item.items()})
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    headers["Content-Disposition"] = f'attachment; filename="cases-{stamp}.csv"'
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


def export_row(case, decisions: int, latest) -> dict:
    return {
        "id": case.id, "status": case.status, "created_at": case.created_at.isoformat(), "filename": case.filename,
        "key_name": case.key_name, "top_concept": case.top_concept, "confidence": case.confidence,
        "none_probability": case.none_probability, "decisions": decisions,
        "decision": latest.decision if latest else None,
        "decision_concepts": list(latest.concepts or []) if latest else [],
        "decision_source_ids": list(latest.source_ids or []) if latest else [],
        "decision_note": latest.note if latest else None,
        "decided_by": latest.key_name if latest else None,
        "decided_at": latest.created_at.isoformat() if latest else None,
        "backbone_id": case.backbone_id, "head_ids": case.head_ids or {},
    }


def _cell(value) -> str | float | int:
    if value is None:
        return ""
    if isinstance(value, list):
        value = "; ".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


@router.get("/cases/{case_id}/report", response_class=Response, dependencies=[ReviewerRead],
            responses={200: {"content": {"text/html": {}}, "description": "A self-contained HTML page."},
                       **error_responses(401, 404)},
            summary="A printable, self-contained HTML report of a case")
def case_report(case_id: CaseId, catalog: CatalogDep) -> HTMLResponse:
    """The query, the top candidates of every space with their images, scores, the decisions
    and rescores, the encoder ids and the times. Images are inlined as data: URIs and the page
    loads nothing else, so the browser's Print to PDF keeps everything."""
    record = get_case(catalog.sessions, case_id)
    page = render_report(record, query_jpeg(catalog, record.case.sha256), candidate_thumbnails(catalog, record.case.answer),
                         datetime.now(timezone.utc), region_figure(catalog, record))
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
               "Content-Disposition": f'inline; filename="case-{case_id}-report.html"'}
    return HTMLResponse(page, headers=headers)


def query_jpeg(catalog: Catalog, sha256: str) -> bytes | None:
    """The query image as a JPEG at most 800 px on its long side (None if it cannot be read)."""
    try:
        image = decode_image(catalog.blobs.read(sha256), catalog.config.max_pixels).image
    except (OSError, ImageError) as exc:
        log.warning("report: cannot read query image %s: %s", sha256, exc)
        return None
    image.thumbnail((REPORT_IMAGE_SIZE, REPORT_IMAGE_SIZE))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def candidate_thumbnails(catalog: Catalog, answer: dict) -> dict[int, bytes | None]:
    """The thumbnail of every source the report shows; None for sources taken down since."""
    ids = {source.get("id") for space in (answer.get("spaces") or {}).values()
           for concept in space.get("concepts", [])[:CANDIDATES_PER_SPACE] for source in concept.get("sources", [])}
    shas = source_shas(catalog.sessions, [i for i in ids if isinstance(i, int)])
    thumbnails: dict[int, bytes | None] = {}
    for source_id in ids:
        try:
            thumbnails[source_id] = catalog.blobs.thumbnail(shas[source_id]).read_bytes() if source_id in shas else None
        except (OSError, ImageError) as exc:
            log.warning("report: no thumbnail for source %s: %s", source_id, exc)
            thumbnails[source_id] = None
    return thumbnails


def decided_source(record) -> int | None:
    """The source of the latest decision: the first it names, else the verdict's source when the
    decision names the verdict's concept; none for `no_match`."""
    if not record.decisions or record.decisions[-1].decision == "no_match":
        return None
    last = record.decisions[-1]
    if last.source_ids:
        return last.source_ids[0]
    verdict = (record.case.answer or {}).get("verdict") or {}
    source_id = (verdict.get("source") or {}).get("id")
    return source_id if isinstance(source_id, int) and verdict.get("concept") in (last.concepts or []) else None


def region_figure(catalog: Catalog, record) -> RegionFigure | None:
    """The side-by-side figure of the query and the decided source (app/evidence.py)."""
    source_id = decided_source(record)
    if source_id is None:
        return None
    try:
        source, _ = get_source(catalog.sessions, source_id)
        query, decoded, match = match_stored(catalog, record.case.sha256, source.sha256)
    except AttribError as exc:  # taken down, a stored image missing (ApiError) or undecodable
        return RegionFigure(source_id, None, None, str(exc))
    figure = overlay(query, decoded, match)
    figure.thumbnail((2 * REPORT_IMAGE_SIZE, REPORT_IMAGE_SIZE))
    return RegionFigure(source_id, encoded(figure, "JPEG", quality=85), match.summary(), "")
