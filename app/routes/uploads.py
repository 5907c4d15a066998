"""Reading uploaded files within the per-file byte limit."""

from __future__ import annotations

from fastapi import UploadFile

from app.errors import ApiError


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
