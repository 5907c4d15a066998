"""Catching a backbone up: embed, in the background, every source that has no features of a
configured backbone yet (a catalog from before the copy backbone, or after switching copy models),
then put that backbone's spaces live. `attrib reindex --backbone NAME` and the server's catch-up
job (index/jobs/catch_ups.py) run it.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from index.catalog.backbones import backbone_name
from index.catalog.reconcile import embed_stored
from index.errors import CatalogError

if TYPE_CHECKING:
    from index.catalog.catalog import Catalog


@dataclass
class CatchUp:
    """What a catch-up did: `finished` is false when it was asked to stop before the end."""

    backbone: str
    backbone_id: str
    embedded: int
    sources: int
    finished: bool


def missing_sources(catalog: "Catalog", backbone_id: str) -> np.ndarray:
    """Ids of source rows that have no stored features of this backbone."""
    store = catalog.features_of(backbone_id)
    with catalog.write_lock():
        store.refresh()
        return np.setdiff1d(catalog.row_ids(), store.ids())


def catch_up(catalog: "Catalog", backbone_id: str, progress: Callable[[int], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> CatchUp:
    """Embed every source that has no features of `backbone_id` yet, a batch at a time, then load
    the catalog again: its spaces on that backbone (`copy`) are built and go live, and the other
    processes reload. The write lock is held only while a batch is stored, so queries, ingestion
    and takedowns go on meanwhile; sources ingested meanwhile get both backbones' features from
    the ingestion itself. Only one catch-up per backbone runs at a time (a file lock), and one that
    is stopped (`should_stop`) can run again: it starts where the stored features end."""
    backbone = catalog.backbones.get(backbone_id)
    if backbone is None:
        raise CatalogError(f"the backbone {backbone_id} is not configured", code="unknown_backbone", status=422)
    with _only_one(catalog.home, backbone_id):
        missing = missing_sources(catalog, backbone_id).tolist()
        embedded, step = 0, catalog.config.batch_size * 4
        for start in range(0, len(missing), step):
            if should_stop and should_stop():
                return CatchUp(backbone.name, backbone_id, embedded, len(missing), False)
            embedded += embed_stored(catalog, missing[start:start + step], catalog.features_of(backbone_id), progress)
        catalog.reload()
    return CatchUp(backbone.name, backbone_id, embedded, len(missing), True)


def catch_up_running(home: Path, backbone_id: str) -> bool:
    """Whether a catch-up of this backbone runs now (in any process on this catalog)."""
    try:
        with _only_one(home, backbone_id):
            return False
    except CatalogError:
        return True


@contextmanager
def _only_one(home: Path, backbone_id: str) -> Iterator[None]:
    with open(home / f"catch-up-{backbone_id}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CatalogError(f"a catch-up of {backbone_name(backbone_id)} is already running for this catalog "
                               "(the server's background job, or another `attrib reindex --backbone`)",
                               code="catch_up_running", status=409) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
