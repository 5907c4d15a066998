"""Match strength for the verdict's label-free fit (issue 26): how many RANSAC inliers
(training/regions.py) each fit query has with each of its candidates' first source.

Served answers read the same number when regions are asked for (`/attribute?evidence=regions`):
for a candidate concept, the most inliers between the query and the concept's first source in a
space that ranks the concept first. Here the fit queries (`verdict_fit.py`: an edited copy of a
source, a derivation of it in another medium, or a source against the others of its concept) get
it the same way: the candidate's first source in a space is its source with the highest score for
the query's embedding in that space (the query's own source left out for a same-concept pair).

ORB features live for one fit; the counts, which no head changes, are kept in `seen` (the
catalog's cache of fit queries) so that the next fit, after a head goes live, matches only pairs
it has not matched before.
"""

from __future__ import annotations

import numpy as np

from index.calibration.concept_scores import CatalogConcepts
from index.catalog import LiveSpace
from index.images import decode_image
from training.images import ImageError
from training.regions import Features, features, match_regions, query_features
from training.selffit import EDITS, edited_copy
from training.verdict import SpaceEvidence

COUNTS_KEPT = 50_000  # (query, source) inlier counts kept between fits


class FitStrengths:
    """Inlier counts of fit queries against catalog sources, with every image's ORB features
    computed once per fit."""

    def __init__(self, catalog, spaces: dict[str, LiveSpace], concepts: CatalogConcepts, seen: dict):
        self.catalog, self.spaces, self.concepts = catalog, spaces, concepts
        self.size = max(catalog.backbone_of(live).input_size for live in spaces.values())
        self.counts: dict[tuple, int] = seen.setdefault("inliers", {})
        if len(self.counts) > COUNTS_KEPT:
            self.counts.clear()
        self._sources: dict[str, Features | None] = {}
        self._queries: dict[tuple, tuple[Features, Features] | None] = {}

    def of(self, query: tuple[str, int], evidence: dict[str, SpaceEvidence], vectors: dict[str, np.ndarray]
           ) -> dict[str, int]:
        """{candidate: inliers} of one fit example; `vectors` are the query's embedding per space."""
        found: dict[str, int] = {}
        for name, answer in evidence.items():
            if answer.top is None:
                continue
            source = self._first_source(self.spaces[name], answer.top, vectors[name],
                                        query[1] if query[0] == "pair" else None)
            found[answer.top] = max(found.get(answer.top, 0), self._inliers(query, source))
        return found

    def _first_source(self, live: LiveSpace, concept: str, vector: np.ndarray, skip: int | None) -> str | None:
        """The sha256 of the concept's best-scoring source in the space (None if it has none)."""
        ids = self.concepts.source_ids[self.concepts.codes == self.concepts.names.index(concept)]
        ids = ids[ids != (-1 if skip is None else skip)]
        ids, stored = self.catalog.features_of(live.info.backbone_id).get(ids)
        if not len(ids):
            return None
        return self._sha(int(ids[int(np.argmax(live.head.apply(stored) @ vector))]))

    def _sha(self, source_id: int) -> str:
        return self.concepts.shas[int(np.searchsorted(self.concepts.source_ids, source_id))]

    def _inliers(self, query: tuple[str, int], source: str | None) -> int:
        key = (query[0], self._sha(query[1]), self.size, source)
        if key not in self.counts:
            both, found = self._query(query), self._source(source) if source else None
            self.counts[key] = match_regions(both, found).inliers if both is not None and found is not None else 0
        return self.counts[key]

    def _query(self, query: tuple[str, int]) -> tuple[Features, Features] | None:
        if query not in self._queries:
            sha = self._sha(query[1])
            image = self._decoded(sha)
            if image is not None and query[0] in EDITS:
                image = edited_copy(image.image, sha, self.size, recipe=EDITS[query[0]])
                self._queries[query] = query_features(image)
            else:
                self._queries[query] = None if image is None else query_features(image.image, (image.width, image.height))
        return self._queries[query]

    def _source(self, sha: str) -> Features | None:
        if sha not in self._sources:
            image = self._decoded(sha)
            self._sources[sha] = None if image is None else features(image.image, (image.width, image.height))
        return self._sources[sha]

    def _decoded(self, sha: str):
        try:
            return decode_image(self.catalog.blobs.read(sha), self.catalog.config.max_pixels)
        except (OSError, ImageError):
            return None  # taken down meanwhile: no strength
