"""A space is built in a stream: memory does not grow with the catalog (index/catalog/spaces.py)."""

import numpy as np

import index.catalog.spaces as spaces_module
from index.catalog import FeatureStore
from index.catalog.spaces import build_index
from index.stores.faiss_store import FaissSpaces
from index.stores.tuning import exact_top_k, recall_at_k
from training.heads import Head


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, dim))
    return (centres[rng.integers(0, 30, n)] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)


def test_the_first_rows_train_the_index_then_each_segment_is_added_alone(tmp_path, monkeypatch):
    store = FeatureStore(tmp_path / "features", "backbone", 32)
    features, queries = np.split(clustered(1250), [1200])  # the last 50: held-out queries
    for start in range(0, 1200, 200):  # six segments
        store.add(np.arange(start, start + 200) + 10, features[start:start + 200])
    monkeypatch.setattr(spaces_module, "TRAIN_ROWS", 300)
    added = []
    built = None

    def spy(stores):
        original = stores.new

        def new(*args, **kwargs):
            nonlocal built
            built = original(*args, **kwargs)
            add = built.add
            built.add = lambda ids, vectors: (added.append(len(ids)), add(ids, vectors))
            return built
        return new

    stores = FaissSpaces(tmp_path / "spaces", "IVF8,PQ8")
    monkeypatch.setattr(stores, "new", spy(stores))
    index = build_index(store, Head.identity("backbone", 32), stores, "style", target_recall=0.95)

    assert added == [400, 200, 200, 200, 200]  # the training rows together, then segment by segment
    assert set(index.ids().tolist()) == set(range(10, 1210))
    assert index.info.recall >= 0.95 and set(index.info.search_params) == {"nprobe", "k_factor"}
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    assert recall_at_k(index.search(queries, 10)[1], exact_top_k(unit, np.arange(10, 1210), queries, 10)) >= 0.9
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == ["backbone"]  # no scratch left behind
