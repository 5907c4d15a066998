"""The feature store: immutable float16 segments, removal by rewrite, crash-safe, merged when many."""

import numpy as np

from index.catalog import FeatureStore
from index.catalog import features as features_module


def rows(n, dim=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_add_get_remove_and_reopen(tmp_path):
    store = FeatureStore(tmp_path, "bb", 8)
    data = rows(10)
    store.add(np.arange(1, 6), data[:5])
    store.add(np.arange(6, 11), data[5:])
    assert sorted(store.ids().tolist()) == list(range(1, 11)) and len(store) == 10
    ids, found = store.get([2, 7, 99])
    assert ids.tolist() == [2, 7] and found.dtype == np.float16
    assert np.allclose(found, data[[1, 6]], atol=1e-2)

    assert store.remove([3, 7, 42]) == 2
    reopened = FeatureStore(tmp_path, "bb", 8)
    assert sorted(reopened.ids().tolist()) == [1, 2, 4, 5, 6, 8, 9, 10]
    assert np.allclose(reopened.get([8])[1], data[[7]], atol=1e-2)
    assert sum(len(ids) for ids, _ in reopened.chunks()) == 8


def test_a_crash_between_rewrite_and_delete_never_brings_removed_rows_back(tmp_path, monkeypatch):
    store = FeatureStore(tmp_path, "bb", 8)
    store.add([1, 2, 3], rows(3))
    monkeypatch.setattr(features_module.Path, "unlink", lambda *a, **k: None)  # the process dies here
    store.remove([2])
    monkeypatch.undo()
    assert len(list((tmp_path / "bb").glob("seg-*.npz"))) == 2  # old and rewritten segment both on disk

    reopened = FeatureStore(tmp_path, "bb", 8)
    assert sorted(reopened.ids().tolist()) == [1, 3]
    assert len(list((tmp_path / "bb").glob("seg-*.npz"))) == 1


def test_many_small_segments_are_merged(tmp_path, monkeypatch):
    monkeypatch.setattr(features_module, "MAX_SEGMENTS", 4)
    store = FeatureStore(tmp_path, "bb", 8)
    data = rows(12)
    for i in range(6):
        store.add([2 * i + 1, 2 * i + 2], data[2 * i:2 * i + 2])
    assert len(list((tmp_path / "bb").glob("seg-*.npz"))) <= 4
    ids, found = FeatureStore(tmp_path, "bb", 8).get(range(1, 13))
    assert sorted(ids.tolist()) == list(range(1, 13))
    order = np.argsort(ids)
    assert np.allclose(found[order], data, atol=1e-2)


def test_wrong_shapes_are_refused(tmp_path):
    store = FeatureStore(tmp_path, "bb", 8)
    try:
        store.add([1, 2], rows(2, dim=7))
    except ValueError as exc:
        assert "shape" in str(exc)
    else:
        raise AssertionError("a feature row of the wrong width was stored")
    assert len(store) == 0


def test_readers_see_whole_snapshots_while_writers_merge_and_remove(tmp_path, monkeypatch):
    """Issue 25, item 1: a calibration fit read segments while ingestion merged and deleted them,
    and got a KeyError or a FileNotFoundError (a 500). Readers in this process and in another
    (a second store object on the same folder) now read whole snapshots."""
    import threading
    import time

    monkeypatch.setattr(features_module, "MAX_SEGMENTS", 3)
    monkeypatch.setattr(features_module, "MERGE_BELOW_ROWS", 10**6)
    writer_store, other_process = FeatureStore(tmp_path, "bb", 8), FeatureStore(tmp_path, "bb", 8)
    writer_store.add(np.arange(1, 4), rows(3))
    errors, stop, reads = [], threading.Event(), [0]

    def write():
        next_id = 4
        while not stop.is_set():
            writer_store.add(np.arange(next_id, next_id + 3), rows(3, seed=next_id))  # merges past 3 segments
            writer_store.remove([next_id - 2])
            next_id += 3

    def read(store):
        try:
            while not stop.is_set():
                store.refresh() if store is other_process else None
                seen = [ids for ids, _ in store.chunks()]
                found, features = store.get(np.arange(1, 10**6))
                assert len(found) == len(features) and len(np.unique(found)) == len(found)
                assert all(len(np.unique(ids)) == len(ids) for ids in seen)
                reads[0] += 1
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            errors.append(repr(exc))
            stop.set()

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read, args=(s,))
                                                   for s in (writer_store, writer_store, other_process)]
    for thread in threads:
        thread.start()
    time.sleep(4)
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == [] and reads[0] > 20
