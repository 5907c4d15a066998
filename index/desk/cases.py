"""Review cases in SQL: create, read, list with filters, decide (append-only), rescore.

Every write records its audit entry in the same transaction. A case's `status` follows its
latest decision; its answer, head ids and headline follow its newest rescore, while the answers
before stay on the rescore rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from index.catalog import BlobStore
from index.db import Actor, Case, CaseDecision, CaseRescore, Concept, Source, record
from index.errors import NotFoundError
from index.images import DecodedImage
from training.errors import AttribError

STATUSES = ("open", "match", "no_match", "escalated")
DECISIONS = ("match", "no_match", "escalate")
STATUS_OF = {"match": "match", "no_match": "no_match", "escalate": "escalated"}
MAX_ID = 2**31 - 1


class CaseError(AttribError):
    code = "bad_decision"
    status = 422


@dataclass(frozen=True)
class Headline:
    """What a case's list row shows: the top concept of its main space and how sure the answer is."""

    top_concept: str | None
    confidence: float | None
    none_probability: float | None


@dataclass(frozen=True)
class CaseFilter:
    status: str | None = None
    concept: str | None = None  # the case's top concept
    since: datetime | None = None
    until: datetime | None = None
    min_confidence: float | None = None
    reviewer: str | None = None  # id or name of a key that decided on the case
    sort: str = "newest"  # or "verdict": the surest match first (the headline confidence), then newest


@dataclass
class CaseRecord:
    case: Case
    decisions: list[CaseDecision]  # oldest first
    rescores: list[CaseRescore]  # oldest first


def create_case(sessions: sessionmaker[Session], blobs: BlobStore, actor: Actor, data: bytes,
                image: DecodedImage, filename: str, params: dict, answer: dict, head_ids: dict,
                headline: Headline) -> int:
    """Store the query image (first, as ingestion does: the sweep removes it if the row never
    commits), then the case row and its audit entry."""
    blobs.put(image.sha256, data)
    with sessions.begin() as session:
        case = Case(status="open", sha256=image.sha256, filename=filename[:512], format=image.format[:16],
                    width=image.width, height=image.height, key_id=actor.key_id, key_name=actor.name[:255],
                    params=params, backbone_id=answer["backbone_id"], head_ids=head_ids, answer=answer,
                    **vars(headline))
        session.add(case)
        session.flush()
        record(session, actor, "case.create", "case", case.id,
               after={"filename": case.filename, "sha256": case.sha256, "head_ids": head_ids, **vars(headline)})
        return case.id


def get_case(sessions: sessionmaker[Session], case_id: int) -> CaseRecord:
    with sessions() as session:
        case = _case(session, case_id)
        decisions = session.scalars(select(CaseDecision).where(CaseDecision.case_id == case_id)
                                    .order_by(CaseDecision.id)).all()
        rescores = session.scalars(select(CaseRescore).where(CaseRescore.case_id == case_id)
                                   .order_by(CaseRescore.id)).all()
    return CaseRecord(case, list(decisions), list(rescores))


def _case(session: Session, case_id: int, lock: bool = False) -> Case:
    case = session.get(Case, case_id, with_for_update=lock) if 0 < case_id <= MAX_ID else None
    if case is None:
        raise NotFoundError(f"no case with id {case_id}", code="case_not_found")
    return case


def list_cases(sessions: sessionmaker[Session], where: CaseFilter, offset: int,
               limit: int) -> tuple[list[tuple[Case, int]], int]:
    """(case, number of decisions) in `where.sort` order, and how many cases match in all."""
    conditions = _conditions(where)
    decided = (select(CaseDecision.case_id, func.count(CaseDecision.id).label("n"))
               .group_by(CaseDecision.case_id).subquery())
    query = (select(Case, func.coalesce(decided.c.n, 0)).outerjoin(decided, decided.c.case_id == Case.id)
             .where(*conditions).order_by(*_order(where.sort)).offset(offset).limit(limit))
    with sessions() as session:
        total = session.scalar(select(func.count(Case.id)).where(*conditions)) or 0
        rows = session.execute(query).all()
    return [(case, int(count)) for case, count in rows], total


def _order(sort: str) -> list:
    newest = [Case.created_at.desc(), Case.id.desc()]
    if sort == "verdict":  # cases without a confidence last, on SQLite and PostgreSQL alike
        return [Case.confidence.is_(None), Case.confidence.desc(), *newest]
    return newest


def _conditions(where: CaseFilter) -> list:
    conditions = []
    if where.status is not None:
        conditions.append(Case.status == where.status)
    if where.concept is not None:
        conditions.append(Case.top_concept == where.concept)
    if where.since is not None:
        conditions.append(Case.created_at >= where.since)
    if where.until is not None:
        conditions.append(Case.created_at <= where.until)
    if where.min_confidence is not None:
        conditions.append(Case.confidence >= where.min_confidence)
    if where.reviewer is not None:
        by = CaseDecision.key_name == where.reviewer
        if where.reviewer.isascii() and where.reviewer.isdigit() and 0 < int(where.reviewer) <= MAX_ID:
            by = by | (CaseDecision.key_id == int(where.reviewer))
        conditions.append(Case.id.in_(select(CaseDecision.case_id).where(by)))
    return conditions


def latest_decisions(sessions: sessionmaker[Session], case_ids: list[int]) -> dict[int, CaseDecision]:
    """Each case's latest decision (cases without one are absent)."""
    if not case_ids:
        return {}
    newest = (select(func.max(CaseDecision.id)).where(CaseDecision.case_id.in_(case_ids))
              .group_by(CaseDecision.case_id))
    with sessions() as session:
        rows = session.scalars(select(CaseDecision).where(CaseDecision.id.in_(newest))).all()
    return {row.case_id: row for row in rows}


def decided_queries(sessions: sessionmaker[Session], limit: int) -> list[tuple[str, list[str]]]:
    """(query image sha256, concepts) of the `limit` newest cases whose latest decision is a
    verdict, oldest first: the concepts named by a `match`, none for a `no_match`. Escalated
    cases are left out."""
    return _decided(sessions, Case.sha256, limit)


def decided_answers(sessions: sessionmaker[Session], limit: int) -> list[tuple[dict, list[str]]]:
    """(the answer the case got, concepts) of the same cases as `decided_queries`."""
    return [(answer or {}, concepts) for answer, concepts in _decided(sessions, Case.answer, limit)]


def _decided(sessions: sessionmaker[Session], column, limit: int) -> list[tuple]:
    newest = select(func.max(CaseDecision.id)).group_by(CaseDecision.case_id)
    with sessions() as session:
        rows = session.execute(select(column, CaseDecision.decision, CaseDecision.concepts)
                               .join(Case, Case.id == CaseDecision.case_id)
                               .where(CaseDecision.id.in_(newest), CaseDecision.decision.in_(("match", "no_match")))
                               .order_by(Case.id.desc()).limit(limit)).all()
    return [(value, list(concepts or []) if decision == "match" else []) for value, decision, concepts in reversed(rows)]


def add_decision(sessions: sessionmaker[Session], actor: Actor, case_id: int, decision: str,
                 concepts: list[str], source_ids: list[int], note: str) -> CaseDecision:
    """Append a decision; it supersedes the case's earlier ones (which stay) and sets its status.

    Concepts must appear in one of the case's answers or in the catalog; source ids likewise (a
    source taken down since the answer still counts, as the answer shows it)."""
    if decision not in DECISIONS:
        raise CaseError(f"unknown decision {decision!r}: use one of {', '.join(DECISIONS)}")
    if decision == "match" and not concepts:
        raise CaseError("a `match` names at least one concept", code="concepts_required")
    if decision == "no_match" and (concepts or source_ids):
        raise CaseError("a `no_match` names no concepts or sources", code="concepts_not_allowed")
    with sessions.begin() as session:
        case = _case(session, case_id, lock=True)
        answers = [case.answer, *session.scalars(select(CaseRescore.previous_answer)
                                                 .where(CaseRescore.case_id == case_id))]
        _check_named(session, answers, list(dict.fromkeys(concepts)), list(dict.fromkeys(source_ids)))
        row = CaseDecision(case_id=case_id, decision=decision, concepts=list(dict.fromkeys(concepts)),
                           source_ids=list(dict.fromkeys(source_ids)), note=note, key_id=actor.key_id,
                           key_name=actor.name[:255])
        session.add(row)
        before = case.status
        case.status = STATUS_OF[decision]
        session.flush()
        record(session, actor, "decision.create", "case", case_id, before={"status": before},
               after={"decision_id": row.id, "decision": decision, "status": case.status,
                      "concepts": row.concepts, "source_ids": row.source_ids, "note": note})
        return row


def _check_named(session: Session, answers: list[dict], concepts: list[str], source_ids: list[int]) -> None:
    shown_concepts, shown_sources = set(), set()
    for answer in answers:
        for space in (answer or {}).get("spaces", {}).values():
            for concept in space.get("concepts", []):
                shown_concepts.add(concept.get("concept"))
                shown_sources.update(source.get("id") for source in concept.get("sources", []))
    missing = _first_unknown(session, concepts, shown_concepts, Concept.name)
    if missing is not None:
        raise CaseError(f"no concept named {missing!r} in this case's answers or in the catalog",
                        code="unknown_concept")
    absent = _first_unknown(session, source_ids, shown_sources, Source.id)
    if absent is not None:
        raise CaseError(f"no source with id {absent} in this case's answers or in the catalog",
                        code="unknown_source")


def _first_unknown(session: Session, wanted: list, shown: set, column):
    """The first of `wanted` neither shown in the case's answers nor in the catalog's `column`."""
    unseen = [value for value in wanted if value not in shown]
    if not unseen:
        return None
    known = set(session.scalars(select(column).where(column.in_(unseen))))
    return next((value for value in unseen if value not in known), None)


def add_rescore(sessions: sessionmaker[Session], actor: Actor, case_id: int, answer: dict, head_ids: dict,
                headline: Headline, compare: Callable[[dict, dict], tuple[bool, dict]]) -> CaseRescore:
    """Keep the case's current answer on a rescore row and make `answer` the case's answer;
    `compare(previous, answer)` says whether (and how) the ranking changed."""
    with sessions.begin() as session:
        case = _case(session, case_id, lock=True)
        changed, changes = compare(case.answer, answer)
        before = {"backbone_id": case.backbone_id, "head_ids": case.head_ids, "top_concept": case.top_concept,
                  "confidence": case.confidence, "none_probability": case.none_probability}
        row = CaseRescore(case_id=case_id, key_id=actor.key_id, key_name=actor.name[:255],
                          previous_answer=case.answer, answer=answer, backbone_id=answer["backbone_id"],
                          head_ids=head_ids, changed=changed, changes=changes)
        session.add(row)
        case.answer, case.head_ids, case.backbone_id = answer, head_ids, answer["backbone_id"]
        case.top_concept, case.confidence, case.none_probability = (
            headline.top_concept, headline.confidence, headline.none_probability)
        session.flush()
        record(session, actor, "case.rescore", "case", case_id, before=before,
               after={"rescore_id": row.id, "backbone_id": case.backbone_id, "head_ids": head_ids,
                      "changed": changed, **vars(headline)})
        return row


def case_image(sessions: sessionmaker[Session], case_id: int) -> Case:
    with sessions() as session:
        return _case(session, case_id)


def case_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return dict(session.execute(select(Case.status, func.count(Case.id)).group_by(Case.status)).all())


def decision_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return dict(session.execute(select(CaseDecision.decision, func.count(CaseDecision.id))
                                    .group_by(CaseDecision.decision)).all())


def source_shas(sessions: sessionmaker[Session], source_ids: list[int]) -> dict[int, str]:
    """The stored image of each source that still exists."""
    ids = [i for i in source_ids if isinstance(i, int) and 0 < i <= MAX_ID]
    if not ids:
        return {}
    with sessions() as session:
        return dict(session.execute(select(Source.id, Source.sha256).where(Source.id.in_(ids))).all())
