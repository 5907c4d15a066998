"""The verdict's fit (model: `training.verdict`), from the catalog itself, and its lookup.

Fit data, no labels: the sources that the calibration's self-fit picks (`training.selffit.pick`)
play queries in every live space at once: an edited copy of each (the calibration's own copies),
a derivation of each in another medium (`selffit.DERIVED`: edge maps, silhouettes, strong
colour), and, for concepts with two or more sources, a source against the others of its concept.
Each also counts once with its own concept left out of the catalog (a query without a source).
Every space turns its scores into probabilities with its own calibration; the verdict is fitted
on those. One backbone forward per picked source, recipe and backbone. It reads no match
strength: derivations of the catalog's own images match their sources' regions by construction,
so they cannot tell whether the real queries do; reviewers' decisions can
(`verdict_decisions.py`).

A fit belongs to the set of live heads (`verdict_key`) and is kept beside the heads
(`catalog.calibrations`); it is redone when the catalog's size drifts (as calibrations are), and
never inside a request: until a fit exists, answers use `training.verdict.max_rule`.
"""

from __future__ import annotations

import hashlib
import logging
import threading

import numpy as np

from index.calibration.calibration import REFIT_DRIFT, edited_copies, calibration_for
from index.calibration.concept_scores import CatalogConcepts, catalog_concepts, concept_scores
from index.calibration.query_side import head_queries
from index.catalog import LiveSpace
from training.calibration import WINDOW, left_out, predict
from training.selffit import DERIVED, NEAR_COPY, pick
from training.verdict import SpaceEvidence, VerdictModel, fit

log = logging.getLogger(__name__)
CATALOG = "catalog"


def verdict_key(spaces: dict[str, LiveSpace]) -> str:
    text = ";".join(f"{name}={live.info.head_id}" for name, live in sorted(spaces.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def verdict_for(catalog, spaces: dict[str, LiveSpace], wait: bool = False) -> VerdictModel | None:
    """The fit for these live spaces, or None while there is none (a background thread fits it;
    `wait`, the CLI after indexing, fits here)."""
    if len(spaces) < 1:
        return None
    store, key = catalog.calibrations, verdict_key(spaces)
    current = store.load_verdict(key)
    if current is not None and not _drifted(current, len(catalog.features)):
        return current
    if not store.verdict_fitting.acquire(blocking=wait):
        return current
    if not wait:
        # not a daemon (a thread inherits its creator's): a fit cut off at exit aborts the process
        threading.Thread(target=_fit_in_background, args=(catalog, spaces, key), name="attrib-verdict-fit",
                         daemon=False).start()
        return current
    try:
        return refit_verdict(catalog, spaces, key)
    finally:
        store.verdict_fitting.release()


def _fit_in_background(catalog, spaces: dict[str, LiveSpace], key: str) -> None:
    try:
        again = catalog.calibrations.load_verdict(key)
        if again is None or _drifted(again, len(catalog.features)):
            refit_verdict(catalog, spaces, key)
    except Exception:  # noqa: BLE001 - the answers keep the max rule (or the old fit); the next one tries again
        log.exception("fitting the verdict failed")
    finally:
        catalog.calibrations.verdict_fitting.release()


def refit_verdict(catalog, spaces: dict[str, LiveSpace], key: str | None = None) -> VerdictModel | None:
    model = catalog_verdict(catalog, spaces, key or verdict_key(spaces))
    if model is not None:
        catalog.calibrations.save_verdict(model)
    return model


def catalog_verdict(catalog, spaces: dict[str, LiveSpace], key: str) -> VerdictModel | None:
    """The label-free fit, or None where there is nothing to fit (fewer than two concepts)."""
    concepts = catalog_concepts(catalog.sessions)
    if len(concepts) < 2:
        return None
    pairs, copies = pick(concepts.codes)
    rows = {name: _space_rows(catalog, live, concepts, pairs, copies) for name, live in spaces.items()}
    common = sorted(set.intersection(*(set(r) for r in rows.values())))
    if not common:
        return None
    examples, truths, groups = [], [], []
    for number, query in enumerate(common):
        code = int(concepts.code_of([query[1]])[0])
        for kept in (True, False):
            examples.append({name: _evidence(rows[name][query], code, kept, concepts) for name in spaces})
            truths.append(concepts.names[code] if kept else None)
            groups.append(number)
    described = (f"catalog: {len(concepts.source_ids)} sources, {len(concepts)} concepts; {len(common)} queries "
                 f"(edited copies, derivations, same-concept pairs), each also with its concept left out")
    return fit(examples, truths, np.array(groups), sorted(spaces), CATALOG, described, key, len(catalog.features))


def _space_rows(catalog, live: LiveSpace, concepts: CatalogConcepts, pairs, copies) -> dict:
    """{(kind, source id): (calibration, concept scores row)} of one space."""
    store, backbone = catalog.features_of(live.info.backbone_id), catalog.backbone_of(live)
    calibration, seen = calibration_for(catalog, live, wait=True), catalog.calibrations.copies
    out = {}
    for kind, recipe in (("near", NEAR_COPY), ("derived", DERIVED)):
        ids, queries = head_queries(catalog, live, concepts, *edited_copies(catalog, backbone, concepts, copies, seen, recipe),
                                    seen, recipe)
        scores = concept_scores(store, live.head, concepts, queries)
        out.update({(kind, int(i)): (calibration, row) for i, row in zip(ids, scores)})
    pair_ids, queries = head_queries(catalog, live, concepts, *store.get(concepts.source_ids[pairs]), seen)
    scores = concept_scores(store, live.head, concepts, queries, pair_ids)
    out.update({("pair", int(i)): (calibration, row) for i, row in zip(pair_ids, scores)})
    return out


def _evidence(entry, code: int, kept: bool, concepts: CatalogConcepts) -> SpaceEvidence:
    calibration, row = entry
    row = row if kept else left_out(row[None], np.array([code]))[0]
    order = np.argsort(-row, kind="stable")[:WINDOW]
    order = order[np.isfinite(row[order])]
    if not len(order):
        return SpaceEvidence({}, 1.0)
    listed, none, _ = predict(calibration, row[order][None], int(np.isfinite(row).sum()))
    return SpaceEvidence({concepts.names[c]: float(p) for c, p in zip(order, listed[0])}, float(none[0]))


def _drifted(model: VerdictModel, sources: int) -> bool:
    return model.method == CATALOG and abs(sources - model.sources) > REFIT_DRIFT * max(model.sources, 1)
