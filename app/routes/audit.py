"""GET /audit: who wrote what, when (admin)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query

from app.deps import AdminRead, CatalogDep
from app.params import MAX_NAME_LENGTH, NO_CONTROL_CHARACTERS, Limit, Offset
from app.routes.cases import as_utc
from app.schemas import Page, error_responses
from app.schemas_desk import AuditOut
from index.db import AuditFilter, list_audit

router = APIRouter(tags=["review desk"])


@router.get("/audit", response_model=Page[AuditOut], dependencies=[AdminRead], responses=error_responses(401),
            summary="The audit log, newest first, filtered (admin)")
def audit_log(
    catalog: CatalogDep,
    actor: str | None = Query(None, min_length=1, max_length=MAX_NAME_LENGTH, pattern=NO_CONTROL_CHARACTERS,
                              description="A key's id or name; `cli` for the command line."),
    action: str | None = Query(None, min_length=1, max_length=32, pattern=NO_CONTROL_CHARACTERS, description="e.g. `decision.create`."),
    target_type: str | None = Query(None, min_length=1, max_length=32, pattern=NO_CONTROL_CHARACTERS,
                                    description="`case`, `source`, `concept` or `key`."),
    target_id: str | None = Query(None, min_length=1, max_length=MAX_NAME_LENGTH, pattern=NO_CONTROL_CHARACTERS,
                                  description="The target's id (a concept's name)."),
    since: datetime | None = Query(None, description="At or after (ISO 8601; UTC without an offset)."),
    until: datetime | None = Query(None, description="At or before."),
    offset: Offset = 0,
    limit: Limit = 50,
) -> Page[AuditOut]:
    """Every write to cases (creation, decisions, rescores), sources and concepts (ingestion,
    takedowns) and keys (creation, revocation, role changes), over HTTP or from the command line,
    with the key that made it and the state before and after where that applies."""
    where = AuditFilter(actor, action, target_type, target_id, as_utc(since, "since"), as_utc(until, "until"))
    rows, total = list_audit(catalog.sessions, where, offset, limit)
    items = [AuditOut.model_validate(row, from_attributes=True) for row in rows]
    return Page[AuditOut](items=items, total=total, offset=offset, limit=limit)
