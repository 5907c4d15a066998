"""Attribution: run each backbone the selected spaces need once on the query (the encoder for
`style` and `content`, the copy backbone for `copy`), then in every space apply its head, search,
group hits by concept, and score.

A concept's score is the highest cosine similarity between the query and any of its sources,
in [-1, 1]. Its `probability` is the calibrated probability that the query derives from it, and
the space's `none_probability` the probability that no catalog concept explains the query; both
come from the live head's calibration (`index.calibration`, model in `training.calibration`),
computed over the WINDOW best concepts (or k, if more), and the listed probabilities plus
`none_probability` never exceed 1. `share` is the uncalibrated softmax of the returned concepts'
scores at a temperature T: share_i = exp(s_i / T) / sum_j exp(s_j / T); it always sums to 1,
even when nothing matches, so it is not a probability of anything.
No FastAPI here: the CLI and the HTTP routes both call `attribute_bytes`.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from app.query_views import QueryViews
from index.calibration import calibration_for, concept_count, verdict_for
from index.catalog import CONTENT, COPY, Catalog, Hit, LiveSpace, source_rows
from index.errors import CatalogError
from index.images import DecodedImage, decode_image
from training.calibration import WINDOW, Calibration, predict
from training.verdict import MAX_RULE, SpaceEvidence, predict as predict_verdict

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
    probability: float
    sources: list[SourceMatch]


@dataclass(frozen=True)
class CalibrationNote:
    """Where a space's probabilities come from."""

    method: str
    head_id: str
    fitted_on: str
    fitted_at: datetime | None

    @classmethod
    def of(cls, calibration: Calibration) -> "CalibrationNote":
        return cls(calibration.method, calibration.head_id, calibration.fitted_on, calibration.fitted_at)


@dataclass
class SpaceAnswer:
    """One space's ranking. `available` is false (with a `message`) for a space the catalog
    does not have yet, such as `content` before a trained head is put live."""

    space: str
    head_id: str | None
    available: bool
    concepts: list[ConceptMatch]
    message: str | None = None
    none_probability: float | None = None
    calibration: CalibrationNote | None = None
    backbone: str | None = None  # the name of the backbone whose features the space maps
    evidence: SpaceEvidence | None = field(default=None, repr=False)  # the calibrated window, for the verdict


@dataclass
class VerdictAnswer:
    """The one answer across spaces (`training.verdict`): a match or none."""

    kind: str
    concept: str | None
    probability: float
    none_probability: float
    spaces: list[str]
    source: SourceMatch | None  # the best source of the concept, in the space that is surest of it
    source_space: str | None
    method: str  # "catalog" (fitted on the catalog), "decisions" (on reviewers' decisions) or "max_rule"
    chosen: str  # "fused", or the one space a fit trusts; "max_rule" without a fit
    read_regions: bool = False  # whether the candidates' matched regions (inlier counts) were read


@dataclass
class Attribution:
    backbone_id: str  # the encoder's
    spaces: dict[str, SpaceAnswer]
    backbones: dict[str, str] = field(default_factory=dict)  # name -> id of each backbone that ran
    timings_ms: dict = field(default_factory=dict)
    query: DecodedImage | None = field(default=None, repr=False)  # what the query pool keeps
    verdict: VerdictAnswer | None = None  # None when no space answered

    def answered_by(self) -> dict[str, str]:
        return {name: answer.head_id for name, answer in self.spaces.items() if answer.head_id}


NO_CONTENT_HEAD = (
    "this catalog has no trained content head yet, so there is no content ranking: train one "
    "(`attrib train --from-catalog ...`) and put it live with `attrib spaces set content CHECKPOINT`"
)


def unavailable_reason(catalog: Catalog, name: str) -> str:
    """Why a space the answer lists is not live: no content head, or the copy backbone is
    missing or still being embedded."""
    if name != COPY:
        return NO_CONTENT_HEAD
    if catalog.copy is None:
        return f"the copy space is unavailable: {catalog.copy_problem or 'no copy backbone is configured'}"
    waiting = catalog.pending.get(catalog.copy.backbone_id)
    if waiting is None:
        return f"the copy space on {catalog.copy.name} is not built; `attrib verify --repair` builds it"
    return (f"the copy space is being built: {waiting} source(s) still to embed with {catalog.copy.name} "
            f"(the server's catch-up job, or `attrib reindex --backbone {catalog.copy.name}`)")


def attribute_bytes(catalog: Catalog, data: bytes, k: int, temperature: float = 0.05,
                    space: str = "all", per_concept: int = SOURCES_PER_CONCEPT, forward=None) -> Attribution:
    """Decode the image, run each needed backbone once, and rank concepts in each selected space.
    `forward` (pixels -> features array) runs the encoder, e.g. in the server's shared batches
    (app/batcher.py), or is a dict of such forwards by backbone id; by default each backbone runs
    here."""
    timings: dict = {}
    started = time.perf_counter()
    decoded = decode_image(data, catalog.config.max_pixels)
    image = decoded.image
    timings["decode"] = _ms_since(started)
    selected = select_spaces(catalog, space)
    forwards = forward if isinstance(forward, dict) else {catalog.backbone_id: forward} if forward else {}
    needed = {live.info.backbone_id for live in selected.values() if live is not None}
    views = QueryViews(catalog, [live.head for live in selected.values() if live is not None], decoded)
    features = embed_query(catalog, image, needed, forwards, timings)
    started = time.perf_counter()
    views.embed(catalog, forwards)  # queued: the views' forwards run while the spaces without views are searched
    timings["embed"] = round(timings["embed"] + _ms_since(started), 3)  # (or here, without a shared batch)
    answers, timings["search"], rows = {}, {}, {}
    concepts = concept_count(catalog.sessions) if any(selected.values()) else 0
    for name in sorted(selected, key=lambda name: views.waits(selected[name])):  # those with views last
        live, started = selected[name], time.perf_counter()
        if live is None:
            answers[name] = SpaceAnswer(name, None, False, [], unavailable_reason(catalog, name))
        else:
            embedded = timings["embed"]
            vector = query_vector(live.head, features[live.info.backbone_id], views, timings)
            started += (timings["embed"] - embedded) / 1000  # waiting for the views counts as embedding
            answers[name] = rank_space(catalog, name, live, vector, k, concepts, temperature, per_concept, rows)
        timings["search"][name] = _ms_since(started)
    answers = {name: answers[name] for name in selected}
    backbones = {catalog.backbones[bid].name: bid for bid in sorted(needed)}
    verdict = fuse(catalog, answers)
    return Attribution(catalog.backbone_id, answers, backbones, timings, decoded, verdict)


def fuse(catalog: Catalog, answers: dict[str, SpaceAnswer], strength: dict[str, int] | None = None
         ) -> VerdictAnswer | None:
    """The verdict over the spaces that answered. The fitted model reads every live space; an
    answer from fewer of them (one space asked for, or one still being built) uses the max rule.
    `strength` ({concept: inliers}, `app.evidence.match_strength`) is read where the fit kept it."""
    evidence = {name: a.evidence for name, a in answers.items() if a.available and a.evidence is not None}
    live = catalog.spaces()
    model = verdict_for(catalog, live) if evidence and set(evidence) == set(live) else None
    verdict = predict_verdict(model, evidence, strength)
    if verdict is None:
        return None
    carriers = [answers[name] for name in verdict.spaces] or list(answers.values())
    surest = max(carriers, key=lambda a: a.evidence.probabilities.get(verdict.concept, 0.0) if a.evidence else -1.0)
    found = next((m for m in surest.concepts if m.concept == verdict.concept), None)
    return VerdictAnswer(verdict.kind, verdict.concept, verdict.probability, verdict.none_probability, verdict.spaces,
                         found.sources[0] if found and found.sources else None, surest.space if found else None,
                         model.method if model else MAX_RULE, model.chosen if model else MAX_RULE, verdict.read_regions)


def embed_query(catalog: Catalog, image, backbone_ids: set[str], forwards: dict, timings: dict) -> dict:
    """One forward of each backbone in `backbone_ids` (through `forwards` where given); `embed`
    times them all, `embed_backbones` each by name."""
    features, timings["embed_backbones"], started = {}, {}, time.perf_counter()
    for backbone_id in sorted(backbone_ids):
        backbone, begun = catalog.backbones[backbone_id], time.perf_counter()
        forward = forwards.get(backbone_id)
        if backbone_id == catalog.backbone_id:
            features[backbone_id] = (forward(catalog.encoder.preprocess(image)[None]) if forward
                                     else catalog.encoder.embed_features([image]))
        else:
            pixels = backbone.crop(image)[None]
            features[backbone_id] = forward(pixels) if forward else backbone.features_of_pixels(pixels)
        timings["embed_backbones"][backbone.name] = _ms_since(begun)
    timings["embed"] = _ms_since(started)
    return features


def query_vector(head, features: np.ndarray, views: QueryViews, timings: dict) -> np.ndarray:
    """The head's embedding of the query. A head trained with query views (training/query_views.py)
    embeds the average over the clean view and its augmented views (app/query_views.py); waiting
    for their forward counts in `embed`."""
    if head.query_views[0] <= 0:
        return head.apply_query(features)[0]
    started = time.perf_counter()
    view_features = views.features(head)
    timings["embed"] = round(timings["embed"] + _ms_since(started), 3)
    return head.apply_query(features, view_features[None])[0]


def select_spaces(catalog: Catalog, space: str) -> dict[str, LiveSpace | None]:
    """The spaces to answer from, content first; None stands for a content space not built yet,
    or a copy space that is not live (no copy backbone, or one still being embedded)."""
    live = catalog.spaces()
    if len(catalog.features) == 0:
        raise CatalogError(
            "the catalog is empty: index some sources first (attrib index PATH --concept NAME)",
            code="empty_catalog",
        )
    if space == "all":
        names = [CONTENT] + sorted(set(live) - {CONTENT} | {COPY})
        return {name: live.get(name) for name in names}
    if space in (CONTENT, COPY):
        return {space: live.get(space)}
    return {space: catalog.live_space(space)}


def rank_space(catalog: Catalog, name: str, space: LiveSpace, vector, k: int, concepts: int, temperature: float,
               per_concept: int, rows: dict) -> SpaceAnswer:
    """The space's top-k concepts with calibrated probabilities, `share`, and the none mass.
    `concepts` is how many concepts the catalog holds (for the mass below the list); `rows` the
    request's source rows read so far (`top_concepts`)."""
    calibration = calibration_for(catalog, space)
    ranked = top_concepts(catalog, space, vector, max(k, WINDOW), per_concept, rows)
    scores = [matches[0].score for _, matches in ranked]
    if scores:
        listed, none, _ = predict(calibration, np.array([scores]), max(concepts, len(scores)))
        probabilities, none_probability = np.clip(listed[0], 0.0, 1.0).tolist(), float(np.clip(none[0], 0.0, 1.0))
    else:
        probabilities, none_probability = [], 1.0
    evidence = SpaceEvidence({concept: p for (concept, _), p in zip(ranked[:WINDOW], probabilities)}, none_probability)
    shares = softmax(scores[:k], temperature)
    matches = [ConceptMatch(concept, found[0].score, share, probability, found[:per_concept])
               for (concept, found), share, probability in zip(ranked[:k], shares, probabilities)]
    return SpaceAnswer(name, space.info.head_id, True, matches, None, none_probability, CalibrationNote.of(calibration),
                       space.info.backbone, evidence)


def top_concepts(catalog: Catalog, space: LiveSpace, vector, k: int, per_concept: int,
                 rows: dict) -> list[tuple[str, list[SourceMatch]]]:
    """The k best concepts (fewer if the catalog has fewer), each with its sources, best first.
    `rows` ({source id: row, or None for a source gone}) is shared by the spaces of one answer, so
    the sources that several spaces find are read from the database once."""
    total = len(space.index)
    wanted = max(64, k * per_concept * 4)
    while True:
        grouped = _group_by_concept(catalog, catalog.search(space, vector, wanted), rows)
        if len(grouped) >= k or wanted >= total:
            break
        wanted *= 4
    return sorted(grouped.items(), key=lambda item: -item[1][0].score)[:k]


def _group_by_concept(catalog: Catalog, hits: list[Hit], rows: dict) -> dict[str, list[SourceMatch]]:
    """Hits whose row is gone (deleted meanwhile) are dropped; each list stays best first. Reads
    the rows not in `rows` yet, and adds them (None for a source gone)."""
    missing = list(dict.fromkeys(hit.source_id for hit in hits if hit.source_id not in rows))
    if missing:
        found = source_rows(catalog.sessions, missing)
        rows.update({source_id: found.get(source_id) for source_id in missing})
    grouped: dict[str, list[SourceMatch]] = defaultdict(list)
    for hit in hits:
        if rows[hit.source_id] is not None:
            filename, sha256, concept = rows[hit.source_id]
            grouped[concept].append(SourceMatch(hit.source_id, hit.score, filename, sha256))
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
