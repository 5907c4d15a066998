"""Search tuning to a recall target, memory-mapped loading, and index advice."""

import faiss
import numpy as np
import pytest

from index.stores import advise
from index.stores.tuning import exact_top_k, recall_at_k, walk_knob
from index.stores.vectors import VectorIndex, build_index


def clustered(n: int, dim: int = 32, clusters: int = 50, seed: int = 0) -> np.ndarray:
    """Unit vectors around fixed cluster centres; `seed` draws other points of the same mixture."""
    centres = np.random.default_rng(1234).normal(size=(clusters, dim))
    rng = np.random.default_rng(seed)
    vectors = centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_exact_top_k_matches_a_full_sort_across_chunks():
    vectors, queries = clustered(1000), clustered(7, seed=1)
    ids = np.arange(1000) * 3 + 11
    found = exact_top_k(vectors, ids, queries, 5, chunk=128)
    expected = ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :5]]
    assert [sorted(row) for row in found.tolist()] == [sorted(row) for row in expected.tolist()]


def test_recall_counts_the_overlap_with_the_truth():
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 9, 9], [5, 6, 7, -1]])
    assert recall_at_k(found, truth) == pytest.approx((2 / 4 + 3 / 4) / 2)


def test_tuning_reaches_the_target_on_new_queries_and_is_kept_on_disk(tmp_path):
    vectors = clustered(6000)
    index = build_index(np.arange(6000), vectors, "enc", "IVF64,Flat", target_recall=0.95)
    nprobe = index.info.search_params["nprobe"]
    assert 1 < nprobe < 64 and index.info.recall >= 0.95
    fresh = clustered(300, seed=5)  # new points of the same mixture: queries the tuning never saw
    truth = exact_top_k(vectors, np.arange(6000), fresh, 10)
    assert recall_at_k(index.search(fresh, 10)[1], truth) >= 0.9

    index.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    assert faiss.extract_index_ivf(loaded.index).nprobe == nprobe
    assert loaded.info.search_params == {"nprobe": nprobe}


def test_a_lower_target_buys_a_cheaper_setting():
    vectors = clustered(6000)
    cheap = build_index(np.arange(6000), vectors, "enc", "IVF64,Flat", target_recall=0.5)
    strict = build_index(np.arange(6000), vectors, "enc", "IVF64,Flat", target_recall=0.99)
    assert cheap.info.search_params["nprobe"] < strict.info.search_params["nprobe"]


def test_a_knob_that_stops_gaining_stops_the_walk_and_says_so(caplog):
    truth = np.arange(10)[None]
    capped = np.array([[0, 1, 2, 3, 4, 5, -1, -1, -1, -1]])  # recall 0.6 whatever the value

    def search_with(value):
        searched.append(value)
        return capped

    searched = []
    tuning = walk_knob("nprobe", [1, 2, 4, 8, 16], search_with, truth, 0.99)
    assert searched == [1, 2] and tuning.params == {"nprobe": 2} and tuning.recall == 0.6
    assert "short of the 0.99 target" in caplog.text


def test_hnsw_ef_search_is_tuned_and_exact_indexes_are_left_alone():
    vectors = clustered(3000)
    hnsw = build_index(np.arange(3000), vectors, "enc", "HNSW16", target_recall=0.95)
    assert set(hnsw.info.search_params) == {"efSearch"} and hnsw.info.recall >= 0.95
    flat = build_index(np.arange(3000), vectors, "enc", "Flat")
    assert flat.info.search_params == {} and flat.info.recall is None


@pytest.mark.parametrize("factory", ["IVF32,Flat", "Flat", "HNSW16"])
def test_a_mapped_index_searches_from_disk_and_loads_into_memory_to_change(tmp_path, factory):
    vectors = clustered(4000)
    ids = np.arange(4000) + 100
    path = tmp_path / "v.faiss"
    build_index(ids, vectors, "enc", factory).save(path)
    mapped = VectorIndex.load(path, mmap=True)
    assert mapped.mapped_from == path
    in_memory = VectorIndex.load(path)
    assert np.array_equal(mapped.search(vectors[:20], 5)[1], in_memory.search(vectors[:20], 5)[1])
    if "IVF" not in factory:  # IVF keeps no map from id to vector (index/stores/factories.py)
        assert np.array_equal(mapped.vectors_of([100, 200]), in_memory.vectors_of([100, 200]))

    assert mapped.remove([100, 101]) == 2  # the first write loads it; the file is untouched
    assert mapped.mapped_from is None and len(mapped) == 3998
    assert 100 not in mapped.search(vectors[:1], 10)[1]
    mapped.add([100], vectors[:1])
    assert mapped.search(vectors[:1], 1)[1][0, 0] == 100
    assert len(VectorIndex.load(path, mmap=True)) == 4000
    assert VectorIndex.load(path, mmap=True).search(vectors[:1], 1)[1][0, 0] == 100


@pytest.mark.parametrize("n, kind", [(5_000, "Flat"), (500_000, "IVF"), (10_000_000, "RR512,IVF8192_HNSW32,PQ64")])
def test_advice_picks_by_size_and_builds_a_valid_factory(n, kind):
    advice = advise(n, 512)
    assert advice.factory.startswith(kind)
    faiss.index_factory(512, advice.factory, faiss.METRIC_INNER_PRODUCT)  # a string FAISS accepts
    assert advice.memory_bytes >= n * 8


def test_advice_keeps_ten_million_vectors_under_a_gigabyte():
    assert advise(10_000_000, 512).memory_bytes < 1024**3
    assert advise(10_000_000, 512).bytes_per_vector == 80  # codes, list ids, re-ranking ids
