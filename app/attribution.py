"""Attribution: embed the query, search the catalog, group hits by concept, score.

A concept's score is the highest cosine similarity between the query and any of its sources,
in [-1, 1]. `share` is a softmax of the returned concepts' scores at a temperature T:
share_i = exp(s_i / T) / sum_j exp(s_j / T). Lower T makes the leader's share larger.
No FastAPI here: the CLI and the HTTP routes both call `attribute_bytes`.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select

from index.catalog import Catalog, CatalogError, Hit
from index.images import decode_image
from index.models import Concept, Source

SOURCES_PER_CONCEPT = 3


@dataclass
class SourceMatch:
    id: int
    score: float
    filename: str
    sha256: str


@dataclass
class ConceptMatch:
    concept: str
    score: float
    share: float
    sources: list[SourceMatch]


@dataclass
class Attribution:
    encoder_id: str
    concepts: list[ConceptMatch]
    timings_ms: dict[str, float] = field(default_factory=dict)


def attribute_bytes(catalog: Catalog, data: bytes, k: int, temperature: float = 0.05) -> Attribution:
    """Decode, embed and attribute one uploaded image."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    image = decode_image(data, catalog.config.max_pixels).image
    timings["decode"] = _ms_since(started)
    started = time.perf_counter()
    vector = catalog.encoder.embed_images([image])[0]
    timings["embed"] = _ms_since(started)
    started = time.perf_counter()
    concepts = top_concepts(catalog, vector, k, temperature)
    timings["search"] = _ms_since(started)
    return Attribution(catalog.encoder.encoder_id, concepts, timings)


def top_concepts(catalog: Catalog, vector, k: int, temperature: float = 0.05) -> list[ConceptMatch]:
    total = len(catalog.vectors)
    if total == 0:
        raise CatalogError(
            "the catalog is empty: index some sources first (attrib index PATH --concept NAME)",
            code="empty_catalog",
        )
    wanted = max(64, k * SOURCES_PER_CONCEPT * 4)
    while True:
        grouped = _group_by_concept(catalog, catalog.search(vector, wanted))
        if len(grouped) >= k or wanted >= total:
            break
        wanted *= 4
    ranked = sorted(grouped.items(), key=lambda item: -item[1][0].score)[:k]
    shares = softmax([matches[0].score for _, matches in ranked], temperature)
    return [
        ConceptMatch(name, matches[0].score, share, matches[:SOURCES_PER_CONCEPT])
        for (name, matches), share in zip(ranked, shares)
    ]


def _group_by_concept(catalog: Catalog, hits: list[Hit]) -> dict[str, list[SourceMatch]]:
    """Hits whose row is gone (deleted meanwhile) are dropped; each list stays best first."""
    with catalog.sessions() as session:
        rows = session.execute(
            select(Source.id, Source.filename, Source.sha256, Concept.name)
            .join(Source.concept)
            .where(Source.id.in_([hit.source_id for hit in hits]))
        ).all()
    info = {row.id: row for row in rows}
    grouped: dict[str, list[SourceMatch]] = defaultdict(list)
    for hit in hits:
        row = info.get(hit.source_id)
        if row is not None:
            grouped[row.name].append(SourceMatch(row.id, hit.score, row.filename, row.sha256))
    return grouped


def softmax(scores: list[float], temperature: float) -> list[float]:
    if not scores:
        return []
    top = max(scores)
    weights = [math.exp((score - top) / temperature) for score in scores]
    total = sum(weights)
    return [weight / total for weight in weights]


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
