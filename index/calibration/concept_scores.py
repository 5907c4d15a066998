"""Many queries scored against every source of a space at once, grouped by concept: what
calibration is fitted from. (Attribution itself searches the space's FAISS index; this applies
the space's head to the stored features segment by segment, the same vectors that index holds.)

A concept's score is the best cosine similarity among its sources, as attribution ranks them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from index.catalog import FeatureStore
from index.db import Concept, Source
from training.calibration import group_max
from training.heads import Head


@dataclass
class CatalogConcepts:
    """Every source's concept, as a code (an index into `names`)."""

    names: list[str]
    source_ids: np.ndarray  # int64, sorted
    codes: np.ndarray  # int64, the concept code of each of source_ids
    shas: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def code_of(self, ids) -> np.ndarray:
        """Concept codes of source ids (-1 for ids without a row)."""
        ids = np.asarray(ids, np.int64)
        if not len(self.source_ids):
            return np.full(len(ids), -1, np.int64)
        pos = np.clip(np.searchsorted(self.source_ids, ids), 0, len(self.source_ids) - 1)
        return np.where(self.source_ids[pos] == ids, self.codes[pos], -1)

    def sources_per_concept(self) -> np.ndarray:
        return np.bincount(self.codes, minlength=len(self.names))


def concept_count(sessions: sessionmaker[Session]) -> int:
    """Concepts that have at least one source: what a query is ranked against."""
    with sessions() as session:
        return session.scalar(select(func.count(func.distinct(Source.concept_id)))) or 0


def concept_names(sessions: sessionmaker[Session]) -> set[str]:
    """The names of the concepts that have at least one source (those of `catalog_concepts`)."""
    with sessions() as session:
        return set(session.scalars(select(Concept.name).join(Source.concept).distinct()))


def catalog_concepts(sessions: sessionmaker[Session]) -> CatalogConcepts:
    with sessions() as session:
        rows = session.execute(select(Source.id, Source.sha256, Concept.name).join(Source.concept)
                               .order_by(Source.id)).all()
    names = sorted({row.name for row in rows})
    code = {name: i for i, name in enumerate(names)}
    return CatalogConcepts(names, np.array([r.id for r in rows], np.int64),
                           np.array([code[r.name] for r in rows], np.int64), [r.sha256 for r in rows])


def concept_scores(store: FeatureStore, head: Head, concepts: CatalogConcepts, queries: np.ndarray,
                   skip_source: np.ndarray | None = None) -> np.ndarray:
    """(n, concepts) best score per concept of each unit query vector (-inf for a concept with
    no source); `skip_source[i]`, if not -1, is a source id left out for query i."""
    queries = np.ascontiguousarray(queries, np.float32)
    best = np.full((len(queries), len(concepts)), -np.inf, np.float32)
    skip = np.full(len(queries), -1, np.int64) if skip_source is None else np.asarray(skip_source, np.int64)
    for ids, features in store.chunks():
        codes = concepts.code_of(ids)
        keep = codes >= 0
        if not keep.any():
            continue
        ids, codes = ids[keep], codes[keep]
        scores = queries @ head.apply(features[keep]).T
        for i in np.flatnonzero(np.isin(skip, ids)):
            scores[i, ids == skip[i]] = -np.inf
        best = np.maximum(best, group_max(scores, codes, len(concepts)))
    return np.minimum(best, 1.0)
