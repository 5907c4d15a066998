"""Calibration of each head's answers, fitted from the catalog itself (here) or from labelled
queries (labelled_fit.py; the model is `training.calibration`), and stored beside the head by the
catalog (`catalog.calibrations`, index/catalog/calibration_store.py).

Files: ATTRIB_HOME/heads/<head id>.calibration.json (the fit: method, parameters, what it was
fitted on) and <head id>.calibration.npz (the labelled score lists it was fitted on). A space
finds its calibration by its live head's id, so a head put live, rolled back or rebuilt never
answers with another head's fit.

Methods:
  catalog    the default, no labels needed (`training.selffit`). Sources of the catalog play
             queries: an edited copy of a source (crop, flip, colour, blur, JPEG; one backbone
             forward each, at most 64) and, for concepts with two or more sources, a source
             against the others of its concept, are the "has a source" examples; the same
             queries with their own concept left out of the catalog are the "no source" examples
             (half each). Redone when the catalog's size has drifted by more than REFIT_DRIFT
             since the fit.
  manifest   `attrib calibrate MANIFEST`: the manifest's query rows through the live head; a
             query whose concept is in the catalog has a source, one whose concept is not has
             none. If every concept is present, each query is also scored with its concept left
             out (the "no source" examples).
  decisions  `attrib calibrate --from-decisions`: the same, from the review desk's decided cases
             (their stored query images): a `match` names the query's concept, a `no_match` says
             it has none. At least MIN_DECIDED (labelled_fit.py) cases.
  uninformed fewer than two concepts: nothing to fit; none = 0.5.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from index.calibration.concept_scores import CatalogConcepts, catalog_concepts, concept_scores
from index.calibration.query_side import head_queries
from index.catalog import LiveSpace
from index.db import Actor, record
from index.images import decode_image
from training.calibration import CATALOG, Calibration, CalibrationData, fit, uninformed
from training.errors import AttribError
from training.images import ImageError
from training.selffit import NEAR_COPY, edited_copy, pick, self_fit_data

log = logging.getLogger(__name__)
REFIT_DRIFT = 0.25


class CalibrationError(AttribError):
    code = "calibration_error"
    status = 422


# -- fitting -----------------------------------------------------------------------------------


def catalog_fit(catalog, live: LiveSpace, copies_seen: dict | None = None) -> Calibration:
    """The default calibration of a space, from the catalog's own sources (`training.selffit`)."""
    head_id = live.info.head_id
    concepts = catalog_concepts(catalog.sessions)
    if len(concepts) < 2:
        return uninformed(head_id, f"{len(concepts)} concept(s) in the catalog: nothing to compare with")
    pairs, copies = pick(concepts.codes)
    store, backbone = catalog.features_of(live.info.backbone_id), catalog.backbone_of(live)
    seen = {} if copies_seen is None else copies_seen
    pair_ids, queries = head_queries(catalog, live, concepts, *store.get(concepts.source_ids[pairs]), seen)
    pair_scores = concept_scores(store, live.head, concepts, queries, pair_ids)
    copy_ids, queries = head_queries(catalog, live, concepts, *edited_copies(catalog, backbone, concepts, copies, seen),
                                     seen, NEAR_COPY)
    copy_scores = concept_scores(store, live.head, concepts, queries)
    data = self_fit_data(pair_scores, concepts.code_of(pair_ids), copy_scores, concepts.code_of(copy_ids))
    if len(data) == 0:
        return uninformed(head_id, "no source image of the catalog could be read to fit from")
    described = (f"catalog: {len(concepts.source_ids)} sources, {len(concepts)} concepts; {len(copy_ids)} edited "
                 f"copies and {len(pair_ids)} same-concept pairs, each also with its concept left out")
    calibration = fit(data, head_id, CATALOG, described, len(store))
    return with_data(calibration, data)


def edited_copies(catalog, backbone, concepts: CatalogConcepts, picked: np.ndarray,
                   seen: dict, recipe=NEAR_COPY) -> tuple[np.ndarray, np.ndarray]:
    """Backbone features of an edited copy of each picked source (those still readable); `seen`
    keeps them by (backbone, sha256, recipe), since every head of the catalog fits from the same
    copies."""
    ids, todo = [], {}
    tag = "near" if recipe is NEAR_COPY else "derived"
    if len(seen) > 8 * max(len(picked), 1):
        seen.clear()
    for i in picked.tolist():
        key = (backbone.backbone_id, concepts.shas[i], tag)
        if key not in seen and key not in todo:
            try:
                image = decode_image(catalog.blobs.read(key[1]), catalog.config.max_pixels).image
            except (OSError, ImageError):
                continue  # taken down meanwhile
            todo[key] = edited_copy(image, key[1], backbone.input_size, recipe=recipe)
        ids.append(i)
    if todo:
        seen.update(zip(todo, backbone.embed_features(list(todo.values()), catalog.config.batch_size)))
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, backbone.feature_dim), np.float32)
    features = np.stack([seen[(backbone.backbone_id, concepts.shas[i], tag)] for i in ids])
    return concepts.source_ids[ids], features


def with_data(calibration: Calibration, data: CalibrationData) -> Calibration:
    calibration.data = data  # saved beside the fit; not part of its JSON
    return calibration


# -- lookup ----------------------------------------------------------------------------------


def calibration_for(catalog, live: LiveSpace, wait: bool = False) -> Calibration:
    """The live head's calibration; fitted from the catalog when it has none. When its catalog fit
    has drifted, a request gets the old fit and a background thread refits (a refit never runs
    inside a request); `wait` (the CLI after indexing) refits here instead."""
    store = catalog.calibrations
    current = store.load(live.info.head_id)
    if current is not None and not _drifted(current, len(catalog.features)):
        return current
    if not store.fitting.acquire(blocking=current is None or wait):
        return current
    if current is not None and not wait:
        threading.Thread(target=_refit_in_background, args=(catalog, live), name="attrib-refit", daemon=True).start()
        return current
    try:
        again = store.load(live.info.head_id)
        if again is not None and not _drifted(again, len(catalog.features)):
            return again
        return refit(catalog, live)
    finally:
        store.fitting.release()


def _refit_in_background(catalog, live: LiveSpace) -> None:
    """Refit a drifted fit, holding `fitting` (taken by the caller); requests keep the old fit."""
    try:
        again = catalog.calibrations.load(live.info.head_id)
        if again is None or _drifted(again, len(catalog.features)):
            refit(catalog, live)
    except Exception:  # noqa: BLE001 - the next request tries again; the answers keep the old fit
        log.exception("refitting the calibration of head %s failed", live.info.head_id)
    finally:
        catalog.calibrations.fitting.release()


def refit(catalog, live: LiveSpace) -> Calibration:
    """Fit the live head from the catalog now; a catalog fit is saved beside the head."""
    calibration = catalog_fit(catalog, live, catalog.calibrations.copies)
    if calibration.method == CATALOG:
        catalog.calibrations.save(calibration)
    return calibration


def record_fit(catalog, actor: Actor, space: str, calibration: Calibration) -> None:
    """The audit entry of a fit someone asked for (`attrib calibrate`, `POST /spaces/{name}/calibration`):
    the answers' probabilities change with it. Automatic self-fits are not entered."""
    with catalog.sessions.begin() as session:
        record(session, actor, "calibration.fit", "space", space, after=fit_summary(calibration))


def fit_summary(calibration: Calibration) -> dict:
    """What a fit is, for a person: its head, method, source and how many score lists it used."""
    summary = calibration.summary or {}
    return {"head_id": calibration.head_id, "method": calibration.method, "fitted_on": calibration.fitted_on,
            "queries": summary.get("queries", 0), "none_queries": summary.get("none_queries", 0)}


def _drifted(calibration: Calibration, sources: int) -> bool:
    return calibration.method == CATALOG and abs(sources - calibration.sources) > REFIT_DRIFT * max(calibration.sources, 1)
