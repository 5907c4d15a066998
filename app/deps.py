"""Dependencies as Annotated aliases; the heavy objects live on app.state, loaded in the lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.errors import ApiError
from app.metrics import Metrics
from app.settings import Settings
from index.catalog import Catalog
from index.keys import verify_key

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


SettingsDep = Annotated[Settings, Depends(get_settings)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def require_key(catalog: CatalogDep, key: Annotated[str | None, Security(api_key_header)]) -> None:
    if not verify_key(catalog.sessions, key):
        raise ApiError("a valid X-API-Key header is required", code="unauthorized", status=401)


def read_access(
    settings: SettingsDep, catalog: CatalogDep, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    if settings.require_key_for_reads:
        require_key(catalog, key)


WriteAccess = Depends(require_key)
ReadAccess = Depends(read_access)
