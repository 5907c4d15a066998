"""Building the heavy objects from settings: the encoder and the catalog. Used by CLI and app."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.settings import Settings
from index.db import make_engine, session_factory, upgrade_database

if TYPE_CHECKING:  # imported where used: `attrib keys` must start without torch
    from index.catalog import Catalog, QueryPool
    from training.encoders import Encoder
    from training.sscd import CopyBackbone

log = logging.getLogger(__name__)


def load_configured_encoder(settings: Settings) -> Encoder:
    from training.encoders import load_encoder

    return load_encoder(settings.encoder, settings.encoder_weights, settings.device,
                        engine=settings.engine, engine_cache=settings.engine_cache,
                        engine_batch=settings.engine_batch)


def load_copy_backbone(settings: Settings) -> tuple[CopyBackbone | None, str | None]:
    """(the configured copy backbone, None), or (None, why there is none): a missing wheel is
    logged, and the service runs on the encoder alone."""
    from training.sscd import CopyBackboneError, load_copy_backbone as load

    if settings.copy_backbone == "none":
        return None, "no copy backbone is configured (ATTRIB_COPY_BACKBONE=none)"
    try:
        return load(settings.copy_backbone, settings.engine, settings.copy_batch), None
    except CopyBackboneError as exc:
        log.warning("the copy space is unavailable: %s", exc.message)
        return None, exc.message


def open_catalog(settings: Settings, encoder: Encoder | None = None) -> Catalog:
    """The catalog, with this process's decodes bounded by ATTRIB_MAX_CONCURRENT_DECODES and
    ATTRIB_DECODE_BUDGET_PIXELS."""
    from index.catalog import Catalog
    from index.images import set_decode_budget, set_max_concurrent_decodes

    set_max_concurrent_decodes(settings.max_concurrent_decodes)
    set_decode_budget(settings.decode_budget_pixels)
    copy, problem = load_copy_backbone(settings)
    return Catalog(settings.catalog_config(), encoder or load_configured_encoder(settings), copy=copy,
                   copy_problem=problem)


def open_database(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    """The migrated database alone, for commands that need no encoder (keys)."""
    url = settings.database_url_resolved
    upgrade_database(url)
    engine = make_engine(url)
    return engine, session_factory(engine)


def open_pool(settings: Settings, sessions: sessionmaker[Session]) -> QueryPool:
    from index.catalog import QueryPool

    return QueryPool(settings.home, sessions, settings.retention())
