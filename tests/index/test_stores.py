"""The Milvus store on its own (Milvus Lite): tuning to the recall target, confirmed deletes,
the build-aside swap, collection names, and errors with stable codes. The catalog-level
behaviour on both stores is in test_catalog.py, test_spaces.py and test_sweep.py."""

import uuid

import numpy as np
import pytest

from index.errors import StoreError
from index.stores import open_stores
from index.stores.names import check_store_settings, safe_name
from index.stores.tuning import exact_top_k, recall_at_k


def clustered(n: int, dim: int = 32, clusters: int = 50, seed: int = 0) -> np.ndarray:
    centres = np.random.default_rng(1234).normal(size=(clusters, dim))
    rng = np.random.default_rng(seed)
    vectors = centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def milvus(milvus_lite_uri):
    opened = []

    def _open(index_type="HNSW"):
        stores = open_stores("milvus", "unused", "Flat", milvus_uri=milvus_lite_uri, milvus_index=index_type,
                             prefix=f"u{uuid.uuid4().hex[:12]}")
        opened.append(stores)
        return stores

    yield _open
    for stores in opened:
        for space in ("a", "a-b", "a_b"):
            stores.drop(space)
        stores.close()


@pytest.mark.parametrize("index_type, knob", [("HNSW", "ef"), ("IVF_FLAT", "nprobe")])
def test_tuning_reaches_the_target_on_new_queries_and_is_kept(milvus, index_type, knob):
    stores = milvus(index_type)
    vectors, ids = clustered(4000), np.arange(4000) * 7 + 1
    store = stores.new("a", "head-1", 32, expected=len(ids))
    store.add(ids, vectors)
    store.tune(vectors, ids, 0.95)
    stores.install("a", store)
    assert set(store.info.search_params) == {knob} and store.info.recall >= 0.95
    fresh = clustered(200, seed=5)
    assert recall_at_k(store.search(fresh, 10)[1], exact_top_k(vectors, ids, fresh, 10)) >= 0.9

    reopened = stores.open("a", "head-1", 32)
    assert reopened.info.search_params == store.info.search_params and reopened.info.factory == f"milvus:{index_type}"
    assert len(reopened) == 4000 and np.array_equal(reopened.ids(), ids)
    assert stores.open("a", "head-2", 32) is None  # another head's store is rebuilt, never served


def test_removal_is_confirmed_and_counted(milvus, monkeypatch):
    stores = milvus()
    store = stores.new("a", "head", 32)
    vectors = clustered(50)
    store.add(np.arange(50), vectors)
    store.add([3], vectors[4:5])  # an id added again replaces its vector, never doubles it
    assert len(store) == 50 and np.allclose(store.vectors([3, 4]), vectors[[4, 4]], atol=1e-6)
    assert store.remove([1, 2, 999]) == 2 and store.remove([1]) == 0
    assert len(store) == 48 and 1 not in store.ids()
    assert 2 not in store.search(vectors[2:3], 48)[1]

    monkeypatch.setattr(store.client, "delete", lambda *args, **kwargs: None)  # a delete the store never applies
    with pytest.raises(StoreError) as caught:
        store.remove([5])
    assert caught.value.code == "delete_unconfirmed"


def test_a_build_aside_is_swapped_in_and_the_replaced_collection_dropped_later(milvus):
    stores = milvus()
    first = stores.new("a", "head-1", 32)
    first.add([1, 2], clustered(2))
    stores.install("a", first)
    second = stores.new("a", "head-2", 32)
    second.add([3], clustered(1))
    assert stores.open("a", "head-1", 32).collection == first.collection  # the build is aside
    stores.install("a", second)
    assert stores.open("a", "head-2", 32).ids().tolist() == [3]
    assert first.collection in stores.client.list_collections()  # requests in flight finish on it
    stores.new("a", "head-3", 32)
    assert first.collection not in stores.client.list_collections()
    stores.drop("a")
    assert not stores.exists("a") and not stores._collections("a")


def test_space_names_map_to_distinct_collections(milvus):
    stores = milvus()
    assert safe_name("a-b") != safe_name("a_b") == "a_b"
    for space in ("a-b", "a_b"):
        store = stores.new(space, "head", 8)
        store.add([len(space)], np.eye(1, 8, dtype=np.float32))
        stores.install(space, store)
    assert stores.alias("a-b") != stores.alias("a_b") and stores.exists("a-b") and stores.exists("a_b")
    assert not stores.exists("a")


@pytest.mark.parametrize("settings, code", [
    (("milvus", None, "HNSW", None), "bad_milvus_uri"),
    (("milvus", "var/vectors.txt", "HNSW", None), "bad_milvus_uri"),
    (("milvus", "ftp://host", "HNSW", None), "bad_milvus_uri"),
    (("faiss", None, "IVF", None), "bad_milvus_index"),
    (("pinecone", None, "HNSW", None), "bad_vector_store"),
    (("milvus", "x.db", "HNSW", "1-bad"), "bad_milvus_prefix"),
])
def test_bad_store_settings_are_refused_with_a_code(settings, code):
    with pytest.raises(StoreError) as caught:
        check_store_settings(*settings)
    assert caught.value.code == code


def test_settings_refuse_a_bad_uri_at_load():
    from pydantic import ValidationError

    from app.settings import Settings

    with pytest.raises(ValidationError, match="bad_milvus_uri"):
        Settings(vector_store="milvus", milvus_uri="vectors.txt")
    assert Settings(vector_store="milvus", milvus_uri="http://milvus:19530").catalog_config().vector_store == "milvus"


def test_an_unreachable_server_is_a_clear_error(milvus_lite_uri):
    with pytest.raises(StoreError) as caught:
        open_stores("milvus", "unused", "Flat", milvus_uri="http://127.0.0.1:1", prefix="x")
    assert caught.value.code == "milvus_unreachable" and caught.value.status == 503


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("vector_store", ["milvus"], indirect=True)
def test_a_takedown_is_not_acknowledged_until_milvus_confirms_the_delete(make_catalog, photos, monkeypatch):
    from sqlalchemy import select

    from index.catalog import take_down_source
    from index.db import Takedown
    from index.ingest import IngestItem, ingest
    from index.jobs import sweep

    catalog = make_catalog()
    results = ingest(catalog, [IngestItem(p.name, p.stem, path=p) for p in photos[:3]])
    victim = results[1].source_id
    store = catalog.live_space("style").index
    monkeypatch.setattr(store.client, "delete", lambda *args, **kwargs: None)
    with pytest.raises(StoreError) as caught:
        take_down_source(catalog, victim)
    assert caught.value.code == "delete_unconfirmed" and caught.value.status == 503
    with catalog.sessions() as session:
        assert session.scalars(select(Takedown.state)).one() == "pending"
    monkeypatch.undo()

    assert sweep(catalog, min_age=60)["takedowns_finished"] == 1
    assert victim not in make_catalog().live_space("style").index.ids()


def test_a_connection_turned_away_fast_is_tried_again(monkeypatch):
    """Milvus Lite under load can answer a new connection with GOAWAY ("too_many_pings"): a
    refusal that comes fast is tried again, up to CONNECT_ATTEMPTS times in all."""
    import pymilvus
    from pymilvus.exceptions import MilvusException

    from index.stores import milvus_client

    calls = []

    def turned_away(times):
        def client(**kwargs):
            calls.append(kwargs)
            if len(calls) <= times:
                raise MilvusException(message="Fail connecting to server: GOAWAY too_many_pings")
            return "client"
        return client

    monkeypatch.setattr(pymilvus, "MilvusClient", turned_away(2))
    assert milvus_client.connect("http://127.0.0.1:19530", timeout=5) == "client" and len(calls) == 3
    calls.clear()
    monkeypatch.setattr(pymilvus, "MilvusClient", turned_away(3))
    with pytest.raises(StoreError) as caught:
        milvus_client.connect("http://127.0.0.1:19530", timeout=5)
    assert caught.value.code == "milvus_unreachable" and "GOAWAY" in caught.value.message and len(calls) == 3
