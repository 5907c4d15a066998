"""Dependencies as Annotated aliases; the heavy objects live on app.state, loaded in the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.errors import ApiError
from app.metrics import Metrics
from app.ratelimit import RateLimits, retry_after
from app.settings import Settings
from index.auth import allows, authenticate
from index.catalog import Catalog
from index.db import Actor

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Created with `attrib keys create`.")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_catalog(request: Request) -> Catalog:
    catalog = request.app.state.catalog
    if catalog is None:
        raise ApiError(f"the service is not ready: {request.app.state.load_error}", code="not_ready", status=503)
    return catalog


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_limits(request: Request) -> RateLimits:
    return request.app.state.limits


SettingsDep = Annotated[Settings, Depends(get_settings)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
LimitsDep = Annotated[RateLimits, Depends(get_limits)]
KeyHeader = Annotated[str | None, Security(api_key_header)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def rate_limited(what: str, seconds: float) -> ApiError:
    wait = retry_after(seconds)
    return ApiError(f"{what}; retry in {wait} s", code="rate_limited", status=429, headers={"Retry-After": wait})


def require_key(request: Request, catalog: CatalogDep, limits: LimitsDep, key: KeyHeader) -> Actor:
    """The verified key's actor (its role may be None). Failed attempts are limited per client IP;
    past the limit even a good key waits."""
    ip = client_ip(request)
    wait = limits.auth_failures.wait(ip)
    if wait:
        raise rate_limited("too many failed authentications from this address", wait)
    actor = authenticate(catalog.sessions, key)
    if actor is None:
        limits.auth_failures.take(ip)
        raise ApiError("a valid X-API-Key header is required", code="unauthorized", status=401)
    return actor


def check_role(actor: Actor, needed: str | None) -> Actor:
    """403 `no_role` for a key without a role; 403 `forbidden_role` for one whose role does not
    grant `needed` (None: any role will do)."""
    if actor.role is None:
        raise ApiError(f"the key {actor.name!r} has no role: an admin gives it one with "
                       "`attrib keys set-role ID ROLE`", code="no_role", status=403)
    if needed is not None and not allows(actor.role, needed):
        either = "" if needed == "admin" else " (or 'admin')"
        raise ApiError(f"this needs a key with the {needed!r} role{either}; this key's role is {actor.role!r}",
                       code="forbidden_role", status=403)
    return actor


def take_write_token(request: Request, limits: RateLimits, actor: Actor) -> None:
    """A write token from both the key's and the client IP's bucket, or 429."""
    names = (f"key:{actor.key_id}", f"ip:{client_ip(request)}")
    wait = max(limits.writes.wait(name) for name in names)
    if wait:
        raise rate_limited("too many writes from this key or address", wait)
    for name in names:
        limits.writes.take(name)


class RoleAccess:
    """A dependency: a valid key whose role grants `role` (None: any role), and for a write a token
    from the write rate limits. Returns the actor, for the audit log."""

    def __init__(self, role: str | None, *, write: bool = False):
        self.role, self.write = role, write

    def __call__(self, request: Request, catalog: CatalogDep, limits: LimitsDep, key: KeyHeader) -> Actor:
        actor = check_role(require_key(request, catalog, limits, key), self.role)
        if self.write:
            take_write_token(request, limits, actor)
        return actor


def read_access(
    request: Request, settings: SettingsDep, catalog: CatalogDep, limits: LimitsDep, key: KeyHeader
) -> None:
    if settings.require_key_for_reads:
        check_role(require_key(request, catalog, limits, key), None)


# One instance per kind, so FastAPI runs each once per request even when a route uses it twice.
anyone_with_a_role = RoleAccess(None)
ingest_write = RoleAccess("ingest", write=True)
reviewer_read, reviewer_write = RoleAccess("reviewer"), RoleAccess("reviewer", write=True)
admin_read, admin_write = RoleAccess("admin"), RoleAccess("admin", write=True)

KeyAccess = Depends(anyone_with_a_role)
ReadAccess = Depends(read_access)
IngestWrite = Depends(ingest_write)
ReviewerRead, ReviewerWrite = Depends(reviewer_read), Depends(reviewer_write)
AdminRead, AdminWrite = Depends(admin_read), Depends(admin_write)
ReviewerWriter = Annotated[Actor, Depends(reviewer_write)]
ReviewerReader = Annotated[Actor, Depends(reviewer_read)]
AdminWriter = Annotated[Actor, Depends(admin_write)]
IngestWriter = Annotated[Actor, Depends(ingest_write)]
