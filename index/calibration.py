"""Calibration of each head's answers, stored beside the head, fitted from the catalog itself or
from a labelled manifest (the model is `training.calibration`).

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
             it has none. At least MIN_DECIDED cases.
  uninformed fewer than two concepts: nothing to fit; none = 0.5.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from index.concept_scores import CatalogConcepts, catalog_concepts, concept_scores
from index.images import decode_image
from index.spaces import LiveSpace
from index.cases import decided_queries
from training.calibration import CATALOG, MANIFEST, Calibration, CalibrationData, fit, left_out, ranked, uninformed
from training.errors import AttribError
from training.fileio import atomic_write, atomic_write_bytes
from training.images import ImageError
from training.selffit import edited_copy, pick, self_fit_data

log = logging.getLogger(__name__)
REFIT_DRIFT = 0.25
MIN_DECIDED = 20  # decided cases a `decisions` fit needs: fewer would replace the self-fit with noise


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
    pair_ids, features = catalog.features.get(concepts.source_ids[pairs])
    pair_scores = concept_scores(catalog.features, live.head, concepts, live.head.apply(features), pair_ids)
    copy_ids, copy_features = _edited_copies(catalog, concepts, copies, {} if copies_seen is None else copies_seen)
    copy_scores = concept_scores(catalog.features, live.head, concepts, live.head.apply(copy_features))
    data = self_fit_data(pair_scores, concepts.code_of(pair_ids), copy_scores, concepts.code_of(copy_ids))
    if len(data) == 0:
        return uninformed(head_id, "no source image of the catalog could be read to fit from")
    described = (f"catalog: {len(concepts.source_ids)} sources, {len(concepts)} concepts; {len(copy_ids)} edited "
                 f"copies and {len(pair_ids)} same-concept pairs, each also with its concept left out")
    calibration = fit(data, head_id, CATALOG, described, len(catalog.features))
    return _with_data(calibration, data)


def manifest_fit(catalog, live: LiveSpace, queries: list, features: np.ndarray, name: str = "manifest",
                 view_features: np.ndarray | None = None, method: str = MANIFEST) -> Calibration:
    """Fit from labelled queries (rows with `path` and `concept`: a manifest's query rows, or
    `decision_queries`) and their backbone features (`embed_queries`) through the live head of a
    space. A head with query views needs their features (`embed_query_views`), so the fit sees
    the scores `/attribute` gives the same queries. `name` says where the queries came from."""
    concepts = catalog_concepts(catalog.sessions)
    if len(concepts) < 2:
        raise CalibrationError("the catalog needs two or more concepts to fit a calibration", code="empty_catalog")
    code = {concept: i for i, concept in enumerate(concepts.names)}
    truth = np.array([code.get(row.concept, -1) for row in queries])
    if not (truth >= 0).any():
        raise CalibrationError(f"none of the concepts of the queries of {name} is in the catalog",
                               code="bad_manifest" if method == MANIFEST else "no_matches")
    if live.head.query_views[0] > 0 and view_features is None:
        raise CalibrationError("the head embeds queries with query views: their features are needed",
                               code="query_views_missing")
    vectors = live.head.apply_query(features, view_features)
    scores = concept_scores(catalog.features, live.head, concepts, vectors)
    parts = [ranked(scores, truth)]
    if (truth >= 0).all():
        parts.append(ranked(left_out(scores, truth)))
    data = CalibrationData.concat(parts)
    described = (f"{name}: {len(queries)} queries, {int((truth >= 0).sum())} with their concept in the "
                 f"catalog" + ("; each also with its concept left out" if len(parts) == 2 else ""))
    return _with_data(fit(data, live.info.head_id, method, described, len(catalog.features)), data)


def manifest_queries(rows: list, name: str) -> list:
    queries = [row for row in rows if row.role == "query"]
    if not queries:
        raise CalibrationError(f"{name} has no query rows to fit a calibration from", code="bad_manifest")
    return queries


@dataclass(frozen=True)
class LabelledQuery:
    path: Path
    concept: str | None  # None: no catalog concept is its source


def decision_queries(catalog) -> list[LabelledQuery]:
    """The decided cases as labelled queries: a `match` is labelled with the first concept it
    names that is still in the catalog (none if all were taken down since), a `no_match` with none.
    Cases whose image is gone are skipped."""
    names = set(catalog_concepts(catalog.sessions).names)
    queries = [LabelledQuery(catalog.blobs.path(sha256), next((c for c in concepts if c in names), None))
               for sha256, concepts in decided_queries(catalog.sessions)]
    queries = [query for query in queries if query.path.is_file()]
    if len(queries) < MIN_DECIDED:
        raise CalibrationError(f"{len(queries)} decided case(s) with their image: a fit from decisions needs at "
                               f"least {MIN_DECIDED} (match or no_match; escalated cases do not count)",
                               code="too_few_decisions")
    return queries


def _edited_copies(catalog, concepts: CatalogConcepts, picked: np.ndarray, seen: dict) -> tuple[np.ndarray, np.ndarray]:
    """Backbone features of an edited copy of each picked source (those still readable); `seen`
    keeps them by (backbone, sha256), since every head of the catalog fits from the same copies."""
    ids, todo = [], {}
    for i in picked.tolist():
        key = (catalog.backbone_id, concepts.shas[i])
        if key not in seen and key not in todo:
            try:
                image = decode_image(catalog.blobs.read(key[1]), catalog.config.max_pixels).image
            except (OSError, ImageError):
                continue  # taken down meanwhile
            todo[key] = edited_copy(image, key[1], catalog.encoder.spec.input_size)
        ids.append(i)
    if todo:
        if len(seen) > 4 * len(picked):
            seen.clear()
        seen.update(zip(todo, catalog.encoder.embed_features(list(todo.values()), catalog.config.batch_size)))
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, catalog.feature_dim), np.float32)
    features = np.stack([seen[(catalog.backbone_id, concepts.shas[i])] for i in ids])
    return concepts.source_ids[ids], features


def _decode_query(catalog, path):
    try:
        return decode_image(Path(path).read_bytes(), catalog.config.max_pixels)
    except (OSError, ImageError) as exc:
        raise CalibrationError(f"cannot read query image {path}: {getattr(exc, 'message', exc)}",
                               code="bad_path") from exc


def embed_queries(catalog, paths: list[Path], progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Backbone features of query images, in batches (`progress(n)` after each)."""
    parts, step = [], catalog.config.batch_size
    for start in range(0, len(paths), step):
        images = [_decode_query(catalog, path).image for path in paths[start:start + step]]
        parts.append(catalog.encoder.embed_features(images, step))
        if progress:
            progress(len(images))
    return np.concatenate(parts)


def embed_query_views(catalog, head, paths: list[Path], seen: dict,
                      progress: Callable[[int], None] | None = None) -> np.ndarray | None:
    """(N, V, D) backbone features of the query views `head` asks for (None if it asks for none),
    made exactly as `/attribute` makes them (`app.attribution.query_vector`); `seen` keeps them by
    view recipe, so spaces whose heads ask for the same views share one pass."""
    from training.query_views import query_view_features
    from training.views import recipe_key

    count, augment = head.query_views
    if count <= 0:
        return None
    key = (count, recipe_key(augment))
    if key not in seen:
        rows = []
        for path in paths:
            decoded = _decode_query(catalog, path)
            rows.append(query_view_features(catalog.encoder, decoded.image, decoded.sha256, count, augment))
            if progress:
                progress(1)
        seen[key] = np.stack(rows)
    return seen[key]


def _with_data(calibration: Calibration, data: CalibrationData) -> Calibration:
    calibration.data = data  # saved beside the fit; not part of its JSON
    return calibration


# -- storage and lookup ------------------------------------------------------------------------


class CalibrationStore:
    """The calibrations of a catalog's heads, by head id, with a per-process cache."""

    def __init__(self, home: Path):
        self.root = Path(home) / "heads"
        self._cache: dict[str, tuple[int, Calibration]] = {}
        self._copies: dict = {}  # edited copies' backbone features, shared by every head's self-fit
        self._lock = threading.Lock()

    def path(self, head_id: str) -> Path:
        return self.root / f"{head_id}.calibration.json"

    def load(self, head_id: str) -> Calibration | None:
        path = self.path(head_id)
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        cached = self._cache.get(head_id)
        if cached and cached[0] == stamp:
            return cached[1]
        try:
            calibration = Calibration.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("calibration file %s is unreadable (%s); fitting a new one", path, exc)
            return None
        self._cache[head_id] = (stamp, calibration)
        return calibration

    def save(self, calibration: Calibration) -> Path:
        data = getattr(calibration, "data", None)
        if data is not None:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **data.arrays())
            atomic_write_bytes(self.path(calibration.head_id).with_suffix(".npz"), buffer.getvalue())
        text = json.dumps(calibration.to_json(), indent=2) + "\n"
        return atomic_write(self.path(calibration.head_id), lambda tmp: Path(tmp).write_text(text))

    def for_space(self, catalog, live: LiveSpace) -> Calibration:
        """The live head's calibration; fitted from the catalog when it has none (or its catalog
        fit has drifted: then requests keep the old fit while one of them refits)."""
        current = self.load(live.info.head_id)
        if current is not None and not _drifted(current, len(catalog.features)):
            return current
        if not self._lock.acquire(blocking=current is None):
            return current
        try:
            again = self.load(live.info.head_id)
            if again is not None and not _drifted(again, len(catalog.features)):
                return again
            return self.refit(catalog, live)
        finally:
            self._lock.release()

    def refit(self, catalog, live: LiveSpace) -> Calibration:
        calibration = catalog_fit(catalog, live, self._copies)
        if calibration.method == CATALOG:
            self.save(calibration)
        return calibration


def _drifted(calibration: Calibration, sources: int) -> bool:
    return calibration.method == CATALOG and abs(sources - calibration.sources) > REFIT_DRIFT * max(calibration.sources, 1)
