"""A content head's query views, drawn and embedded while the rest of the answer is made.

A head trained with query views (a rendered head's sketch and silhouette, training/query_views.py)
embeds each query's views beside its clean view. This used to add, in sequence, the drawing
(Pillow and OpenCV on one core, about 1.5–2 ms for two 192 px renderings here) and the views'
forward (3.7–4.6 ms) after the backbones' clean forwards. Now:

- the drawing starts in a thread of its own as soon as the query is decoded, beside the
  encoder's forward, which leaves part of the cores idle;
- the views' forward is queued on the backbone's inference thread right after the clean
  forwards, without waiting for it, and the spaces that need no views are searched meanwhile.

The views are the same pixels through the same forward, so the answers do not change; only the
content space waits for them. On 2 cores, all spaces with a rendered head live answered +14.3 to
+15.9 ms after style alone before (three runs), and +9.5 and +10.7 ms after (two runs;
benchmarks/perf.py --section spaces).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from index.catalog import Catalog
from index.images import DecodedImage
from training.query_views import embed_view_pixels, query_view_pixels, view_forward_input
from training.views import recipe_key

_DRAWERS = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="query-views")


def view_key(head) -> tuple:
    """Heads that ask for the same views of the same backbone share one drawing and one forward."""
    count, augment = head.query_views
    return head.backbone_id, count, recipe_key(augment)


class QueryViews:
    """The views of one query for the heads that ask for any, by `view_key`."""

    def __init__(self, catalog: Catalog, heads, decoded: DecodedImage):
        """Start drawing. The image is only read, so the clean forwards may read it meanwhile."""
        self.drawn: dict[tuple, Future] = {}
        self.embedded: dict[tuple, Future] = {}
        for head in heads:
            count, augment = head.query_views
            if count > 0 and (key := view_key(head)) not in self.drawn:
                size = catalog.backbones[head.backbone_id].input_size
                self.drawn[key] = _DRAWERS.submit(query_view_pixels, decoded.image, decoded.sha256, count, augment,
                                                  size)

    @staticmethod
    def waits(live) -> bool:
        """Whether a live space (or None) waits for views."""
        return live is not None and live.head.query_views[0] > 0

    def embed(self, catalog: Catalog, forwards: dict) -> None:
        """Queue every drawing's forward (through `forwards[backbone id]` where given: a shared
        batcher queues it and returns at once; otherwise it runs here)."""
        for key, drawing in self.drawn.items():
            backbone, forward = catalog.backbones[key[0]], forwards.get(key[0])
            pixels = drawing.result()
            if forward is not None and len(pixels) and hasattr(forward, "submit"):
                self.embedded[key] = forward.submit(view_forward_input(backbone, pixels))
            else:
                self.embedded[key] = resolved(embed_view_pixels(backbone, pixels, forward))

    def features(self, head) -> np.ndarray:
        """(V, D) features of the views `head` asks for (waits for their forward)."""
        return self.embedded[view_key(head)].result()


def resolved(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future
