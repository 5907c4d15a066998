"""ingest -> attribute -> takedown -> restart against the real Milvus standalone server that the
`milvus` wheel bundles (`milvus-server`), in its own process group, stopped by group.

Skipped, saying why, only when the wheel is not installed (it is in the `test` extra, so CI runs it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.settings import Settings
from tests.app.conftest import Api, edited_copy
from tests.conftest import free_port, wait_for_milvus

SERVER = Path(sys.executable).parent / "milvus-server"
pytestmark = pytest.mark.skipif(not SERVER.exists(), reason=f"the `milvus` wheel is not installed ({SERVER} is "
                                "missing): pip install -e '.[test]'")


@contextmanager
def milvus_standalone(data: Path, log: Path):
    """The standalone server on free ports, until it answers; then SIGTERM (and SIGKILL) to its
    whole process group: SIGTERM alone leaves its `milvus` child running."""
    port = free_port()
    command = [str(SERVER), "--data", str(data), "--proxy-port", str(port), "--etcd-port", str(free_port())]
    with log.open("ab") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_milvus(uri, server, 180, log)
        yield uri, server
    finally:
        _stop_group(server)


def _stop_group(server: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(wait)
            os.killpg(server.pid, 0)  # raises once nothing of the group is left
        except (subprocess.TimeoutExpired, PermissionError):
            continue
        except ProcessLookupError:
            return
        time.sleep(1)


def top_source(api: Api, query: bytes) -> int:
    return api.attribute(query).json()["spaces"]["style"]["concepts"][0]["sources"][0]["id"]


def test_ingest_attribute_takedown_restart(postgres_url, photos, tmp_path):
    corpus = photos[200:206]
    data, log = tmp_path / "milvus", tmp_path / "milvus-server.log"

    def start(uri: str) -> Api:
        return Api(Settings(home=tmp_path / "home", database_url=postgres_url, device="cpu", batch_size=8,
                            vector_store="milvus", milvus_uri=uri, milvus_prefix="standalone"))

    with milvus_standalone(data, log) as (uri, server):
        api = start(uri)
        ids = [r["source_id"] for r in api.index(corpus).json()["results"]]
        assert top_source(api, edited_copy(corpus[3])) == ids[3]
        response = api.client.delete(f"/sources/{ids[3]}", headers=api.auth)
        assert response.status_code == 200 and response.json()["deleted_sources"] == 1
        assert top_source(api, edited_copy(corpus[3])) != ids[3]
        assert api.client.get("/readyz").json()["checks"]["vector_store"] == "ok"
        _stop_group(server)  # Milvus goes away under a running app: readiness says so
        ready = api.client.get("/readyz")
        assert ready.status_code == 503 and "Milvus" in ready.json()["checks"]["vector_store"]
        api.close()

    with milvus_standalone(data, log) as (uri, _server):  # the server and the app both restart; the data stays
        api = start(uri)
        assert api.client.get("/readyz").status_code == 200
        assert top_source(api, edited_copy(corpus[2])) == ids[2]
        returned = {s["id"] for c in api.attribute(edited_copy(corpus[3]), k=10).json()["spaces"]["style"]["concepts"]
                    for s in c["sources"]}
        assert ids[3] not in returned and set(ids) - {ids[3]} <= returned
        api.close()
