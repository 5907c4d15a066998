"""Catalog behaviour on both SQLite and PostgreSQL and on both vector stores (FAISS, Milvus Lite),
with the real encoder and real photos."""

import numpy as np
import pytest

from index.catalog import take_down_concept, take_down_source
from index.errors import CatalogError, NotFoundError
from index.ingest import IngestItem, ingest
from training.encoders import create_encoder

pytestmark = pytest.mark.both_stores


def items_for(paths, concept=None):
    return [IngestItem(p.name, concept or p.stem, path=p) for p in paths]


def query_vector(catalog, path, space="style"):
    from index.images import decode_image

    features = catalog.encoder.embed_features([decode_image(path.read_bytes()).image])
    return catalog.live_space(space).head.apply(features)[0]


def search(catalog, path, k, space="style"):
    return catalog.search(catalog.live_space(space), query_vector(catalog, path, space), k)


def style_ids(catalog):
    return set(catalog.live_space("style").index.ids().tolist())


def test_ingest_indexes_skips_duplicates_and_rejects_bad_files(make_catalog, photos, tmp_path, vector_store):
    catalog = make_catalog()
    assert type(catalog.live_space("style").index).__module__ == f"index.stores.{vector_store}_store"
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(photos[0].read_bytes()[:500])
    items = items_for(photos[:3]) + [IngestItem("broken.jpg", "x", path=corrupt), items_for(photos[:1])[0]]
    results = ingest(catalog, items)

    assert [r.status for r in results] == ["indexed", "indexed", "indexed", "rejected", "duplicate"]
    assert results[3].code == "corrupt_image"
    assert results[4].source_id == results[0].source_id
    again = ingest(catalog, items_for(photos[:2]))
    assert [(r.status, r.source_id) for r in again] == [("duplicate", results[0].source_id), ("duplicate", results[1].source_id)]
    assert catalog.count() == 3 and len(style_ids(catalog)) == 3 and len(catalog.features) == 3


def test_rejections_name_the_problem(make_catalog, tmp_path, photos):
    catalog = make_catalog()
    results = ingest(catalog, [
        IngestItem("gone.jpg", "c", path=tmp_path / "gone.jpg"),
        IngestItem("empty.jpg", "c", data=b""),
        IngestItem("nameless.jpg", "  ", path=photos[0]),
    ])
    assert [r.code for r in results] == ["unreadable_file", "empty_file", "missing_concept"]
    assert all(r.status == "rejected" and r.reason for r in results)


def test_search_finds_each_source_first_and_survives_reopening(make_catalog, photos):
    catalog = make_catalog()
    results = ingest(catalog, items_for(photos[:12]))
    for path, result in zip(photos[:12:4], results[::4]):
        assert search(catalog, path, 1)[0].source_id == result.source_id

    reopened = make_catalog()
    hit = search(reopened, photos[5], 3)[0]
    assert hit.source_id == results[5].source_id and hit.score == pytest.approx(1.0, abs=1e-3)
    assert all(-1.0 <= h.score <= 1.0 for h in search(reopened, photos[5], 12))


def test_same_image_in_two_concepts_shares_one_blob(make_catalog, photos):
    catalog = make_catalog()
    first = ingest(catalog, items_for(photos[:1], "artist a"))[0]
    second = ingest(catalog, items_for(photos[:1], "artist b"))[0]
    assert first.status == second.status == "indexed" and first.source_id != second.source_id
    with catalog.sessions() as session:
        from index.db import Source

        sha = session.get(Source, first.source_id).sha256
    blob = catalog.blobs.path(sha)

    take_down_source(catalog, first.source_id)
    assert blob.is_file()
    assert take_down_concept(catalog, "artist b").sources == 1
    assert not blob.exists()
    assert catalog.count() == 0 and style_ids(catalog) == set() and len(catalog.features) == 0


def test_removed_sources_never_come_back(make_catalog, photos):
    catalog = make_catalog()
    results = ingest(catalog, items_for(photos[:6]))
    take_down_source(catalog, results[2].source_id)
    hits = search(catalog, photos[2], 10)
    assert results[2].source_id not in {h.source_id for h in hits}
    reopened = make_catalog()
    assert results[2].source_id not in style_ids(reopened) | set(reopened.features.ids().tolist())
    with pytest.raises(NotFoundError):
        take_down_concept(catalog, "no such concept")


def test_reconcile_repairs_a_crash_at_any_point_of_a_write(make_catalog, photos):
    catalog = make_catalog()
    results = ingest(catalog, items_for(photos[:4]))
    ids = sorted(r.source_id for r in results)
    space = catalog.live_space("style")
    # rows committed, but the features never written (crash before the feature segment landed)
    catalog.features.remove([ids[0]])
    # features written, but the space's index not saved yet
    space.index.remove([ids[1]])
    # a vector and features whose rows are gone
    space.index.add([999_999], np.ones((1, space.head.dim), np.float32) / np.sqrt(space.head.dim))
    catalog.features.add([999_998], np.ones((1, catalog.feature_dim), np.float32))
    space.index.flush()

    reopened = make_catalog()
    assert sorted(reopened.features.ids().tolist()) == ids
    assert sorted(style_ids(reopened)) == ids
    assert search(reopened, photos[0], 1)[0].source_id == results[0].source_id


def test_another_backbone_is_refused_until_reindex(make_catalog, photos):
    catalog = make_catalog()
    ingest(catalog, items_for(photos[:3]))
    other = create_encoder(random_init=True)
    mismatched = make_catalog(enc=other)
    with pytest.raises(CatalogError, match="attrib reindex") as caught:
        mismatched.spaces()
    assert caught.value.code == "encoder_mismatch"

    from index.catalog import reindex

    spaces = reindex(mismatched)
    assert spaces["style"].head_id == other.backbone_id and spaces["style"].count == 3
    assert len(make_catalog(enc=other).live_space("style").index) == 3


MILVUS_INDEX = {"HNSW32": "HNSW", "IVF2,Flat": "IVF_FLAT"}


@pytest.mark.parametrize("factory", ["HNSW32", "IVF2,Flat"])
def test_other_index_types_go_through_the_same_code(make_catalog, photos, factory, vector_store):
    kind = {"factory": factory} if vector_store == "faiss" else {"milvus_index": MILVUS_INDEX[factory]}
    catalog = make_catalog(**kind)
    results = ingest(catalog, items_for(photos[:10]))
    take_down_source(catalog, results[0].source_id)
    reopened = make_catalog(**kind)
    expected = factory if vector_store == "faiss" else f"milvus:{MILVUS_INDEX[factory]}"
    assert reopened.live_space("style").index.info.factory == expected
    assert reopened.live_space("style").info.factory == expected
    assert search(reopened, photos[3], 1)[0].source_id == results[3].source_id


def test_concurrent_ingests_of_the_same_files_index_each_once(make_catalog, photos):
    from concurrent.futures import ThreadPoolExecutor

    catalog = make_catalog()
    items = items_for(photos[:4])
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(lambda _: ingest(catalog, items), range(2))
    assert catalog.count() == 4 and len(style_ids(catalog)) == 4 and len(catalog.features) == 4
    for a, b in zip(first, second):
        assert {a.status, b.status} <= {"indexed", "duplicate"} and a.source_id == b.source_id
    assert sum(r.status == "indexed" for r in first + second) == 4
