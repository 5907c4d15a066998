"""The copy space: SSCD descriptors beside Lite0's features in one catalog, with the real models,
on both databases: ingestion, takedown, crash recovery, the catch-up of an older catalog, and the
migration that names every space's backbone."""

import io
import shutil

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine, text

from app.attribution import attribute_bytes
from index.catalog import COPY, catch_up, missing_sources, take_down_source
from index.db import downgrade_database, upgrade_database
from index.ingest import IngestItem, ingest


def items_for(paths):
    return [IngestItem(p.name, p.stem, path=p) for p in paths]


def edited(path) -> bytes:
    """A crop of the photo's centre, recompressed: a copy the copy space must trace."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    buffer = io.BytesIO()
    image.crop((w // 8, h // 8, w - w // 8, h - h // 8)).save(buffer, "JPEG", quality=50)
    return buffer.getvalue()


def ids_of(catalog, backbone_id):
    return set(catalog.features_of(backbone_id).ids().tolist())


def test_ingestion_stores_both_backbones_and_a_takedown_removes_both(make_catalog, copy_backbone, photos):
    catalog = make_catalog(copy=copy_backbone)
    assert sorted(catalog.spaces()) == [COPY, "style"]
    assert catalog.live_space(COPY).info.backbone == "sscd_distilled"
    assert catalog.live_space("style").info.backbone == "efficientnet_lite0"
    results = ingest(catalog, items_for(photos[:10]))
    ids = {r.source_id for r in results}
    assert ids_of(catalog, catalog.backbone_id) == ids == ids_of(catalog, copy_backbone.backbone_id)
    assert set(catalog.live_space(COPY).index.ids().tolist()) == ids
    answer = attribute_bytes(catalog, edited(photos[3]), k=3)
    assert list(answer.spaces) == ["content", COPY, "style"]
    assert answer.spaces[COPY].concepts[0].concept == photos[3].stem
    assert answer.spaces[COPY].backbone == "sscd_distilled"
    assert set(answer.backbones) == {"sscd_distilled", "efficientnet_lite0"}
    assert set(answer.timings_ms["embed_backbones"]) == {"sscd_distilled", "efficientnet_lite0"}
    gone = results[3].source_id
    take_down_source(catalog, gone)
    assert gone not in ids_of(catalog, copy_backbone.backbone_id) | ids_of(catalog, catalog.backbone_id)
    assert gone not in set(catalog.live_space(COPY).index.ids().tolist())
    reopened = make_catalog(copy=copy_backbone)
    assert gone not in set(reopened.live_space(COPY).index.ids().tolist())
    assert len(reopened.live_space(COPY).index) == 9


def test_a_crash_that_lost_copy_features_is_repaired_at_load(make_catalog, copy_backbone, photos):
    catalog = make_catalog(copy=copy_backbone)
    ids = {r.source_id for r in ingest(catalog, items_for(photos[:6]))}
    catalog.close()
    shutil.rmtree(catalog.home / "features" / copy_backbone.backbone_id)  # as if the copy write never landed
    reopened = make_catalog(copy=copy_backbone)
    assert ids_of(reopened, copy_backbone.backbone_id) == ids
    assert set(reopened.live_space(COPY).index.ids().tolist()) == ids


def test_an_older_catalog_answers_while_its_copy_backbone_catches_up(make_catalog, copy_backbone, photos):
    old = make_catalog()  # before the copy backbone: style only
    ingest(old, items_for(photos[:12]))
    assert sorted(old.spaces()) == ["style"]
    catalog = make_catalog(copy=copy_backbone, sync_embed_limit=4)
    assert sorted(catalog.spaces()) == ["style"] and catalog.pending == {copy_backbone.backbone_id: 12}
    server = make_catalog(copy=copy_backbone, sync_embed_limit=4)  # another process on the same catalog
    assert sorted(server.spaces()) == ["style"]
    waiting = attribute_bytes(catalog, edited(photos[5]), k=3)
    assert not waiting.spaces[COPY].available and "being built: 12 source(s)" in waiting.spaces[COPY].message
    assert waiting.spaces["style"].available
    new = ingest(catalog, items_for(photos[12:14]))  # new sources get both backbones' features at once
    assert {r.source_id for r in new} <= ids_of(catalog, copy_backbone.backbone_id)
    counted = []
    done = catch_up(catalog, copy_backbone.backbone_id, progress=counted.append)
    assert (done.embedded, done.sources, done.finished, sum(counted)) == (12, 12, True, 12)
    assert sorted(catalog.spaces()) == [COPY, "style"] and catalog.pending == {}
    assert len(missing_sources(catalog, copy_backbone.backbone_id)) == 0
    assert attribute_bytes(catalog, edited(photos[5]), k=3).spaces[COPY].concepts[0].concept == photos[5].stem
    assert len(server.live_space(COPY).index) == 14  # the other process reloads after the catch-up's stamp


def test_a_catch_up_asked_to_stop_resumes_where_it_ended(make_catalog, copy_backbone, photos):
    ingest(make_catalog(), items_for(photos[:40]))
    catalog = make_catalog(copy=copy_backbone, sync_embed_limit=0)
    started = lambda: len(catalog.features_of(copy_backbone.backbone_id)) > 0  # noqa: E731
    first = catch_up(catalog, copy_backbone.backbone_id, should_stop=started)
    assert not first.finished and first.embedded == 32 and COPY not in catalog.spaces()
    second = catch_up(catalog, copy_backbone.backbone_id)
    assert (second.embedded, second.sources, second.finished) == (8, 8, True) and COPY in catalog.spaces()


def test_without_the_copy_backbone_the_catalog_serves_lite0_and_says_why(make_catalog, copy_backbone, photos):
    catalog = make_catalog(copy=copy_backbone)
    ingest(catalog, items_for(photos[:4]))
    catalog.close()
    lite0 = make_catalog(copy_problem="the copy backbone sscd_distilled is not installed")
    assert sorted(lite0.spaces()) == ["style"]
    answer = attribute_bytes(lite0, edited(photos[1]), k=2)
    assert not answer.spaces[COPY].available
    assert answer.spaces[COPY].message == "the copy space is unavailable: the copy backbone sscd_distilled is not installed"
    assert answer.spaces["style"].concepts[0].concept == photos[1].stem
    ingest(lite0, items_for(photos[4:6]))  # ingested without copy features: the next load with it repairs them
    back = make_catalog(copy=copy_backbone)
    assert len(back.live_space(COPY).index) == 6


def test_the_migration_names_the_backbone_of_todays_spaces(database_url):
    upgrade_database(database_url, "0007")
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO spaces (name, backbone_id, head_id, dim, factory, count, built_at, created_at) VALUES "
            "('style', 'efficientnet_lite0-e6c40df8c05e13e5', 'h', 1280, 'Flat', 0, '2026-12-01', '2026-12-01')"))
    upgrade_database(database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT backbone FROM spaces")).scalar_one() == "efficientnet_lite0"
    engine.dispose()
    downgrade_database(database_url)
