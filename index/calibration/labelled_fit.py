"""Calibration from labelled queries: a benchmark manifest's query rows (`attrib calibrate
MANIFEST`) or the review desk's decided cases (`attrib calibrate --from-decisions`,
`POST /spaces/{name}/calibration`). The queries are embedded as `/attribute` embeds them (with
each live head's query views) and fitted with `training.calibration`; the fits are stored beside
their heads by the catalog (`catalog.calibrations`, `index.catalog.CalibrationStore`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from index.calibration.calibration import CalibrationError, with_data
from index.calibration.concept_scores import catalog_concepts, concept_names, concept_scores
from index.catalog import LiveSpace
from index.desk import decided_queries
from index.images import decode_image
from training.calibration import MANIFEST, Calibration, CalibrationData, fit, left_out, ranked
from training.images import ImageError

MIN_DECIDED = 20  # decided cases a `decisions` fit needs: fewer would replace the self-fit with noise
MAX_DECIDED = 2000  # the newest decided cases a fit uses: each costs a backbone forward per query view


def labelled_fits(catalog, spaces: dict[str, LiveSpace], queries: list, name: str, method: str = MANIFEST,
                  progress: Callable[[int], None] | None = None) -> dict[str, Calibration]:
    """Embed labelled queries once (and each distinct set of query views once), fit every space
    from them and save the fits beside their heads. `progress(n)` counts backbone forwards; their
    total is `labelled_work`."""
    paths = [row.path for row in queries]
    embedded = {bid: embed_queries(catalog, paths, progress, catalog.backbones[bid])
                for bid in sorted({live.info.backbone_id for live in spaces.values()})}
    fits, views = {}, {}
    for space, live in spaces.items():
        features = embedded[live.info.backbone_id]
        count = live.head.query_views[0]
        step = (lambda n, count=count: progress(n * count)) if progress else None
        view_features = embed_query_views(catalog, live.head, paths, views, step)
        fits[space] = manifest_fit(catalog, live, queries, features, name, view_features, method)
        catalog.calibrations.save(fits[space])
    return fits


def labelled_work(spaces: dict[str, LiveSpace], queries: list) -> int:
    """Backbone forwards `labelled_fits` runs: one per query and backbone, plus one per query view
    of each distinct view recipe among the heads."""
    from training.views import recipe_key

    recipes = {(live.info.backbone_id, live.head.query_views[0], recipe_key(live.head.query_views[1]))
               for live in spaces.values() if live.head.query_views[0] > 0}
    backbones = {live.info.backbone_id for live in spaces.values()}
    return len(queries) * (len(backbones) + sum(count for _, count, _ in recipes))


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
    store = catalog.features_of(live.info.backbone_id)
    scores = concept_scores(store, live.head, concepts, vectors)
    parts = [ranked(scores, truth)]
    if (truth >= 0).all():
        parts.append(ranked(left_out(scores, truth)))
    data = CalibrationData.concat(parts)
    described = (f"{name}: {len(queries)} queries, {int((truth >= 0).sum())} with their concept in the "
                 f"catalog" + ("; each also with its concept left out" if len(parts) == 2 else ""))
    return with_data(fit(data, live.info.head_id, method, described, len(store)), data)


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
    """The newest MAX_DECIDED decided cases as labelled queries: a `match` is labelled with the
    first concept it names that is still in the catalog (none if all were taken down since), a
    `no_match` with none. Cases whose image is gone are skipped. Too few cases, no match, or fewer
    than two concepts are refused here, before any image is embedded."""
    names = concept_names(catalog.sessions)
    if len(names) < 2:
        raise CalibrationError("the catalog needs two or more concepts to fit a calibration", code="empty_catalog")
    queries = [LabelledQuery(catalog.blobs.path(sha256), next((c for c in concepts if c in names), None))
               for sha256, concepts in decided_queries(catalog.sessions, MAX_DECIDED)]
    queries = [query for query in queries if query.path.is_file()]
    if len(queries) < MIN_DECIDED:
        raise CalibrationError(f"{len(queries)} decided case(s) with their image: a fit from decisions needs at "
                               f"least {MIN_DECIDED} (match or no_match; escalated cases do not count)",
                               code="too_few_decisions")
    if not any(query.concept for query in queries):
        raise CalibrationError("no decided case is a `match` of a concept still in the catalog: nothing to tell "
                               "a source from none", code="no_matches")
    return queries


def _decode_query(catalog, path):
    try:
        return decode_image(Path(path).read_bytes(), catalog.config.max_pixels)
    except (OSError, ImageError) as exc:
        raise CalibrationError(f"cannot read query image {path}: {getattr(exc, 'message', exc)}",
                               code="bad_path") from exc


def embed_queries(catalog, paths: list[Path], progress: Callable[[int], None] | None = None,
                  backbone=None) -> np.ndarray:
    """Features of query images by `backbone` (the encoder by default), in batches (`progress(n)`
    after each)."""
    backbone = backbone or catalog.encoder
    parts, step = [], catalog.config.batch_size
    for start in range(0, len(paths), step):
        images = [_decode_query(catalog, path).image for path in paths[start:start + step]]
        parts.append(backbone.embed_features(images, step))
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
    key = (head.backbone_id, count, recipe_key(augment))
    if key not in seen:
        rows = []
        for path in paths:
            decoded = _decode_query(catalog, path)
            rows.append(query_view_features(catalog.backbones[head.backbone_id], decoded.image, decoded.sha256,
                                            count, augment))
            if progress:
                progress(1)
        seen[key] = np.stack(rows)
    return seen[key]
