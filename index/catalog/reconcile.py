"""Reconcile: bring stored features and every space's vectors back in step with the rows.

Run whenever the catalog loads, it repairs a crash at any point of a write: rows without
features are embedded from their stored images (a backbone forward, at most the one batch a
crash cut), features without rows are dropped, and each space gets its missing vectors from
the stored features by a matrix product (no backbone forward) and loses vectors whose features
are gone.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

import numpy as np
from sqlalchemy import select

from index.catalog.features import FeatureStore
from index.db import Source
from index.images import ImageError, decode_image

if TYPE_CHECKING:
    from index.catalog.core import CatalogCore

log = logging.getLogger(__name__)


def reconcile_features(catalog: "CatalogCore") -> None:
    orphans, missing = differences(catalog.features.ids(), catalog.row_ids())
    if len(orphans):
        catalog.features.remove(orphans)
    if len(missing):
        log.warning("embedding %d sources that have no stored features yet", len(missing))
        embed_stored(catalog, missing.tolist(), catalog.features)


def reconcile_vectors(catalog: "CatalogCore") -> None:
    stored = catalog.features.ids()
    for name, space in catalog.spaces().items():
        orphans, missing = differences(space.index.ids(), stored)
        if len(orphans):
            space.index.remove(orphans)
        if len(missing):
            ids, features = catalog.features.get(missing)
            space.index.add(ids, space.head.apply(features))
        if len(orphans) or len(missing) or not catalog.stores.exists(name):
            catalog.save_space(name)


def differences(ids: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids not in others, others not in ids). The usual case at every load, the same ids on
    both sides, costs two sorts instead of four set differences."""
    if len(ids) == len(others) and np.array_equal(np.sort(ids), np.sort(others)):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.setdiff1d(ids, others), np.setdiff1d(others, ids)


def embed_stored(catalog: "CatalogCore", source_ids: list[int], store: FeatureStore,
                 progress: Callable[[int], None] | None = None) -> int:
    """Run the backbone over sources' stored images, in batches, into `store`. Unreadable images
    are logged and skipped. Returns how many were embedded."""
    done, batch = 0, catalog.config.batch_size
    for start in range(0, len(source_ids), batch):
        chunk = source_ids[start:start + batch]
        with catalog.sessions() as session:
            rows = session.execute(select(Source.id, Source.sha256).where(Source.id.in_(chunk))).all()
        ids, images = [], []
        for source_id, sha in rows:
            try:
                images.append(decode_image(catalog.blobs.read(sha), max_pixels=2**62).image)
                ids.append(source_id)
            except (OSError, ImageError) as exc:
                log.error("source %d: stored image %s cannot be read (%s); it stays unsearchable", source_id, sha, exc)
        store.add(ids, catalog.encoder.embed_features(images, batch))
        done += len(ids)
        if progress:
            progress(len(chunk))
    return done
