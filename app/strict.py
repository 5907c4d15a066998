"""Nothing a client sends is ignored in silence: a query parameter that the endpoint does not take,
a single-valued query parameter given twice, or a second file in a field that takes one file gets
a 422 that names it, instead of being dropped (issue 25, item 7).

`strict_request` runs for every API route (a dependency of the app); it reads what the route
declares from FastAPI's own dependency tree, so a new route needs nothing extra. Routes outside
the API schema (the reviewer page and its files) are left alone: browsers add query strings of
their own.
"""

from __future__ import annotations

import types
import typing

from fastapi import Request, UploadFile

from app.errors import ApiError


async def strict_request(request: Request) -> None:
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not getattr(route, "include_in_schema", True):
        return
    parts = list(_walk(dependant))
    _check_query(request, {param.alias: param for part in parts for param in part.query_params})
    single_files = [param.alias for part in parts for param in part.body_params if _annotation(param) is UploadFile]
    if single_files and request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()  # already parsed by FastAPI for the route's body: read from its cache
        doubled = [name for name in single_files if len(form.getlist(name)) > 1]
        if doubled:
            raise ApiError(f"the field {_names(doubled)} takes one file; this request sent "
                           f"{len(form.getlist(doubled[0]))}", code="duplicate_field", status=422)


def _walk(dependant):
    """The route's dependant and all of its sub-dependencies'."""
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def _check_query(request: Request, declared: dict) -> None:
    unknown = sorted(set(request.query_params) - set(declared))
    if unknown:
        takes = _names(sorted(declared)) if declared else "no query parameters"
        raise ApiError(f"unknown query parameter {_names(unknown)}: this endpoint takes {takes}",
                       code="unknown_parameter", status=422)
    repeated = sorted(name for name in request.query_params
                      if len(request.query_params.getlist(name)) > 1 and not _is_list(declared[name]))
    if repeated:
        raise ApiError(f"the query parameter {_names(repeated)} was given more than once; it takes one value",
                       code="duplicate_parameter", status=422)


def _annotation(param):
    """The declared type, with an Optional's None taken away."""
    annotation = param.field_info.annotation
    options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(options) == 1
    return options[0] if optional else annotation


def _is_list(param) -> bool:
    return typing.get_origin(_annotation(param)) in (list, set, tuple)


def _names(names: list[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)
