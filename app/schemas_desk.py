"""Request and response models of the review desk: cases, decisions, rescores, audit, keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from app.params import MAX_ID, MAX_NAME_LENGTH, NO_CONTROL_CHARACTERS

Role = Literal["admin", "reviewer", "ingest"]
Status = Literal["open", "match", "no_match", "escalated"]
MAX_NOTE = 10_000
ConceptRef = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NO_CONTROL_CHARACTERS)]
SourceRefId = Annotated[int, Field(ge=1, le=MAX_ID)]


class DecisionIn(BaseModel):
    model_config = {"extra": "forbid"}

    decision: Literal["match", "no_match", "escalate"]
    concepts: list[ConceptRef] = Field(default_factory=list, max_length=100,
                                description="Concepts judged copied (at least one for `match`; none for `no_match`). "
                                "Each must appear in one of the case's answers or in the catalog.")
    source_ids: list[SourceRefId] = Field(default_factory=list, max_length=500,
                                  description="Sources judged copied, from the case's answers or the catalog.")
    note: str = Field("", max_length=MAX_NOTE, pattern=r"^[^\x00]*$", description="Free text (no NUL).")


class DecisionOut(BaseModel):
    id: int
    case_id: int
    decision: Literal["match", "no_match", "escalate"]
    concepts: list[str]
    source_ids: list[int]
    note: str
    key_id: int | None
    key_name: str
    created_at: datetime
    superseded_by: int | None = Field(description="The next decision on the case, which supersedes this one.")


class RescoreOut(BaseModel):
    id: int
    created_at: datetime
    key_id: int | None
    key_name: str
    previous_answer: dict[str, Any] = Field(description="The case's answer before this rescore.")
    answer: dict[str, Any] = Field(description="The answer from the heads live at the rescore.")
    head_ids: dict[str, str]
    changed: bool = Field(description="Whether the top concept changed in any space.")
    changes: dict[str, dict[str, list[str]]] = Field(
        description="Every space whose ranking changed: `{space: {before: [concepts], after: [concepts]}}`.")


class CaseSummary(BaseModel):
    id: int
    status: Status
    created_at: datetime
    filename: str
    top_concept: str | None
    confidence: float | None
    none_probability: float | None
    image_url: str
    decisions: int = Field(description="How many decisions the case has.")


class CaseOut(BaseModel):
    id: int
    status: Status = Field(description="The latest decision's verdict; `open` before any.")
    created_at: datetime
    key_id: int | None
    key_name: str
    filename: str
    image_url: str
    report_url: str
    backbone_id: str
    head_ids: dict[str, str]
    answer: dict[str, Any] = Field(description="The attribution answer (as POST /attribute gives it); the "
                                   "newest one after a rescore.")
    top_concept: str | None = Field(description="Top concept of the content space (else the first space that answered).")
    confidence: float | None = Field(description="That concept's calibrated `probability` if the answer has one, "
                                     "else its `share`.")
    none_probability: float | None = Field(description="That space's `none_probability`, if the answer has one.")
    decisions: list[DecisionOut] = Field(description="Oldest first; the last one is in force.")
    rescores: list[RescoreOut] = Field(description="Oldest first.")


class CaseExport(BaseModel):
    items: list[dict[str, Any]]
    total: int = Field(description="Cases matching the filters.")
    truncated: bool = Field(description="True when more cases matched than `max_rows`.")
    max_rows: int


class AuditOut(BaseModel):
    id: int
    at: datetime
    key_id: int | None = Field(description="The key that wrote (null for the command line).")
    key_name: str = Field(description="The key's name, or `cli`.")
    action: str = Field(description="e.g. `case.create`, `decision.create`, `case.rescore`, `source.create`, "
                        "`source.delete`, `concept.create`, `concept.delete`, `key.create`, `key.revoke`, `key.role`.")
    target_type: str
    target_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class KeyIn(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NO_CONTROL_CHARACTERS)
    role: Role


class RoleIn(BaseModel):
    model_config = {"extra": "forbid"}

    role: Role


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    role: Role | None
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The plain key: shown only now, only its hash is stored.")


class WhoAmI(BaseModel):
    key_id: int
    name: str
    role: Role | None
