"""A factory that trains (IVF, PQ) on a catalog still too small to train it: writes succeed, the
space is searched exactly meanwhile, and the factory takes over once there are enough vectors."""

import json

import pytest


def top_source(api, data) -> str:
    response = api.attribute(data)
    assert response.status_code == 200, response.text
    return response.json()["spaces"]["style"]["concepts"][0]["sources"][0]["filename"]


@pytest.mark.parametrize("factory", ["IVF8,Flat", "IVF2,PQ8"])
def test_a_small_catalog_under_an_ivf_factory_indexes_and_ranks(start_api, corpus, edit, factory):
    first = start_api(index_factory=factory)
    response = first.index(corpus[:3])
    assert response.status_code == 200, response.text
    assert response.json()["indexed"] == 3
    assert top_source(first, edit(corpus[1])) == corpus[1].name
    first.close()

    second = start_api(index_factory=factory)  # restarted: the staged vectors were saved
    sidecar = second.app.state.catalog.home / "index" / "spaces" / "style.faiss.json"
    assert json.loads(sidecar.read_text())["staged"] is True
    assert top_source(second, edit(corpus[2])) == corpus[2].name
    assert second.index(corpus[3:]).json()["indexed"] == 9
    assert top_source(second, edit(corpus[7])) == corpus[7].name
    if factory.endswith(",Flat"):  # 12 vectors train 8 lists; 256 PQ centroids still wait
        second.app.state.catalog.flush()
        assert json.loads(sidecar.read_text())["staged"] is False
