"""Bounds on path and query parameters, declared in the schema so OpenAPI says what is enforced.

The rule: a value outside these bounds can never name anything, so it gets 422 `invalid_request`
(on SQLite and PostgreSQL alike, before any query); a well-formed value that names nothing gets 404.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query

MAX_ID = 2**31 - 1  # PostgreSQL INTEGER; SQLite would take up to 2**63 - 1, so this holds on both
MAX_NAME_LENGTH = 255  # concepts.name is VARCHAR(255)
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]+$"

SourceId = Annotated[int, Path(ge=1, le=MAX_ID, description="A source id.")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="How many items to skip.")]
Limit = Annotated[int, Query(ge=1, le=500, description="How many items to return.")]
ConceptName = Annotated[str, Path(
    max_length=MAX_NAME_LENGTH, pattern=NO_CONTROL_CHARACTERS, description="A concept's name.",
)]
JobId = Annotated[str, Path(
    max_length=36, pattern=r"^[A-Za-z0-9_-]+$", description="A job id, as returned by POST /index.",
)]
TakedownId = Annotated[str, Path(
    max_length=36, pattern=r"^[A-Za-z0-9_-]+$", description="A takedown id, as returned by DELETE.",
)]
QueryId = Annotated[int, Path(ge=1, le=MAX_ID, description="A query id (GET /queries).")]
CaseId = Annotated[int, Path(ge=1, le=MAX_ID, description="A case id (GET /cases).")]
KeyId = Annotated[int, Path(ge=1, le=MAX_ID, description="An API key id (GET /keys).")]

EvidenceLevel = Annotated[Literal["none", "regions"], Query(
    description="`regions`: each space's first concept's sources (and the verdict's source) also carry the "
                "regions that match the query.")]
