"""Putting a head live, or rolling a space back, together with the head's own calibration.

The catalog builds the space's index from the stored features and swaps it in (`index.catalog`:
build_live, build_previous); then the head now live gets its calibration, found by its head id
(fitted then if it has none, never the previous head's), so the first answer does not wait for
the fit.
"""

from __future__ import annotations

import logging
from pathlib import Path

from index.calibration.calibration import calibration_for
from index.calibration.verdict_fit import verdict_for
from index.catalog import Catalog, Progress, SpaceInfo, build_live, build_previous, check_name, prepare_head
from training.errors import AttribError
from training.heads import Head

log = logging.getLogger(__name__)


def put_live(catalog: Catalog, name: str, head: Head, kept: str | None,
             progress: Progress | None = None) -> SpaceInfo:
    """Build the space's index from the stored features, then swap it in (space made if new)."""
    info = build_live(catalog, name, head, kept, progress)
    _calibrate(catalog, name)
    return info


def set_head(catalog: Catalog, name: str, checkpoint: str | Path | None,
             progress: Progress | None = None) -> SpaceInfo:
    check_name(name)
    return put_live(catalog, name, *prepare_head(catalog, checkpoint), progress)


def rollback(catalog: Catalog, name: str, progress: Progress | None = None) -> SpaceInfo:
    """Put the previous head of a space back live (rolling back twice rolls forward again)."""
    info = build_previous(catalog, name, progress)
    _calibrate(catalog, name)
    return info


def _calibrate(catalog: Catalog, name: str) -> None:
    """Make sure the head now live has a calibration (its own, found by head id), so the first
    answer does not wait for the fit. A failure here only postpones the fit to that answer."""
    try:
        calibration_for(catalog, catalog.live_space(name))
        verdict_for(catalog, catalog.spaces(), wait=True)  # the set of live heads changed
    except (AttribError, ValueError, OSError, RuntimeError):  # the head is live either way
        log.exception("space %s: fitting the calibration of its new head (or the verdict) failed", name)
