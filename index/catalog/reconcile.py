"""Reconcile: bring stored features and every space's vectors back in step with the rows.

Run whenever the catalog loads, it repairs a crash at any point of a write, for every backbone:
rows without features are embedded from their stored images (a backbone forward, at most the one
batch a crash cut), features without rows are dropped, and each space gets its missing vectors from
the stored features by a matrix product (no backbone forward) and loses vectors whose features
are gone.

A second backbone (the copy backbone) with more missing rows than `sync_embed_limit` (a catalog
from before it was configured) is not embedded during the load: it is left `pending`, its spaces
are not live, and a catch-up (backbones.py: `attrib reindex --backbone`, or the server's
background job) embeds it while the catalog keeps answering.
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
    rows = catalog.row_ids()
    catalog.pending = {}
    for backbone_id, store in catalog.feature_stores().items():
        orphans, missing = differences(store.ids(), rows)
        if len(orphans):
            store.remove(orphans)
        if backbone_id != catalog.backbone_id and len(missing) > catalog.config.sync_embed_limit:
            catalog.pending[backbone_id] = len(missing)
            log.warning("%d sources have no %s features yet: its spaces wait for `attrib reindex --backbone %s` "
                        "or the server's catch-up job", len(missing), backbone_id, backbone_id.rsplit("-", 1)[0])
        elif len(missing):
            log.warning("embedding %d sources that have no %s features yet", len(missing), backbone_id)
            embed_stored(catalog, missing.tolist(), store)


def reconcile_vectors(catalog: "CatalogCore") -> None:
    for name, space in catalog.spaces().items():
        store = catalog.features_of(space.info.backbone_id)
        orphans, missing = differences(space.index.ids(), store.ids())
        if len(orphans):
            space.index.remove(orphans)
        if len(missing):
            ids, features = store.get(missing)
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
    """Run the store's backbone over sources' stored images, in batches, into `store` (under the
    write lock, one batch at a time). Unreadable images are logged and skipped. Returns how many
    were embedded."""
    done, batch = 0, catalog.config.batch_size
    backbone = catalog.backbones[store.backbone_id]
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
        features = backbone.embed_features(images, batch)
        with catalog.write_lock():
            store.add(ids, features)
        done += len(ids)
        if progress:
            progress(len(chunk))
    return done
