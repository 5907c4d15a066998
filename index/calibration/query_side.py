"""The catalog fits' queries embedded as `/attribute` embeds a query.

The label-free fits (the calibration of a space, the verdict) score catalog sources and edited
copies of them as queries. A head trained with query views (`training/query_views.py`: random
views, or the sketch and silhouette of a rendered head) embeds a served query as the average over
its clean view and those views, so its fits must see the same average, not the clean view alone:
a calibration fitted on embeddings that serving never makes is fitted to the wrong scores.
"""

from __future__ import annotations

import numpy as np

from index.calibration.concept_scores import CatalogConcepts
from index.catalog import LiveSpace
from index.images import decode_image
from training.config import AugmentConfig
from training.images import ImageError
from training.query_views import query_view_features
from training.selffit import MAX_COPIES, MAX_PAIRS, edited_copy
from training.views import recipe_key

VIEWS_KEPT = 4 * (MAX_PAIRS + 2 * MAX_COPIES)  # a few heads' worth of the fits' queries


def head_queries(catalog, live: LiveSpace, concepts: CatalogConcepts, ids: np.ndarray, features: np.ndarray,
                 seen: dict, edit: AugmentConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, the head's query embeddings) of the sources `ids` as queries (`edit` None), or of
    their edited copies made with `edit` (`training.selffit.edited_copy`); `features` are their
    clean backbone features. A head with query views has them made from the same images, kept in
    `seen["query views"]` by backbone, image, edit and view recipe; a source taken down meanwhile
    is dropped."""
    count, augment = live.head.query_views
    if count <= 0 or not len(ids):
        return ids, live.head.apply_query(features)
    backbone = catalog.backbone_of(live)
    tag = "source" if edit is None else recipe_key(edit)
    views = seen.setdefault("query views", {})
    if len(views) > VIEWS_KEPT:
        views.clear()
    kept, rows = [], []
    for row, position in enumerate(np.searchsorted(concepts.source_ids, ids).tolist()):
        sha = concepts.shas[position]
        key = (backbone.backbone_id, sha, tag, count, recipe_key(augment))
        if key not in views:
            try:
                image = decode_image(catalog.blobs.read(sha), catalog.config.max_pixels).image
            except (OSError, ImageError):
                continue
            if edit is not None:
                image = edited_copy(image, sha, backbone.input_size, recipe=edit)
            views[key] = query_view_features(backbone, image, f"{tag}:{sha}", count, augment)
        kept.append(row)
        rows.append(views[key])
    if not kept:
        return ids[:0], np.zeros((0, live.head.dim), np.float32)
    return ids[kept], live.head.apply_query(features[kept], np.stack(rows))
