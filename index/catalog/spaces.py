"""Search spaces: named vector stores, each a head applied to the stored backbone features.

`copy` is the identity head on the copy backbone's features (SSCD descriptors); `style` the identity
head on the encoder's (raw Lite0 features); `content` a trained A&D head on the encoder's. A space's row
records its head (id and the copy of its checkpoint kept under ATTRIB_HOME/heads), its size
and build time, and the previous head for a roll-back. Its vectors live in the catalog's
vector store (index/stores: a FAISS file ATTRIB_HOME/index/spaces/<name>.faiss, or a Milvus
collection), which records the head it was built with.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from index.catalog.backbones import backbone_name
from index.catalog.features import FeatureStore
from index.db import Space, utcnow
from index.stores import DEFAULT_TARGET_RECALL, SpaceStores, VectorStore
from training.errors import AttribError
from training.fileio import atomic_write
from training.heads import Head, load_head

log = logging.getLogger(__name__)
STYLE, CONTENT, COPY = "style", "content", "copy"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
Progress = Callable[[int], None]
TRAIN_ROWS = 327_680  # added together first, to train on: 40 a list for the IVF8192 advised at 10M


class SpaceError(AttribError):
    code = "space_error"
    status = 409


@dataclass(frozen=True)
class SpaceInfo:
    """A snapshot of a space's row (safe to hand out after the session closed)."""

    name: str
    backbone: str
    backbone_id: str
    head_id: str
    head_path: str | None
    dim: int
    factory: str
    count: int
    built_at: datetime
    previous_head_id: str | None
    previous_head_path: str | None

    @classmethod
    def of(cls, row: Space) -> "SpaceInfo":
        return cls(row.name, row.backbone or backbone_name(row.backbone_id), row.backbone_id, row.head_id, row.head_path, row.dim, row.factory, row.count,
                   row.built_at, row.previous_head_id, row.previous_head_path)


@dataclass
class LiveSpace:
    """What a request searches: replaced as a whole when a new head goes live."""

    info: SpaceInfo
    head: Head
    index: VectorStore


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name or ""):
        raise SpaceError(f"space names are 1-32 characters of a-z, 0-9, '_' and '-', starting with a letter; "
                         f"not {name!r}", code="bad_space_name", status=422)
    return name


def space_rows(sessions: sessionmaker[Session]) -> list[SpaceInfo]:
    with sessions() as session:
        return [SpaceInfo.of(row) for row in session.scalars(select(Space).order_by(Space.name))]


def record_build(sessions: sessionmaker[Session], name: str, head: Head, head_path: str | None,
                 factory: str, count: int, keep_previous: bool = True) -> SpaceInfo:
    """Make `head` the live head of space `name`; the head it replaces becomes the previous one."""
    with sessions.begin() as session:
        row = session.scalar(select(Space).where(Space.name == name))
        if row is None:
            row = Space(name=name, created_at=utcnow())
            session.add(row)
        elif keep_previous and row.head_id != head.head_id:
            row.previous_head_id, row.previous_head_path = row.head_id, row.head_path
        row.backbone, row.backbone_id = backbone_name(head.backbone_id), head.backbone_id
        row.head_id, row.head_path = head.head_id, head_path
        row.dim, row.factory, row.count, row.built_at = head.dim, factory, count, utcnow()
        session.flush()
        return SpaceInfo.of(row)


def update_count(sessions: sessionmaker[Session], name: str, count: int) -> None:
    with sessions.begin() as session:
        row = session.scalar(select(Space).where(Space.name == name))
        if row is not None:
            row.count = count


def delete_rows(sessions: sessionmaker[Session], names: list[str]) -> None:
    with sessions.begin() as session:
        for row in session.scalars(select(Space).where(Space.name.in_(names))):
            session.delete(row)


def build_index(store: FeatureStore, head: Head, stores: SpaceStores, name: str, progress: Progress | None = None,
                target_recall: float = DEFAULT_TARGET_RECALL, kind: str | None = None) -> VectorStore:
    """Apply a head to every stored feature (a matrix product per segment, no backbone forward)
    into a new store for space `name`, beside the live one. An approximate index is then tuned
    to the recall target. `kind`: the index type, when not the configured one.

    Streamed, so that a build holds the training rows and one segment, not the whole space: the
    first TRAIN_ROWS vectors are added together (an IVF or PQ index trains on them), then each
    segment on its own; a float16 copy for the tuning's exact search goes to an anonymous file
    (gone even after a crash)."""
    built = stores.new(name, head.head_id, head.dim, expected=len(store), kind=kind)
    total = len(store)
    if not total:
        return built
    started = time.perf_counter()
    with tempfile.TemporaryFile(dir=store.dir.parent) as scratch:
        copy = np.memmap(scratch, np.float16, mode="w+", shape=(total, head.dim))
        all_ids, filled, waiting = np.zeros(total, np.int64), 0, []
        for ids, features in _with_progress(store.chunks(), progress):
            vectors = head.apply(features)
            copy[filled:filled + len(ids)], all_ids[filled:filled + len(ids)] = vectors, ids
            filled += len(ids)
            waiting.append((ids, vectors))
            if filled >= TRAIN_ROWS:  # the first add has had its training rows
                _add_all(built, waiting)
                waiting = []
        _add_all(built, waiting)
        built.tune(copy[:filled], all_ids[:filled], target_recall)
        del copy
    log.info("built space %s (%s) of %d vectors in %.3fs", name, built.info.factory, len(built),
             time.perf_counter() - started)
    return built


def _add_all(store: VectorStore, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
    if parts:
        store.add(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def _with_progress(chunks, progress: Progress | None):
    for ids, features in chunks:
        yield ids, features
        if progress:
            progress(len(ids))


class HeadFiles:
    """Copies of the head checkpoints that spaces use, under ATTRIB_HOME/heads/<head id>.pt, so a
    space (and its roll-back) never depends on a file elsewhere that may move or change."""

    def __init__(self, home: Path):
        self.root = Path(home) / "heads"

    def keep(self, path: str | Path, head_id: str) -> str:
        kept = self.root / f"{head_id}.pt"
        if not kept.is_file():
            atomic_write(kept, lambda tmp: shutil.copyfile(path, tmp))
        return str(kept)

    def load(self, info_head_id: str, head_path: str | None, backbone_id: str, feature_dim: int,
             others: dict[str, int] | None = None) -> Head:
        if head_path is None:
            return Head.identity(backbone_id, feature_dim)
        head = load_head(head_path, backbone_id, feature_dim, others)
        if head.head_id != info_head_id:
            raise SpaceError(f"the head file {head_path} holds {head.head_id}, not {info_head_id}",
                             code="head_unreadable")
        return head
