"""The catalog and what it stores: source rows and their images (blobs.py), the backbone features
(features.py), the search spaces (spaces.py, their roll-out in space_admin.py), the query pool
(pool.py), takedowns (takedowns.py) and the catalog's SQL reads (repository.py). `Catalog`
(catalog.py on core.py) keeps them in step; reconcile.py repairs a crash when it loads.
"""

from index.catalog.backbones import FeatureBackbone, backbone_name
from index.catalog.backbone_catch_up import CatchUp, catch_up, catch_up_running, missing_sources
from index.catalog.blobs import BlobStore
from index.catalog.calibration_store import CalibrationStore
from index.catalog.catalog import Catalog
from index.catalog.core import CatalogConfig, CatalogCore, Hit
from index.catalog.crashpoints import crash_point
from index.catalog.features import FeatureStore
from index.catalog.pool import QueryPool, Retention
from index.catalog.repository import (catalog_counts, existing_sources, get_source, job_counts, list_concept_sources,
                                      list_concepts, source_created, source_image_paths, source_rows)
from index.catalog.space_admin import build_live, build_previous, prepare_head, reindex
from index.catalog.spaces import CONTENT, COPY, STYLE, LiveSpace, Progress, SpaceError, SpaceInfo, check_name, space_rows
from index.catalog.takedowns import finish_pending, get_receipt, take_down_concept, take_down_source

__all__ = ["CONTENT", "COPY", "STYLE", "CatchUp", "FeatureBackbone", "backbone_name", "catch_up", "catch_up_running",
           "missing_sources", "BlobStore", "CalibrationStore", "Catalog", "CatalogConfig", "CatalogCore",
           "FeatureStore", "Hit", "LiveSpace", "Progress", "QueryPool", "Retention", "SpaceError", "SpaceInfo",
           "build_live", "build_previous", "catalog_counts", "check_name", "crash_point", "existing_sources",
           "finish_pending", "get_receipt", "get_source", "job_counts", "list_concept_sources", "list_concepts",
           "prepare_head", "reindex", "source_created", "source_image_paths", "source_rows", "space_rows", "take_down_concept",
           "take_down_source"]
