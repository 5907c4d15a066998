"""A run's content recipe: the A&D head is fitted, its view-averaged query embedding is distilled
into a query head (one forward per query), and the self-check on the run's own catalog
(training/self_check.py) keeps the best of the raw backbone, the head, the distilled head and,
on the copy backbone, the head with rendered query views (the query averaged with its sketch and
its silhouette at 192 px: two small forwards, about 1.2 times one at its 256 px input; chosen
only where the catalog's own check says it pays).

`head.recipe` = auto (the default) keeps the self-check's choice; one-forward keeps its choice among
all but the rendered head, so a query costs one forward of each backbone; raw, head, distilled, rendered or
views force one (rendered on Lite0 too, at two more Lite0 forwards a query): the check still runs
and its figures are kept, so `attrib spaces set` can refuse a forced head that lost to raw. views
is the previous behaviour: every query averaged over its views at serving time (query_views + 1
forwards), checked against raw alone.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from training.backbones import COPY_FAMILY
from training.config import RENDERING_NAMES, AugmentConfig, TrainConfig
from training.data import Features
from training.distil import fit_query_head
from training.projection import build_head
from training.query_views import with_view_settings
from training.heads import Head
from training.self_check import RAW, self_check

HEAD, DISTILLED, VIEWS, RENDERED = "head", "distilled", "views", "rendered"
CHECKED = ("auto", "one-forward")  # the recipes the self-check chooses; one-forward leaves out RENDERED
# The `rendered` candidate's query views: the query's centre crop drawn as a line drawing and as a
# cut-out, so a query meets a catalog of drawings or silhouettes in its own medium. On the copy
# backbone they are drawn and embedded at RENDER_SIZE px: two forwards at 192 px cost about 1.2
# times one at its 256 px input, and stayed within 2.5 mAP of 256 px on the texture-vs-shape
# runs, above it on half B and below on half A (160 px lost up to 7; docs/training.md).
RENDER_SIZE = 192


def renderings(encoder) -> AugmentConfig:
    """The rendered candidate's query views for this encoder's backbone. Only the copy backbone's
    engines take another input size; a Lite0 rendered head (forced with --recipe rendered: two more
    Lite0 forwards, so `auto` never offers it) renders at Lite0's input size."""
    size = RENDER_SIZE if encoder.spec.family == COPY_FAMILY else 0
    return AugmentConfig(renderings=RENDERING_NAMES, render_size=size)


def apply_recipe(encoder, config: TrainConfig, anchors: list[Features], catalog: Features | None,
                 negatives: Features | None, pool: Features | None = None) -> dict:
    """Set the encoder's query embedding by `config.head.recipe`; returns what was done."""
    recipe, count = config.head.recipe, config.head.query_views
    encoder.cpu()  # the check and the fit below work on CPU arrays, whatever device trained the head
    serve_views = recipe == VIEWS and count > 0
    encoder.head_config = with_view_settings(encoder.head_config, count if serve_views else 0, config.augment)
    candidates = {RAW: Head.identity(encoder.backbone_id, encoder.feature_dim),
                  VIEWS if serve_views else HEAD: _candidate(encoder)}
    # auto offers the rendered head only where its renderings cost about one more forward (copy backbone)
    if not serve_views and recipe != "one-forward" and (recipe != "auto" or encoder.spec.family == COPY_FAMILY):
        candidates[RENDERED] = _candidate(encoder, config=_rendered(encoder))
    distil = None
    if count > 0 and not serve_views:
        clean = np.concatenate([f.clean for f in anchors])
        views = np.concatenate([f.views[:, :count] for f in anchors])
        distil = fit_query_head(encoder, clean, views, config.head.distil_ridge)
        candidates[DISTILLED] = _candidate(encoder, encoder.query_head)
    check = None
    if catalog is not None:
        extra = None if negatives is None else negatives.clean
        donors = pool.paths if pool is not None else catalog.paths + ([] if negatives is None else negatives.paths)
        check = self_check(encoder, candidates, catalog.paths, catalog.clean, extra, donors,
                           None if pool is None else pool.clean)
    chosen = check["chosen"] if recipe in CHECKED and check else (DISTILLED if recipe in CHECKED else recipe)
    if chosen == DISTILLED and distil is None or chosen == VIEWS and not serve_views:
        chosen = HEAD
    _keep(encoder, chosen)
    if check:
        encoder.head_config = {**encoder.head_config, "self_check": check | {"kept": chosen}}
        print(f"self-check: {describe(check)}; kept {chosen}", file=sys.stderr)
    encoder.invalidate_id()
    return {"recipe": recipe, "kept": chosen, "distil": distil, "self_check": check}


def _candidate(encoder, query_head=None, config: dict | None = None) -> Head:
    """The encoder's head as it stands (its query views, if it asks for them; or `config`'s), as a
    space would apply it; a copy of the centre, since the raw candidate may zero it later."""
    return Head(encoder.encoder_id, encoder.backbone_id, encoder.feature_dim, encoder.dim, encoder.head,
                encoder.center.detach().clone(), config or encoder.head_config, query_head)


def _rendered(encoder) -> dict:
    recipe = renderings(encoder)
    return with_view_settings(encoder.head_config, len(recipe.renderings), recipe)


def describe(check: dict) -> str:
    """`350 derived queries, weighted by the pool: raw 73.0, head 74.2, distilled 65.9` (mAP), or
    without a pool `... worst kind / mean over kinds: raw 14.8/54.3, ...`."""
    figures = check["candidates"].items()
    if check.get("kind_weights"):
        values = ", ".join(f"{name} {f['weighted_mAP']}" for name, f in figures)
        return f"{check['queries']} derived queries, mAP weighted by the {check['pool_images']} pool images: {values}"
    values = ", ".join(f"{name} {f['worst_kind']}/{f['mean_over_kinds']}" for name, f in figures)
    return f"{check['queries']} derived queries, mAP of the worst kind/mean over kinds: {values}"


def _keep(encoder, chosen: str) -> None:
    """Leave the encoder as the chosen candidate: raw is the identity head with no centre."""
    if chosen == RENDERED:
        encoder.head_config = _rendered(encoder)
    if chosen != DISTILLED:
        encoder.query_head = None
        encoder.head_config = {k: v for k, v in encoder.head_config.items() if k != "query_head"}
    if chosen == RAW:  # the identity linear head on uncentred features ranks as the raw backbone does
        keep = {k: v for k, v in encoder.head_config.items() if k not in ("type", "out_dim", "hidden_dim")}
        encoder.head_config = keep | {"type": "linear", "out_dim": encoder.feature_dim}
        encoder.head = build_head(encoder.head_config)
        with torch.no_grad():
            encoder.center.zero_()
