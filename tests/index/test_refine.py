"""Re-ranking of product-quantised indexes against float16 vectors on disk (index/stores/refine.py)."""

import numpy as np
import pytest

from index.stores import sidecar_path
from index.stores.factories import VectorIndexError
from index.stores.faiss_store import FaissSpaces
from index.stores.refine import RefineStore
from index.stores.tuning import exact_top_k, recall_at_k
from index.stores.vectors import VectorIndex, build_index

FACTORY = "IVF16,PQ8"


def clustered(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def refine_files(directory, stem="v.faiss"):
    return sorted(p.name for p in directory.glob(f"{stem}.refine-*"))


@pytest.fixture(scope="module")
def built():
    vectors = clustered(8200)  # the last 200 are held out as queries
    ids = np.arange(8000) * 7 + 3  # not the row numbers
    return ids, vectors, build_index(ids, vectors[:8000], "enc", FACTORY, target_recall=0.95)


def test_re_ranking_reaches_a_recall_that_the_codes_alone_miss(built):
    ids, vectors, index = built
    queries, vectors = vectors[8000:], vectors[:8000]  # not the tuning's queries
    truth = exact_top_k(vectors, ids, queries, 10)
    assert index.info.search_params["k_factor"] > 1 and index.info.recall >= 0.95
    assert recall_at_k(index.search(queries, 10)[1], truth) >= 0.93
    codes_alone = index.index.search(queries, 10)[1]
    assert recall_at_k(codes_alone, truth) < 0.8
    scores, found = index.search(vectors[:20], 3)
    assert found[:, 0].tolist() == ids[:20].tolist()  # exact scores: each vector finds itself
    assert np.allclose(scores[:, 0], 1.0, atol=2e-3)


def test_saved_beside_the_index_and_loaded_with_it(built, tmp_path):
    ids, vectors, index = built
    index.save(tmp_path / "v.faiss")
    token = index.info.refine
    assert refine_files(tmp_path) == [f"v.faiss.refine-{token}.f16", f"v.faiss.refine-{token}.ids"]
    for mmap in (False, True):
        loaded = VectorIndex.load(tmp_path / "v.faiss", mmap=mmap)
        assert loaded.info == index.info
        assert np.array_equal(loaded.search(vectors[:50], 5)[1], index.search(vectors[:50], 5)[1])


def test_a_removed_vector_leaves_no_copy_on_disk(tmp_path):
    vectors = clustered(2000)
    index = build_index(np.arange(2000), vectors, "enc", FACTORY)
    path = tmp_path / "v.faiss"
    index.save(path)
    index = VectorIndex.load(path, mmap=True)
    assert index.remove([5, 6]) == 2
    index.save(path)
    rows = np.fromfile(index.refine.paths()[0], np.float16).reshape(-1, 64)[index.refine.rows_of([5, 6, 7])]
    assert not rows[0].any() and not rows[1].any() and rows[2].any()
    reloaded = VectorIndex.load(path)
    assert 5 not in reloaded.search(vectors[5:6], 50)[1]
    assert reloaded.search(vectors[7:8], 1)[1][0, 0] == 7


def test_missing_or_cut_short_files(tmp_path):
    path = tmp_path / "v.faiss"
    build_index(np.arange(2000), clustered(2000), "enc", FACTORY).save(path)
    vectors_file, ids_file = VectorIndex.load(path).refine.paths()
    with open(vectors_file, "ab") as f:  # an append that a crash cut short: half a row
        f.write(b"\1" * 64)
    assert len(VectorIndex.load(path).refine) == 2000 and vectors_file.stat().st_size == 2000 * 128
    ids_file.unlink()  # gone: the catalog rebuilds the space from its features
    with pytest.raises(VectorIndexError, match="re-ranking vectors"):
        VectorIndex.load(path)


def test_ids_in_any_order_and_the_last_row_of_an_id_wins():
    store = RefineStore(4)
    store.append([9, 3, 7], np.eye(3, 4))
    store.append([3], [[0, 0, 0, 1]])
    assert store.rows_of([3, 7, 9, 4]).tolist() == [3, 2, 0, -1]
    assert store.read(store.rows_of([3]))[0].tolist() == [0, 0, 0, 1]
    scores, found = store.rerank(np.array([[0, 0, 0, 1.0]], np.float32), np.array([[9, 3, 7, -1, 12]]), 3)
    assert found[0, 0] == 3 and set(found[0, 1:].tolist()) == {7, 9} and scores[0, 0] == 1.0  # 12: unknown


def test_compaction_drops_dead_rows_and_the_old_files(tmp_path):
    path = tmp_path / "v.faiss"
    index = build_index(np.arange(30_000), clustered(30_000, dim=32), "enc", "IVF16,PQ4")
    index.save(path)
    old = index.info.refine
    index.remove(np.arange(25_000))
    index.save(path)
    assert index.info.refine != old and len(index.refine) == 5000
    assert refine_files(tmp_path) == sorted(p.name for p in index.refine.paths())
    assert VectorIndex.load(path).search(clustered(30_000, dim=32)[29_999:], 1)[1][0, 0] == 29_999


def test_the_faiss_store_spools_beside_the_space_and_cleans_up(tmp_path):
    spaces = FaissSpaces(tmp_path, FACTORY)
    leftover = tmp_path / "style.faiss.refine-crashedbuild.f16"
    leftover.write_bytes(b"")
    built = spaces.new("style", "head", 64)
    built.add(np.arange(2000), clustered(2000))
    assert len(refine_files(tmp_path, "style.faiss")) == 3  # written while building, before install
    spaces.install("style", built)
    assert not leftover.exists() and len(refine_files(tmp_path, "style.faiss")) == 2
    assert len(spaces.open("style", "head", 64)) == 2000
    spaces.drop("style")
    assert refine_files(tmp_path, "style.faiss") == [] and not sidecar_path(spaces.path("style")).exists()


def test_a_catalog_space_on_a_compressed_index(make_catalog, photos):
    from index.catalog import take_down_source
    from index.ingest import IngestItem, ingest

    catalog = make_catalog(factory="IVF2,PQ8x2")
    results = ingest(catalog, [IngestItem(p.name, p.stem, path=p) for p in photos[:10]])
    take_down_source(catalog, results[0].source_id)
    reopened = make_catalog(factory="IVF2,PQ8x2")
    space = reopened.live_space("style")
    assert space.index.refine is not None and len(space.index) == 9
    assert space.index.vectors_of([results[0].source_id]).any() == np.False_  # its row is zeros
    from index.images import decode_image

    features = reopened.encoder.embed_features([decode_image(photos[3].read_bytes()).image])
    hits = reopened.search(space, space.head.apply(features)[0], 1)
    assert hits[0].source_id == results[3].source_id
