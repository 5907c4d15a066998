"""Building the heavy objects from settings: the encoder and the catalog. Used by CLI and app."""

from __future__ import annotations

from app.settings import Settings
from index.catalog import Catalog
from training.encoders import Encoder, load_encoder


def load_configured_encoder(settings: Settings) -> Encoder:
    return load_encoder(settings.encoder, settings.encoder_weights, settings.device)


def open_catalog(settings: Settings, encoder: Encoder | None = None) -> Catalog:
    return Catalog(settings.catalog_config(), encoder or load_configured_encoder(settings))
