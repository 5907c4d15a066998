"""Matched regions between a query and one source: what in the query matches what in the source.

ORB keypoints (OpenCV) on both images at a long side of `SIDE` px, descriptors matched as mutual
nearest neighbours that pass Lowe's ratio test, then a similarity transform (rotation, uniform
scale, translation) fitted by RANSAC. The query is also tried mirrored, and the better fit kept.
Chosen by measurement over OpenCV's SIFT and AKAZE and scikit-image's ORB
(benchmarks/regions.py; figures in docs/evidence.md): as accurate on crops, scales, mirrors, small
rotations and painted or pencil-drawn derivations, and several times faster.

Coordinates are pixels of the images as uploaded (upright), x right and y down. `transform` maps
a query point (x, y, 1) to the source: the 2 x 3 matrix of the fit, mirroring included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

SIDE = 640  # long side at which keypoints are found
KEYPOINTS = 1000
RATIO = 0.9  # Lowe's ratio test: best match closer than RATIO x the second best
MIN_INLIERS = 3  # fewer inliers than this: no region is claimed
MAX_POINTS = 200  # inlier pairs kept in a result, strongest first

cv2.setNumThreads(1)  # one request, one core: the server runs several at once


@dataclass(frozen=True)
class Features:
    """Keypoints (x, y at the reduced size) and ORB descriptors of one image."""

    points: np.ndarray
    descriptors: np.ndarray | None
    scale: float  # reduced size / original size
    size: tuple[int, int]  # original (width, height)


@dataclass
class RegionMatch:
    inliers: int
    matches: int  # mutual matches before the geometric fit
    mirrored: bool
    transform: list[list[float]] | None  # 2 x 3, query pixels -> source pixels
    scale: float | None  # the fit's scale (source px per query px) and rotation in degrees
    rotation: float | None
    query_box: list[float] | None  # [x0, y0, x1, y1] around the query's inliers
    source_box: list[float] | None  # [x0, y0, x1, y1] around the source's inliers
    source_quad: list[list[float]] | None  # the query's frame in the source, 4 corners (clipped box: source_region)
    source_region: list[float] | None  # the box of source_quad, clipped to the source
    query_points: list[list[float]] = field(default_factory=list)
    source_points: list[list[float]] = field(default_factory=list)

    @property
    def matched(self) -> bool:
        return self.inliers >= MIN_INLIERS and self.transform is not None

    def summary(self) -> dict:
        return {"inliers": self.inliers, "mirrored": self.mirrored, "query_box": self.query_box,
                "source_box": self.source_box, "source_region": self.source_region}


def orb():
    return cv2.ORB_create(nfeatures=KEYPOINTS, fastThreshold=10)


def features(image: Image.Image, original_size: tuple[int, int] | None = None, mirrored: bool = False,
             detector=orb) -> Features:
    """ORB features of `image` (any mode); `original_size` is the upright size as uploaded when
    `image` was reduced while decoded. `detector` makes another OpenCV detector (benchmarks)."""
    gray = np.asarray(image.convert("L"))
    if mirrored:
        gray = np.ascontiguousarray(gray[:, ::-1])
    width, height = original_size or image.size
    scale = min(1.0, SIDE / max(gray.shape))
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    keypoints, descriptors = detector().detectAndCompute(gray, None)
    points = np.float32([k.pt for k in keypoints]).reshape(-1, 2)
    return Features(points, descriptors, gray.shape[1] / width, (width, height))


def query_features(image: Image.Image, original_size: tuple[int, int] | None = None,
                   detector=orb) -> tuple[Features, Features]:
    """The query's features as it is and mirrored (computed once, matched against many sources)."""
    return features(image, original_size, False, detector), features(image, original_size, True, detector)


def match_regions(query: tuple[Features, Features], source: Features) -> RegionMatch:
    """The better of the plain and the mirrored query's fits against `source` (the one with fewer
    mutual matches is fitted only if it could still have more inliers)."""
    pairs = [_mutual_matches(f.descriptors, source.descriptors) if _usable(f) and _usable(source) else None
             for f in query]
    order = sorted((0, 1), key=lambda i: -len(pairs[i]) if pairs[i] is not None else 0)
    best = _fit(query[order[0]], source, bool(order[0]), pairs[order[0]])
    second = pairs[order[1]]
    if second is not None and len(second) > best.inliers:
        other = _fit(query[order[1]], source, bool(order[1]), second)
        if other.inliers > best.inliers:
            return other
    return best


def _usable(found: Features) -> bool:
    return found.descriptors is not None and len(found.points) >= 2


def _mutual_matches(query: np.ndarray, source: np.ndarray) -> np.ndarray:
    """[query index, source index] pairs, closest first: each other's nearest neighbour, and the
    query's nearest closer than RATIO x its second nearest."""
    if len(query) < 2 or len(source) < 2:
        return np.zeros((0, 2), np.int64)
    norm, dtype = (cv2.NORM_L2, cv2.CV_32F) if query.dtype == np.float32 else (cv2.NORM_HAMMING, cv2.CV_32S)
    forward, nearest = cv2.batchDistance(query, source, dtype, normType=norm, K=2)  # in C: no match objects
    _, back = cv2.batchDistance(source, query, dtype, normType=norm, K=1)
    rows = np.arange(len(query))
    keep = (forward[:, 0] < RATIO * forward[:, 1]) & (back[nearest[:, 0], 0] == rows)
    order = np.argsort(forward[keep, 0], kind="stable")
    return np.c_[rows[keep], nearest[keep, 0]][order].astype(np.int64)


def _fit(query: Features, source: Features, mirrored: bool, pairs: np.ndarray | None) -> RegionMatch:
    none = RegionMatch(0, 0 if pairs is None else len(pairs), mirrored, None, None, None, None, None, None, None)
    if pairs is None or len(pairs) < MIN_INLIERS:
        return none
    matched = query.points[pairs[:, 0]] / query.scale  # query pixels as matched (mirrored, if so)
    s = source.points[pairs[:, 1]] / source.scale
    model, mask = cv2.estimateAffinePartial2D(matched, s, method=cv2.RANSAC, maxIters=2000, confidence=0.995,
                                              ransacReprojThreshold=4.0 / source.scale)  # 4 px at matching size
    if model is None or mask is None:
        return none
    q = matched.copy()
    if mirrored:  # back to the query as uploaded; the transform then includes the mirror
        q[:, 0] = query.size[0] - q[:, 0]
        flip = np.array([[-1.0, 0.0, query.size[0]], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        model = (np.vstack([model, [0.0, 0.0, 1.0]]) @ flip)[:2]
    keep = mask.ravel().astype(bool)
    return _result(len(pairs), int(keep.sum()), mirrored, model, q[keep], s[keep], query.size, source.size)


def _result(matches, inliers, mirrored, model, qi, si, query_size, source_size) -> RegionMatch:
    w, h = query_size
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], dtype=np.float64) @ model.T
    region = _clip([*corners.min(0), *corners.max(0)], source_size)
    linear = model[:, :2] @ np.diag([-1.0, 1.0]) if mirrored else model[:, :2]  # rotation x scale
    scale = float(np.sqrt(abs(np.linalg.det(linear))))
    rotation = float(np.degrees(np.arctan2(linear[1, 0], linear[0, 0])))
    order = np.argsort(np.linalg.norm(np.c_[qi, np.ones(len(qi))] @ model.T - si, axis=1))[:MAX_POINTS]
    return RegionMatch(
        inliers=inliers, matches=matches, mirrored=mirrored, transform=_round(model), scale=round(scale, 4),
        rotation=round(rotation, 2), query_box=_box(qi), source_box=_box(si), source_quad=_round(corners),
        source_region=region if inliers >= MIN_INLIERS else None,
        query_points=_round(qi[order]), source_points=_round(si[order]),
    )


def _box(points: np.ndarray) -> list[float] | None:
    return _round([*points.min(0), *points.max(0)]) if len(points) else None


def _clip(box, size) -> list[float] | None:
    x0, y0, x1, y1 = max(box[0], 0), max(box[1], 0), min(box[2], size[0]), min(box[3], size[1])
    return _round([x0, y0, x1, y1]) if x1 > x0 and y1 > y0 else None


def _round(values) -> list:
    return np.round(np.asarray(values, dtype=np.float64), 1).tolist()
