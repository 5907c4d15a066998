"""`attrib verify`: check, like fsck, that the catalog's parts agree, and repair what can be.

Checked, under the catalog's write lock (writers wait for the check; queries do not):
- every source row has stored features of every backbone, and every stored feature has a row
  (a backbone still being caught up, index/catalog/backbone_catch_up.py, is reported, not judged);
- every live space holds a vector for each stored feature of its backbone, and no other;
- every space of a configured backbone is live;
- every source's and every review case's image is stored, and no stored image or thumbnail is
  left that no row uses (files younger than `min_age` seconds are left alone: an upload in flight);
- no takedown is left unfinished.

`open_as_found` makes a catalog load without the reconcile that every load runs, so that the
check sees what is on disk. `repair` finishes takedowns, removes orphaned files (the sweep), and loads the catalog again, whose
reconcile embeds missing features from the stored images, drops orphans and rebuilds the spaces'
vectors; then it checks again. A source whose image is gone cannot be re-embedded: it is reported
until it is indexed again or taken down.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
from sqlalchemy import func, select

from index.catalog import Catalog, backbone_name, catch_up_running, space_rows
from index.db import Case, Source, Takedown
from index.jobs.sweeper import sweep

SHOWN_IDS = 10


@dataclass
class Problem:
    part: str  # features/<backbone>, vectors/<space>, space/<name>, images, files, takedowns
    what: str
    count: int
    ids: list = field(default_factory=list)  # the first SHOWN_IDS ids or names concerned

    def line(self) -> str:
        shown = f" ({', '.join(map(str, self.ids))}{', ...' if self.count > len(self.ids) else ''})" if self.ids else ""
        return f"{self.part}: {self.count} {self.what}{shown}"


@dataclass
class Report:
    sources: int
    problems: list[Problem]
    notes: list[str]
    repaired: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return asdict(self) | {"clean": self.clean}


def open_as_found(catalog: Catalog) -> Catalog:
    """Have `catalog` load without the reconcile that repairs at every load, so `verify` sees
    the parts as they are on disk (call before its first use)."""
    catalog.reconcile_on_load = False
    return catalog


def verify(catalog: Catalog, min_age: float = 60.0) -> Report:
    with catalog.write_lock():
        rows = catalog.row_ids()
        catalog.spaces()  # loads (as found) on first use
        catching_up = _catching_up(catalog)
        problems, notes = _features(catalog, rows, catching_up) + _vectors(catalog, catching_up), []
        for backbone_id in catching_up:
            notes.append(f"{backbone_name(backbone_id)}: a catch-up is embedding the sources that lack its features "
                         f"(the server's job or `attrib reindex --backbone {backbone_name(backbone_id)}`)")
        problems += _images(catalog, min_age)
        with catalog.sessions() as session:
            unfinished = session.scalar(select(func.count()).select_from(Takedown).where(Takedown.state == "pending"))
        if unfinished:
            problems.append(Problem("takedowns", "takedowns not finished", unfinished))
    return Report(len(rows), problems, notes)


def repair(catalog: Catalog, min_age: float = 60.0) -> Report:
    """Repair what can be repaired, then check again; `repaired` says what was done."""
    before = verify(catalog, min_age)
    swept = sweep(catalog, min_age=min_age)
    catalog.reconcile_on_load = True
    catalog.reload()
    after = verify(catalog, min_age)
    after.repaired = [problem.line() for problem in before.problems if problem.line() not in
                      {remaining.line() for remaining in after.problems}]
    after.repaired += [f"removed {n} {what}" for what, n in swept.items() if n]
    return after


def _features(catalog: Catalog, rows: np.ndarray, catching_up: set[str]) -> list[Problem]:
    problems = []
    for backbone_id, store in catalog.feature_stores().items():
        store.refresh()
        stored, name = store.ids(), backbone_name(backbone_id)
        missing, orphans = np.setdiff1d(rows, stored), np.setdiff1d(stored, rows)
        if len(missing) and backbone_id not in catching_up:
            problems.append(Problem(f"features/{name}", "sources have no stored features", len(missing),
                                    missing[:SHOWN_IDS].tolist()))
        if len(orphans):
            problems.append(Problem(f"features/{name}", "stored features belong to no source", len(orphans),
                                    orphans[:SHOWN_IDS].tolist()))
    return problems


def _catching_up(catalog: Catalog) -> set[str]:
    """Backbones whose missing features a catch-up is embedding now, or will (`catalog.pending`)."""
    return set(catalog.pending) | {bid for bid in catalog.backbones
                                   if bid != catalog.backbone_id and catch_up_running(catalog.home, bid)}


def _vectors(catalog: Catalog, catching_up: set[str]) -> list[Problem]:
    problems, live = [], catalog.spaces()
    for name, space in sorted(live.items()):
        stored, vectors = catalog.features_of(space.info.backbone_id).ids(), space.index.ids()
        for ids, what in ((np.setdiff1d(stored, vectors), "stored features have no vector"),
                          (np.setdiff1d(vectors, stored), "vectors belong to no stored features")):
            if len(ids):
                problems.append(Problem(f"vectors/{name}", what, len(ids), ids[:SHOWN_IDS].tolist()))
    for info in space_rows(catalog.sessions):
        configured = info.backbone_id in catalog.backbones and info.backbone_id not in catching_up
        if info.name not in live and configured:
            problems.append(Problem(f"space/{info.name}", "space of a configured backbone is not live", 1))
    return problems


def _images(catalog: Catalog, min_age: float) -> list[Problem]:
    with catalog.sessions() as session:
        sources = dict(session.execute(select(Source.id, Source.sha256)).all())
        cases = dict(session.execute(select(Case.id, Case.sha256)).all())
    problems = []
    for rows, what in ((sources, "sources have no stored image"), (cases, "review cases have no stored image")):
        gone = sorted(row_id for row_id, sha in rows.items() if not catalog.blobs.path(sha).is_file())
        if gone:
            problems.append(Problem("images", what, len(gone), gone[:SHOWN_IDS]))
    orphans = _orphan_files(catalog, set(sources.values()) | set(cases.values()), min_age)
    if orphans:
        problems.append(Problem("files", "stored images or thumbnails are used by no row", len(orphans),
                                orphans[:SHOWN_IDS]))
    return problems


def _orphan_files(catalog: Catalog, used: set[str], min_age: float) -> list[str]:
    cutoff, found = time.time() - min_age, []
    for root in (catalog.blobs.root, catalog.blobs.thumbnails):
        for path in sorted(root.glob("*/*")) if root.is_dir() else ():
            if path.is_file() and not path.name.startswith(".") and path.name.split("_")[0] not in used:
                if path.stat().st_mtime <= cutoff:
                    found.append(path.name)
    return found
