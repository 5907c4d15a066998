"""Reading uploaded files within the per-file byte limit."""

from __future__ import annotations

import re

from fastapi import UploadFile

from app.errors import ApiError

MAX_FILENAME_LENGTH = 512  # sources.filename is VARCHAR(512)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def read_limited(upload: UploadFile, limit: int) -> bytes | None:
    """The file's bytes, or None when it is over `limit`."""
    data = upload.file.read(limit + 1)
    return None if len(data) > limit else data


def too_large_message(upload: UploadFile, limit: int) -> str:
    return f"{upload.filename or 'the file'} is over the upload limit of {limit:,} bytes"


def read_single_upload(upload: UploadFile, limit: int) -> bytes:
    data = read_limited(upload, limit)
    if data is None:
        raise ApiError(too_large_message(upload, limit), code="file_too_large", status=413)
    return data


def filename_problem(name: str) -> str | None:
    """Why an uploaded file's name cannot be stored, or None when it can."""
    if len(name) > MAX_FILENAME_LENGTH:
        return f"filenames are at most {MAX_FILENAME_LENGTH} characters; this one has {len(name):,}"
    if _CONTROL.search(name):
        return "filenames may not contain control characters such as NUL"
    return None


def shown_filename(name: str) -> str:
    """A refused filename as results report it: control characters replaced, cut to the limit."""
    return _CONTROL.sub("\ufffd", name)[:MAX_FILENAME_LENGTH]
