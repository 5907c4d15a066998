"""The catalog as attrib opens it: the core (core.py: rows, stored features, the spaces' stores
and blobs, the write lock) and its load, which repairs a crash at any point (reconcile.py) and
opens every space (space_admin.py). Reconcile and the space roll-out work on the core, so they
import core.py and this module imports them: no module needs the other back.
"""

from __future__ import annotations

from index.catalog.core import CatalogCore
from index.catalog.features import FeatureStore
from index.catalog.reconcile import reconcile_features, reconcile_vectors
from index.catalog.space_admin import open_spaces
from index.catalog.spaces import space_rows
from index.errors import CatalogError
from training.sscd import COPY_BACKBONES


class Catalog(CatalogCore):
    """The catalog: loaded (and reconciled with the rows) on first use, and again after another
    process wrote (`CatalogCore.spaces`)."""

    def _load(self) -> None:
        self.check_backbone()
        stamp, before = self._stamp(), self._stored_files()
        self._features = {bid: FeatureStore(self.home / "features", bid, backbone.feature_dim)
                          for bid, backbone in self.backbones.items()}
        if self.reconcile_on_load:
            reconcile_features(self)
        self._spaces = open_spaces(self)
        if self.reconcile_on_load:
            reconcile_vectors(self)
        if stamp is None or self._stored_files() != before:  # repaired or built: the others reload
            self._touch()
        else:  # a plain load changes nothing, so the other processes need not reload after it
            self._loaded_stamp = stamp

    def reload(self) -> None:
        """Load again now (after a catch-up): requests keep the spaces they have until it is done."""
        with self.maintenance():
            self._load()

    def check_backbone(self) -> None:
        foreign = [info for info in space_rows(self.sessions)
                   if info.backbone_id != self.backbone_id and info.backbone not in COPY_BACKBONES]
        if foreign:
            raise CatalogError(
                f"the catalog in {self.home} was built with backbone {foreign[0].backbone_id}, but the "
                f"configured encoder's backbone is {self.backbone_id}. Run `attrib reindex` to re-embed "
                "every stored source with the configured backbone, or set ATTRIB_ENCODER back.",
                code="encoder_mismatch",
            )
