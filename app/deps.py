"""Dependencies as Annotated aliases; the heavy objects live on app.state, loaded in the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.errors import ApiError
from app.metrics import Metrics
from app.ratelimit import RateLimits, retry_after
from app.settings import Settings
from index.catalog import Catalog
from index.keys import hash_key, verify_key

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


def require_key(request: Request, catalog: CatalogDep, limits: LimitsDep, key: KeyHeader) -> str:
    """The verified key. Failed attempts are limited per client IP; past the limit even a good key waits."""
    ip = client_ip(request)
    wait = limits.auth_failures.wait(ip)
    if wait:
        raise rate_limited("too many failed authentications from this address", wait)
    if not verify_key(catalog.sessions, key):
        limits.auth_failures.take(ip)
        raise ApiError("a valid X-API-Key header is required", code="unauthorized", status=401)
    return key


def write_access(request: Request, limits: LimitsDep, key: Annotated[str, Depends(require_key)]) -> None:
    """A valid key, and a write token from both the key's and the client IP's bucket."""
    names = (f"key:{hash_key(key)}", f"ip:{client_ip(request)}")
    wait = max(limits.writes.wait(name) for name in names)
    if wait:
        raise rate_limited("too many writes from this key or address", wait)
    for name in names:
        limits.writes.take(name)


def read_access(
    request: Request, settings: SettingsDep, catalog: CatalogDep, limits: LimitsDep, key: KeyHeader
) -> None:
    if settings.require_key_for_reads:
        require_key(request, catalog, limits, key)


KeyAccess = Depends(require_key)
WriteAccess = Depends(write_access)
ReadAccess = Depends(read_access)
