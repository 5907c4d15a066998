"""Catalog behaviour on both SQLite and PostgreSQL, with the real encoder and real photos."""

import numpy as np
import pytest

from index.catalog import CatalogError, NotFoundError
from index.ingest import IngestItem, ingest
from training.encoders import create_encoder


def items_for(paths, concept=None):
    return [IngestItem(p.name, concept or p.stem, path=p) for p in paths]


def query_vector(catalog, path):
    from index.images import decode_image

    return catalog.encoder.embed_images([decode_image(path.read_bytes()).image])[0]


def test_ingest_indexes_skips_duplicates_and_rejects_bad_files(make_catalog, photos, tmp_path):
    catalog = make_catalog()
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(photos[0].read_bytes()[:500])
    items = items_for(photos[:3]) + [IngestItem("broken.jpg", "x", path=corrupt), items_for(photos[:1])[0]]
    results = ingest(catalog, items)

    assert [r.status for r in results] == ["indexed", "indexed", "indexed", "rejected", "duplicate"]
    assert results[3].code == "corrupt_image"
    assert results[4].source_id == results[0].source_id
    again = ingest(catalog, items_for(photos[:2]))
    assert [(r.status, r.source_id) for r in again] == [("duplicate", results[0].source_id), ("duplicate", results[1].source_id)]
    assert catalog.count() == 3 and len(catalog.vectors) == 3


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
        assert catalog.search(query_vector(catalog, path), 1)[0].source_id == result.source_id

    reopened = make_catalog()
    hit = reopened.search(query_vector(reopened, photos[5]), 3)[0]
    assert hit.source_id == results[5].source_id and hit.score == pytest.approx(1.0, abs=1e-4)
    assert all(-1.0 <= h.score <= 1.0 for h in reopened.search(query_vector(reopened, photos[5]), 12))


def test_same_image_in_two_concepts_shares_one_blob(make_catalog, photos):
    catalog = make_catalog()
    first = ingest(catalog, items_for(photos[:1], "artist a"))[0]
    second = ingest(catalog, items_for(photos[:1], "artist b"))[0]
    assert first.status == second.status == "indexed" and first.source_id != second.source_id
    with catalog.sessions() as session:
        from index.models import Source

        sha = session.get(Source, first.source_id).sha256
    blob = catalog.blobs.path(sha)

    catalog.remove_sources([first.source_id])
    assert blob.is_file()
    assert catalog.remove_concept("artist b") == 1
    assert not blob.exists()
    assert catalog.count() == 0 and len(catalog.vectors) == 0


def test_removed_sources_never_come_back(make_catalog, photos):
    catalog = make_catalog()
    results = ingest(catalog, items_for(photos[:6]))
    catalog.remove_sources([results[2].source_id])
    hits = catalog.search(query_vector(catalog, photos[2]), 10)
    assert results[2].source_id not in {h.source_id for h in hits}
    assert results[2].source_id not in set(make_catalog().vectors.ids())
    with pytest.raises(NotFoundError):
        catalog.remove_concept("no such concept")


def test_reconcile_repairs_a_crash_between_rows_and_vectors(make_catalog, photos):
    catalog = make_catalog()
    results = ingest(catalog, items_for(photos[:4]))
    # a crash after the rows were committed but before the vectors were saved
    catalog.vectors.remove([results[0].source_id])
    catalog.vectors.save(catalog.index_path)
    # and a vector whose row is gone
    catalog.vectors.add([999_999], np.ones((1, catalog.encoder.dim), np.float32) / np.sqrt(catalog.encoder.dim))
    catalog.vectors.save(catalog.index_path)

    reopened = make_catalog()
    assert sorted(reopened.vectors.ids()) == sorted(r.source_id for r in results)


def test_index_from_another_encoder_is_refused_until_reindex(make_catalog, photos):
    catalog = make_catalog()
    ingest(catalog, items_for(photos[:3]))
    other = create_encoder(head_config={"type": "linear", "out_dim": 64})
    mismatched = make_catalog(enc=other)
    with pytest.raises(CatalogError, match="attrib reindex") as caught:
        mismatched.vectors
    assert caught.value.code == "encoder_mismatch"

    rebuilt = mismatched.reindex()
    assert rebuilt.encoder_id == other.encoder_id and len(rebuilt) == 3 and rebuilt.dim == 64
    assert len(make_catalog(enc=other).vectors) == 3


@pytest.mark.parametrize("factory", ["HNSW32", "IVF2,Flat"])
def test_other_index_types_go_through_the_same_code(make_catalog, photos, factory):
    catalog = make_catalog(factory=factory)
    results = ingest(catalog, items_for(photos[:10]))
    catalog.remove_sources([results[0].source_id])
    reopened = make_catalog(factory=factory)
    assert reopened.vectors.info.factory == factory
    assert reopened.search(query_vector(reopened, photos[3]), 1)[0].source_id == results[3].source_id


def test_concurrent_ingests_of_the_same_files_index_each_once(make_catalog, photos):
    from concurrent.futures import ThreadPoolExecutor

    catalog = make_catalog()
    items = items_for(photos[:4])
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(lambda _: ingest(catalog, items), range(2))
    assert catalog.count() == 4 and len(catalog.vectors) == 4
    for a, b in zip(first, second):
        assert {a.status, b.status} <= {"indexed", "duplicate"} and a.source_id == b.source_id
    assert sum(r.status == "indexed" for r in first + second) == 4
