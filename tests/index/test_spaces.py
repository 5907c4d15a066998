"""Spaces over stored features: roll-out, roll-back, refused heads, and the carry-over of a
catalog made before spaces existed. Both databases, both vector stores, the real encoder,
real photos."""

import json

import numpy as np
import pytest
import torch
from sqlalchemy import delete

from index.calibration import rollback, set_head
from index.catalog import SpaceError, reindex, take_down_source
from index.db import Space
from index.ingest import IngestItem, ingest
from index.stores import sidecar_path
from index.stores.vectors import build_index
from training.encoders import create_encoder, load_checkpoint
from training.heads import HeadError

pytestmark = pytest.mark.both_stores


def head_checkpoint(path, seed, out_dim=64):
    encoder = create_encoder(head_config={"type": "linear", "out_dim": out_dim})
    with torch.no_grad():
        encoder.head.weight.add_(0.05 * torch.randn(encoder.head.weight.shape, generator=torch.Generator().manual_seed(seed)))
    encoder.invalidate_id()
    return encoder.save(path), encoder.encoder_id


def vectors_of(space):
    ids = np.sort(space.index.ids())
    return ids, space.index.vectors(ids)


@pytest.fixture
def filled(make_catalog, photos):
    catalog = make_catalog()
    ingest(catalog, [IngestItem(p.name, p.stem, path=p) for p in photos[:6]])
    return catalog


def test_a_new_head_changes_every_vector_of_its_space_and_nothing_else(filled, tmp_path):
    first, first_id = head_checkpoint(tmp_path / "a.pt", 1)
    second, second_id = head_checkpoint(tmp_path / "b.pt", 2)
    style_before = vectors_of(filled.live_space("style"))
    feature_ids = sorted(filled.features.ids().tolist())

    assert set_head(filled, "content", first).head_id == first_id
    ids, one = vectors_of(filled.live_space("content"))
    stored_ids, stored = filled.features.get(ids)
    assert ids.tolist() == feature_ids and np.allclose(one, filled.live_space("content").head.apply(stored[np.argsort(stored_ids)]), atol=1e-6)

    info = set_head(filled, "content", second)
    assert (info.head_id, info.previous_head_id, info.count) == (second_id, first_id, 6)
    ids, two = vectors_of(filled.live_space("content"))
    assert ids.tolist() == feature_ids
    assert all(not np.allclose(a, b, atol=1e-4) for a, b in zip(one, two))
    style_after = vectors_of(filled.live_space("style"))
    assert np.array_equal(style_before[0], style_after[0]) and np.array_equal(style_before[1], style_after[1])
    assert sorted(filled.features.ids().tolist()) == feature_ids and filled.count() == 6

    back = rollback(filled, "content")
    assert (back.head_id, back.previous_head_id) == (first_id, second_id)
    assert np.allclose(vectors_of(filled.live_space("content"))[1], one, atol=1e-6)


def test_a_refused_head_leaves_the_serving_space_untouched(filled, tmp_path, make_catalog):
    good, good_id = head_checkpoint(tmp_path / "good.pt", 1)
    set_head(filled, "content", good)
    live = filled.live_space("content")
    foreign = create_encoder(random_init=True, head_config={"type": "linear"}).save(tmp_path / "foreign.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:10_000])
    for bad, code in ((foreign, "backbone_mismatch"), (corrupt, "head_unreadable"), (tmp_path / "missing.pt", "head_unreadable")):
        with pytest.raises(HeadError) as caught:
            set_head(filled, "content", bad)
        assert caught.value.code == code and caught.value.status == 422
        assert filled.live_space("content") is live
    with pytest.raises(SpaceError):
        set_head(filled, "Bad Name!", good)
    with pytest.raises(SpaceError) as caught:
        rollback(filled, "content")
    assert caught.value.code == "no_previous_head"
    reopened = make_catalog()
    assert reopened.live_space("content").info.head_id == good_id and len(reopened.live_space("content").index) == 6


def test_ingest_and_takedown_keep_every_space_in_step(filled, tmp_path, photos, make_catalog):
    set_head(filled, "content", head_checkpoint(tmp_path / "a.pt", 1)[0])
    new = ingest(filled, [IngestItem(p.name, p.stem, path=p) for p in photos[6:9]])
    take_down_source(filled, new[0].source_id)
    reopened = make_catalog()
    expected = sorted(reopened.row_ids().tolist())
    assert len(expected) == 8 and new[0].source_id not in expected
    assert sorted(reopened.features.ids().tolist()) == expected
    for name in ("content", "style"):
        assert sorted(reopened.live_space(name).index.ids().tolist()) == expected


def test_another_process_sees_a_switch_without_restarting(filled, tmp_path, make_catalog):
    server = make_catalog()
    assert set(server.spaces()) == {"style"}
    path, head_id = head_checkpoint(tmp_path / "a.pt", 1)
    set_head(filled, "content", path)  # e.g. the CLI, while the server runs
    assert server.live_space("content").info.head_id == head_id and len(server.live_space("content").index) == 6


@pytest.mark.parametrize("legacy", ["raw", "checkpoint"])
def test_a_catalog_from_before_spaces_is_carried_over(make_catalog, photos, tmp_path, legacy, encoder):
    path, head_id = head_checkpoint(tmp_path / "enc.pt", 3)
    configured = encoder if legacy == "raw" else load_checkpoint(path)
    old = make_catalog(enc=configured)
    ingest(old, [IngestItem(p.name, p.stem, path=p) for p in photos[:4]])
    # what 0003 finds: the old single index with its sidecar, no spaces, no stored features
    ids = old.row_ids()
    legacy_index = build_index(ids, np.eye(len(ids), configured.dim, dtype=np.float32), configured.encoder_id)
    legacy_index.save(old.home / "index" / "vectors.faiss")
    with old.sessions.begin() as session:
        session.execute(delete(Space))
    spaces_dir = old.home / "index" / "spaces"
    for leftover in list((old.home / "features").rglob("*.npz")) + list(spaces_dir.glob("*")):
        leftover.unlink()

    carried = make_catalog(enc=configured)
    spaces = carried.spaces()
    expected = {"style"} if legacy == "raw" else {"style", "content"}
    assert set(spaces) == expected
    if legacy == "checkpoint":
        assert spaces["content"].info.head_id == head_id == spaces["content"].index.encoder_id
        if carried.config.vector_store == "faiss":
            assert json.loads(sidecar_path(carried.space_path("content")).read_text())["encoder_id"] == head_id
    assert all(len(space.index) == 4 for space in spaces.values())
    assert not (old.home / "index" / "vectors.faiss").exists()


def test_reindex_keeps_heads_of_the_same_backbone(filled, tmp_path):
    path, head_id = head_checkpoint(tmp_path / "a.pt", 1)
    set_head(filled, "content", path)
    spaces = reindex(filled)
    assert spaces["content"].head_id == head_id and spaces["content"].count == 6 and spaces["style"].count == 6
