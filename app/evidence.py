"""Region evidence for the service: matched regions between a query and catalog sources
(training/regions.py), with source features cached, and the side-by-side overlay a reviewer sees."""

from __future__ import annotations

import io
import threading
import time
from collections import OrderedDict

from PIL import Image, ImageDraw

from app.errors import ApiError
from index.errors import AttribError
from index.images import DecodedImage, decode_image
from training.regions import Features, RegionMatch, features, match_regions, query_features

CACHED_SOURCES = 512  # ORB features of this many sources stay in memory (about 40 KB each)
OVERLAY_HEIGHT = 480
OVERLAY_LINES = 60
COLOURS = {"query": (230, 90, 20), "source": (20, 110, 230), "line": (40, 170, 80), "frame": (250, 200, 0)}

_cache: OrderedDict[str, Features] = OrderedDict()
_lock = threading.Lock()


def source_features(catalog, sha256: str) -> Features:
    """A source's features, from the cache or its stored blob (decoded as at ingestion)."""
    with _lock:
        if sha256 in _cache:
            _cache.move_to_end(sha256)
            return _cache[sha256]
    decoded = decode_stored(catalog, sha256, "source")
    found = features(decoded.image, (decoded.width, decoded.height))
    with _lock:
        _cache[sha256] = found
        while len(_cache) > CACHED_SOURCES:
            _cache.popitem(last=False)
    return found


def decode_stored(catalog, sha256: str, what: str) -> DecodedImage:
    path = catalog.blobs.path(sha256)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ApiError(f"the {what}'s stored image is missing", code=f"{what}_image_missing", status=409) from None
    return decode_image(data, catalog.config.max_pixels)


def regions_for(catalog, query: DecodedImage, sources: dict[int, str]) -> tuple[dict[int, RegionMatch], float]:
    """Matches of one query against several sources ({source id: sha256}); and the time it took, in ms."""
    started = time.perf_counter()
    both = query_features(query.image, (query.width, query.height))
    found = {}
    for source_id, sha256 in sources.items():
        try:
            found[source_id] = match_regions(both, source_features(catalog, sha256))
        except AttribError:  # taken down while answering, or its stored image unreadable: no evidence
            continue
    return found, (time.perf_counter() - started) * 1000


def match_stored(catalog, query_sha256: str, source_sha256: str):
    """Both stored images, decoded, and their region match."""
    query, source = decode_stored(catalog, query_sha256, "case"), decode_stored(catalog, source_sha256, "source")
    match = match_regions(query_features(query.image, (query.width, query.height)),
                          features(source.image, (source.width, source.height)))
    return query, source, match


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def overlay(query: DecodedImage, source: DecodedImage, match: RegionMatch) -> Image.Image:
    """The query (left) and the source (right) at one height; the inliers' boxes outlined in both,
    the query's frame drawn in the source, and lines between the strongest inlier pairs."""
    query_size, source_size = (query.width, query.height), (source.width, source.height)
    query, source = query.image, source.image
    qs, ss = OVERLAY_HEIGHT / query_size[1], OVERLAY_HEIGHT / source_size[1]
    left = query.convert("RGB").resize((max(1, round(query_size[0] * qs)), OVERLAY_HEIGHT))
    right = source.convert("RGB").resize((max(1, round(source_size[0] * ss)), OVERLAY_HEIGHT))
    gap = 16
    canvas = Image.new("RGB", (left.width + gap + right.width, OVERLAY_HEIGHT), (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + gap, 0))
    draw = ImageDraw.Draw(canvas)
    dx = left.width + gap
    if match.matched:
        for (qx, qy), (sx, sy) in list(zip(match.query_points, match.source_points))[:OVERLAY_LINES]:
            draw.line([(qx * qs, qy * qs), (dx + sx * ss, sy * ss)], fill=COLOURS["line"], width=1)
        draw.polygon([(dx + x * ss, y * ss) for x, y in match.source_quad], outline=COLOURS["frame"], width=2)
        _box(draw, match.query_box, qs, 0, COLOURS["query"])
        _box(draw, match.source_box, ss, dx, COLOURS["source"])
    return canvas


def _box(draw: ImageDraw.ImageDraw, box, scale: float, dx: float, colour) -> None:
    if box:
        x0, y0, x1, y1 = box
        draw.rectangle([dx + x0 * scale, y0 * scale, dx + x1 * scale, y1 * scale], outline=colour, width=3)


def match_strength(answers: dict, inliers: dict[int, int]) -> dict[str, int]:
    """{concept: inliers} of the verdict's candidates (`app.attribution.fuse`): for each space's
    first concept, the most inliers (`inliers`: {source id: count}) of its first source in a space
    that ranks it first. Stored answers are read the same way (`verdict_decisions.strength_of`)."""
    strength: dict[str, int] = {}
    for answer in answers.values():
        if answer.available and answer.concepts and answer.concepts[0].sources:
            top = answer.concepts[0]
            strength[top.concept] = max(strength.get(top.concept, 0), inliers.get(top.sources[0].id, 0))
    return strength
