"""A content head's query views, drawn while the backbones run.

A head trained with query views (a rendered head's sketch and silhouette, training/query_views.py)
embeds each query's views beside its clean view. Drawing them (Pillow and OpenCV, one core: about
1.5 ms for two 192 px renderings here) used to wait until the backbones' forwards were done. It
now starts in a thread of its own as soon as the query is decoded, so it overlaps the encoder's
forward, which leaves part of the cores idle. On 2 cores this took 2.4 ms off the median answer
with a rendered head live (22.3 ms → 19.9 ms, interleaved in one run). Only the views' forward
still follows the drawing. The views are the same pixels as before, so the answers do not change.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor

from index.catalog import Catalog
from index.images import DecodedImage
from training.query_views import query_view_pixels
from training.views import recipe_key

_DRAWERS = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="query-views")


def view_key(head) -> tuple:
    """Heads that ask for the same views of the same backbone share one drawing and one forward."""
    count, augment = head.query_views
    return head.backbone_id, count, recipe_key(augment)


def start_drawing(catalog: Catalog, heads, decoded: DecodedImage) -> dict[tuple, Future]:
    """Start drawing the views each head asks for (`view_key` → a future of the (count, H, W, 3)
    uint8 pixels). The image is only read, so the forwards may read it meanwhile."""
    drawn: dict[tuple, Future] = {}
    for head in heads:
        count, augment = head.query_views
        if count > 0 and (key := view_key(head)) not in drawn:
            size = catalog.backbones[head.backbone_id].input_size
            drawn[key] = _DRAWERS.submit(query_view_pixels, decoded.image, decoded.sha256, count, augment, size)
    return drawn
