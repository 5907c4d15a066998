"""The reviewer page: plain HTML, CSS and JavaScript files served by the app itself (no build, no CDN)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.errors import ApiError

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parent.parent / "static" / "ui"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
ASSET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.(?:html|js|css|svg)")
# Everything comes from this server. Images are fetched with the key and shown through blob: URLs;
# a case's report is shown in a sandboxed frame and inherits this policy, so it runs no script.
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; "
          "connect-src 'self'; frame-src 'self' blob:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": POLICY, "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}


@router.get("/ui")
@router.get("/ui/")
def page() -> FileResponse:
    return asset("index.html")


@router.get("/ui/{name}")
def asset(name: str) -> FileResponse:
    path = STATIC / name
    if not ASSET_NAME.fullmatch(name) or not path.is_file():
        raise ApiError(f"no such file in the reviewer page: {name[:80]!r}", code="not_found", status=404)
    return FileResponse(path, media_type=TYPES[path.suffix], headers=HEADERS)
