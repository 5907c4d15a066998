"""Parts of an attribution answer (app/schemas.py): a source it names, and its verdict."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.schemas_evidence import RegionSummary


class SourceRef(BaseModel):
    id: int
    filename: str
    score: float = Field(description="Cosine similarity between the query and this source, in [-1, 1].")
    image_url: str
    thumbnail_url: str
    regions: RegionSummary | None = Field(None, description="Matched regions with the query (only with "
                                          "`POST /attribute?evidence=regions`, for the first concept's sources).")



class VerdictOut(BaseModel):
    kind: Literal["match", "none"] = Field(description="`match`: the catalog holds the source, and it is `concept`; "
                                           "`none`: no catalog image is the source (`concept` is then the best guess).")
    concept: str = Field(description="The best candidate: the concept that the spaces, taken together, find likeliest.")
    probability: float = Field(ge=0, le=1, description="Calibrated probability that `concept` is the source.")
    none_probability: float = Field(ge=0, le=1, description="Calibrated probability that no catalog concept is.")
    spaces: list[str] = Field(description="The spaces that rank `concept` first.")
    source: SourceRef | None = Field(description="The concept's best source, in the space surest of it.")
    source_space: str | None = Field(description="The space `source` comes from.")
    method: Literal["catalog", "decisions", "max_rule"] = Field(description="How the spaces are fused: a fit on the "
        "catalog's own sources (`catalog`), on reviewers' decisions (`decisions`), or, before a fit exists or when "
        "fewer than all live spaces answered, the space surest of a concept (`max_rule`).")
    chosen: str = Field(description="What the fit kept after checking itself on held-out data: `fused` (every "
                        "space), or the name of the one space it trusts; `max_rule` without a fit.")
    read_regions: bool = Field(False, description="Whether it read its candidates' region inlier counts: only with "
                               "`?evidence=regions`, once a refit on reviewers' decisions found they help.")
