"""Shapes of region evidence: matched regions between a query and a source (app/evidence.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field

BOX = "[x0, y0, x1, y1] in pixels of the image as uploaded (x right, y down)"


class RegionSummary(BaseModel):
    inliers: int = Field(description="Keypoint pairs that agree with one geometric fit; unrelated images get few.")
    mirrored: bool = Field(description="The query matches the source mirrored left to right.")
    query_box: list[float] | None = Field(description=f"Around the matched keypoints in the query, {BOX}.")
    source_box: list[float] | None = Field(description=f"Around the matched keypoints in the source, {BOX}.")
    source_region: list[float] | None = Field(
        description=f"Where the whole query lies in the source (its frame mapped by the fit, clipped), {BOX}; "
        "null when fewer than 3 inliers.")


class RegionEvidence(RegionSummary):
    case_id: int
    source_id: int
    method: str = Field(description="How the correspondences were found and fitted.")
    matched: bool = Field(description="At least 3 inliers and a fit: the regions are claimed.")
    matches: int = Field(description="Mutual nearest-neighbour matches before the geometric fit.")
    transform: list[list[float]] | None = Field(
        description="2 x 3 matrix from query pixels (x, y, 1) to source pixels: a similarity, mirroring included.")
    scale: float | None = Field(description="Source pixels per query pixel.")
    rotation: float | None = Field(description="Degrees (counter-clockwise in the image) from query to source.")
    source_quad: list[list[float]] | None = Field(description="The query's four corners in the source, unclipped.")
    query_points: list[list[float]] = Field(description="Inlier keypoints in the query, [x, y], best first (≤ 200).")
    source_points: list[list[float]] = Field(description="Their partners in the source, in the same order.")
    query_size: list[int] = Field(description="[width, height] of the query as uploaded.")
    source_size: list[int] = Field(description="[width, height] of the source as uploaded.")
    overlay_url: str = Field(description="The side-by-side PNG of this evidence.")
    timing_ms: float
