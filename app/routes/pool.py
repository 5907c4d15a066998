"""The query pool over HTTP: list it, see its size, remove queries. Admin keys only (queries are
other people's uploads)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from app.deps import AdminRead, AdminWrite
from app.params import Limit, Offset, QueryId
from app.schemas import Page, error_responses
from index.catalog import QueryPool

router = APIRouter(tags=["query pool"])


class QueryOut(BaseModel):
    id: int
    sha256: str
    filename: str
    format: str
    width: int
    height: int
    origin: str = Field(description="`attribute` (an upload to POST /attribute) or `import` (`attrib pool add`).")
    key_id: int | None = Field(description="The API key that sent it, if any.")
    answered_by: dict[str, str] = Field(description="The head that answered in each space.")
    times_seen: int
    created_at: datetime
    last_seen_at: datetime


class PoolStats(BaseModel):
    queries: int
    requests: int = Field(description="Uploads counted, repeats included.")
    by_origin: dict[str, int]
    first: datetime | None
    last: datetime | None


def get_pool(request: Request) -> QueryPool:
    return request.app.state.pool


@router.get("/queries", response_model=Page[QueryOut], responses=error_responses(401, 403), dependencies=[AdminRead],
            summary="The query pool, newest first (training material, never evidence)")
def list_queries(request: Request, offset: Offset = 0, limit: Limit = 50) -> Page[QueryOut]:
    rows, total = get_pool(request).listing(offset, limit)
    items = [QueryOut.model_validate(row, from_attributes=True) for row in rows]
    return Page[QueryOut](items=items, total=total, offset=offset, limit=limit)


@router.get("/queries/stats", response_model=PoolStats, responses=error_responses(401, 403), dependencies=[AdminRead],
            summary="Pool size")
def pool_stats(request: Request) -> PoolStats:
    return PoolStats(**get_pool(request).stats())


@router.delete("/queries/{query_id}", status_code=204, responses=error_responses(401, 403, 404),
               dependencies=[AdminWrite],
               summary="Remove a query: its row, stored image and cached training features")
def delete_query(request: Request, query_id: QueryId) -> None:
    get_pool(request).remove_one(query_id)
