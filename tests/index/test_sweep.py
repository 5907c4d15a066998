"""The sweep finishes interrupted takedowns and removes orphaned files, old enough, and nothing else."""

import os
import time

import pytest

from index.catalog import take_down_source
from index.db import Takedown
from index.ingest import IngestItem, ingest
from index.jobs import create_job, sweep

pytestmark = pytest.mark.both_stores


def aged(path, seconds=3600):
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


def test_orphans_go_and_everything_in_use_stays(make_catalog, photos):
    catalog = make_catalog()
    kept = ingest(catalog, [IngestItem(p.name, p.stem, path=p) for p in photos[:2]])
    catalog.blobs.thumbnail(next(iter(catalog.blobs.root.glob("*/*"))).name)
    orphan_blob = aged(catalog.blobs.put("ab" * 32, b"left by a crash before the row commit"))
    young_blob = catalog.blobs.put("cd" * 32, b"an ingest that is about to commit")
    orphan_thumb = catalog.blobs.thumbnail_path("ef" * 32)
    orphan_thumb.parent.mkdir(parents=True, exist_ok=True)
    orphan_thumb.write_bytes(b"x")
    aged(orphan_thumb)
    cut_upload = catalog.home / "spool" / "cut-before-202"
    cut_upload.mkdir(parents=True)
    aged(cut_upload)
    live_job = create_job(catalog, [IngestItem(photos[3].name, "x", path=photos[3])])
    aged(catalog.home / "spool" / live_job)
    temp = catalog.home / "index" / ".style.faiss.abc123.tmp"
    temp.write_bytes(b"half a file")
    aged(temp)

    removed = sweep(catalog, min_age=60)
    assert removed == {"takedowns_finished": 0, "images": 1, "thumbnails": 1, "spool_folders": 1, "temp_files": 1}
    assert not orphan_blob.exists() and not orphan_thumb.exists() and not cut_upload.exists() and not temp.exists()
    assert young_blob.exists() and (catalog.home / "spool" / live_job).is_dir()
    assert len(list(catalog.blobs.thumbnails.glob("*/*"))) == 1
    assert all(catalog.blobs.path(sha).exists() for sha in _shas(catalog, kept))


def test_an_interrupted_takedown_is_finished(make_catalog, photos, monkeypatch):
    catalog = make_catalog()
    results = ingest(catalog, [IngestItem(p.name, p.stem, path=p) for p in photos[:3]])
    victim = results[1].source_id
    sha = _shas(catalog, results[1:2])[0]
    monkeypatch.setattr(catalog, "forget", lambda ids: (_ for _ in ()).throw(SystemExit("killed")))
    try:
        take_down_source(catalog, victim)
    except SystemExit:
        pass
    monkeypatch.undo()
    assert catalog.blobs.path(sha).exists()

    reopened = make_catalog()
    assert sweep(reopened, min_age=60)["takedowns_finished"] == 1
    assert not reopened.blobs.path(sha).exists()
    assert victim not in reopened.features.ids() and victim not in reopened.live_space("style").index.ids()
    with reopened.sessions() as session:
        record = session.query(Takedown).one()
    assert record.state == "done" and record.completed_at and record.removed["rows"] == 1


def _shas(catalog, results):
    from index.db import Source

    with catalog.sessions() as session:
        return [session.get(Source, r.source_id).sha256 for r in results]
