"""Roll-out of search spaces: open them, put a new head live, roll back, rebuild after a
backbone change, and carry a pre-spaces catalog over.

Putting a head live builds its vectors from the stored features (a matrix product, no backbone
forward) into a new store beside the live one, puts that live in the store (index/stores),
records it, and then swaps it in whole, so requests never wait for the build and never see
half an index. The head it replaced is kept for a roll-back. The head put live or rolled back
then gets its own calibration: `index.calibration` (rollout.py: put_live, set_head, rollback)
runs the builds here and then the fit.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from index.catalog.backbones import backbone_name
from index.catalog.core import CatalogCore
from index.catalog.features import FeatureStore
from index.catalog.reconcile import embed_stored
from index.catalog.spaces import (CONTENT, COPY, STYLE, HeadFiles, LiveSpace, Progress, SpaceError, SpaceInfo, build_index,
                                  check_name, delete_rows, record_build, space_rows)
from index.stores import VectorStore, sidecar_path
from training.heads import Head, load_head
from training.query_views import warm_up_views
from training.self_check import RAW, choose
from training.sscd import COPY_BACKBONES

log = logging.getLogger(__name__)
LEGACY_INDEX = Path("index") / "vectors.faiss"


def open_spaces(catalog: CatalogCore) -> dict[str, LiveSpace]:
    """Load every space's head and index (rebuilding an index that is missing or stale). A space
    whose backbone is not configured, or still being embedded (`catalog.pending`), is not live."""
    _seed_spaces(catalog, {info.name: info for info in space_rows(catalog.sessions)})
    heads = HeadFiles(catalog.home)
    spaces = {}
    for info in space_rows(catalog.sessions):
        backbone = catalog.backbones.get(info.backbone_id)
        if backbone is None or info.backbone_id in catalog.pending:
            continue
        head = heads.load(info.head_id, info.head_path, info.backbone_id, backbone.feature_dim)
        spaces[info.name] = LiveSpace(info, head, _load_index(catalog, info, head))
        warm_up_views(backbone, head)
    return spaces


def _load_index(catalog: CatalogCore, info: SpaceInfo, head: Head) -> VectorStore:
    """The space's live store; one that is missing, unreadable or of another head is rebuilt."""
    index = catalog.stores.open(info.name, head.head_id, head.dim)
    if index is not None:
        return index
    index = build_index(catalog.features_of(info.backbone_id), head, catalog.stores, info.name,
                        target_recall=catalog.config.target_recall, kind=info.factory)
    catalog.stores.install(info.name, index)
    return index


def _seed_spaces(catalog: CatalogCore, existing: dict[str, SpaceInfo]) -> None:
    """A catalog always has `style` (the raw backbone), and `copy` (the copy backbone's raw
    descriptors) when a copy backbone is configured and embedded; `content` comes from
    ATTRIB_ENCODER's head when that is a trained checkpoint and the catalog has no content space yet."""
    _seed_copy(catalog, existing.get(COPY))
    legacy = _legacy_encoder_id(catalog.home)
    if STYLE not in existing:
        _build(catalog, STYLE, Head.identity(catalog.backbone_id, catalog.feature_dim), None)
    encoder = catalog.encoder
    if CONTENT not in existing and encoder.head is not None:
        kept = HeadFiles(catalog.home).root / f"{encoder.encoder_id}.pt"
        if not kept.is_file():
            encoder.save(kept)
        _build(catalog, CONTENT, Head.of_encoder(encoder), str(kept))
    elif CONTENT not in existing and legacy and legacy != catalog.backbone_id:
        log.warning("the old single index was built with encoder %s, which is not configured now; "
                    "put a trained head live with `attrib spaces set content CHECKPOINT`", legacy)
    if legacy:
        for path in (catalog.home / LEGACY_INDEX, sidecar_path(catalog.home / LEGACY_INDEX)):
            path.unlink(missing_ok=True)
        log.warning("carried the old single index over to spaces: %s",
                    ", ".join(info.name for info in space_rows(catalog.sessions)))


def _seed_copy(catalog: CatalogCore, info: SpaceInfo | None) -> None:
    """Build `copy` on the configured copy backbone once its features are complete, and delete
    the features of a copy backbone it no longer uses."""
    copy = catalog.copy
    if copy is None or copy.backbone_id in catalog.pending:
        return
    if info is None or info.backbone_id != copy.backbone_id:
        _build(catalog, COPY, Head.identity(copy.backbone_id, copy.feature_dim), None, keep_previous=False)
    root = catalog.home / "features"
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.is_dir() and backbone_name(folder.name) in COPY_BACKBONES and folder.name != copy.backbone_id:
            shutil.rmtree(folder, ignore_errors=True)


def _legacy_encoder_id(home: Path) -> str | None:
    try:
        return json.loads(sidecar_path(home / LEGACY_INDEX).read_text())["encoder_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _build(catalog: CatalogCore, name: str, head: Head, head_path: str | None,
           progress: Progress | None = None, keep_previous: bool = True) -> SpaceInfo:
    index = build_index(catalog.features_of(head.backbone_id), head, catalog.stores, name, progress,
                        catalog.config.target_recall)
    catalog.stores.install(name, index)
    info = record_build(catalog.sessions, name, head, head_path, index.info.factory, len(index), keep_previous)
    warm_up_views(catalog.backbones[head.backbone_id], head)
    catalog.install_space(name, LiveSpace(info, head, index))
    return info


def prepare_head(catalog: CatalogCore, checkpoint: str | Path | None, force: bool = False) -> tuple[Head, str | None]:
    """Load and check a head (None: the identity head) and keep a copy of its checkpoint.

    A bad head (unreadable, another backbone, another feature width) is refused here, before
    anything changes; the serving index stays as it was. So is a head that lost its own
    self-check to the raw backbone, unless `force`.
    """
    if checkpoint is None:
        return Head.identity(catalog.backbone_id, catalog.feature_dim), None
    head = load_head(checkpoint, catalog.backbone_id, catalog.feature_dim, other_backbones(catalog))
    if not force and (reason := losing_reason(head)):
        raise SpaceError(reason, code="head_loses_self_check", status=422)
    return head, None if head.is_identity else HeadFiles(catalog.home).keep(checkpoint, head.head_id)


def other_backbones(catalog: CatalogCore) -> dict[str, int]:
    """The configured backbones besides the encoder's (the copy backbone), whose features a
    trained head may map: backbone id -> feature width."""
    return {bid: b.feature_dim for bid, b in catalog.backbones.items() if bid != catalog.backbone_id}


def losing_reason(head: Head) -> str | None:
    """Why a head should not go live silently: its self-check (training/self_check.py) scored it
    below the raw backbone; None when it won, tied, or was not checked."""
    check = head.self_check or {}
    figures, name = check.get("candidates") or {}, check.get("kept")
    kept, raw = figures.get(name), figures.get(RAW)
    weights = check.get("kind_weights")
    if not kept or not raw or name == RAW or choose({name: kept, RAW: raw}, weights) != RAW:
        return None
    if weights:
        figures = f"mAP weighted by the pool {kept['weighted_mAP']} against {raw['weighted_mAP']} for raw"
    else:
        figures = (f"worst kind of edit mAP {kept['worst_kind']} against {raw['worst_kind']} for raw, mean over "
                   f"kinds {kept['mean_over_kinds']} against {raw['mean_over_kinds']}")
    return (f"head {head.head_id} lost its self-check to the raw backbone ({check.get('queries')} derived queries "
            f"of catalog sources): {figures}; train it with the default recipe, or put it live anyway with --force "
            "(API: ?force=true)")


def build_live(catalog: CatalogCore, name: str, head: Head, kept: str | None,
               progress: Progress | None = None) -> SpaceInfo:
    """Build the space's index from the stored features, then swap it in (space made if new).
    `index.calibration.put_live` runs this, then fits the new head's calibration."""
    check_name(name)
    if name == COPY and catalog.copy is not None and head.backbone_id != catalog.copy.backbone_id:
        raise SpaceError(f"the {COPY} space holds the copy backbone's ({catalog.copy.name}) descriptors; put "
                         "an encoder head live in another space", code="copy_space_fixed", status=422)
    with catalog.write_lock():
        catalog.spaces()
        return _build(catalog, name, head, kept, progress)


def build_previous(catalog: CatalogCore, name: str, progress: Progress | None = None) -> SpaceInfo:
    """Build the previous head of a space and swap it in (rolling back twice rolls forward
    again). `index.calibration.rollback` runs this, then fits that head's calibration."""
    with catalog.write_lock():
        info = catalog.live_space(name).info
        if info.previous_head_id is None:
            raise SpaceError(f"space {name!r} has no previous head to roll back to", code="no_previous_head")
        head = HeadFiles(catalog.home).load(info.previous_head_id, info.previous_head_path,
                                            catalog.backbone_id, catalog.feature_dim, other_backbones(catalog))
        return _build(catalog, name, head, info.previous_head_path, progress)


def reindex(catalog: CatalogCore, progress: Progress | None = None) -> dict[str, SpaceInfo]:
    """Re-embed every stored source with the configured backbone, then rebuild every space.

    Spaces whose head was trained on another backbone cannot follow and are dropped (logged);
    identity heads move to the new backbone.
    """
    with catalog.maintenance():
        root = catalog.home / "features"
        store = FeatureStore(root, catalog.backbone_id, catalog.feature_dim)
        store.delete_all()
        embed_stored(catalog, catalog.row_ids().tolist(), store, progress)
        catalog.use_features(store)
        for other in root.iterdir():  # the copy backbone's features stay
            if other.is_dir() and other.name not in catalog.backbones:
                shutil.rmtree(other, ignore_errors=True)
        _rebuild_rows(catalog)
        catalog.use_features(None)
    return {name: space.info for name, space in catalog.spaces().items()}


def _rebuild_rows(catalog: CatalogCore) -> None:
    heads = HeadFiles(catalog.home)
    dropped = []
    for info in space_rows(catalog.sessions):
        if info.backbone in COPY_BACKBONES:
            continue  # the copy space does not move with the encoder
        if info.head_path is None:
            head = Head.identity(catalog.backbone_id, catalog.feature_dim)
        elif info.backbone_id == catalog.backbone_id:
            head = heads.load(info.head_id, info.head_path, catalog.backbone_id, catalog.feature_dim)
        else:
            dropped.append(info.name)
            continue
        _build(catalog, info.name, head, info.head_path, keep_previous=False)
    if dropped:
        delete_rows(catalog.sessions, dropped)
        for name in dropped:
            catalog.drop_space(name)
        log.warning("dropped spaces %s: their heads were trained on another backbone; train new heads "
                    "and put them live with `attrib spaces set`", ", ".join(dropped))

