"""The real app (TestClient runs its lifespan) on both databases, with a key for writes."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from index.auth import create_key


@pytest.fixture
def make_settings(tmp_path, database_url, store_settings):
    def _make(**overrides) -> Settings:
        values = dict(home=tmp_path / "home", database_url=database_url, device="cpu", batch_size=8,
                      async_batch_files=16, max_upload_bytes=2_000_000, max_request_bytes=20_000_000,
                      **store_settings)
        return Settings(**(values | overrides))

    return _make


class Api:
    """A running app plus a valid API key."""

    def __init__(self, settings: Settings):
        self.app = create_app(settings)
        self.client = TestClient(self.app, raise_server_exceptions=False)
        self.client.__enter__()
        self.key = create_key(self.app.state.catalog.sessions, "tests")[1] if self.app.state.catalog else None
        self.auth = {"X-API-Key": self.key}

    def close(self):
        self.client.__exit__(None, None, None)

    def index(self, paths, concepts=None, **form):
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
        data = {"concept": concepts or [p.stem for p in paths]} | form
        return self.client.post("/index", files=files, data=data, headers=self.auth)

    def attribute(self, data: bytes, k=5, filename="query.jpg", params=None, **kwargs):
        params = {"k": k} | (params or {})
        return self.client.post("/attribute", files={"file": (filename, data)}, params=params, **kwargs)


@pytest.fixture
def start_api(make_settings):
    started = []

    def _start(**overrides) -> Api:
        api = Api(make_settings(**overrides))
        started.append(api)
        return api

    yield _start
    for api in started:
        api.close()


@pytest.fixture
def api(start_api):
    return start_api()


@pytest.fixture
def corpus(photos):
    return photos[200:212]


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def edited_copy(path) -> bytes:
    image = Image.open(path).convert("RGB")
    w, h = image.size
    image = image.crop((int(w * 0.08), int(h * 0.12), int(w * 0.9), int(h * 0.93)))
    return jpeg_bytes(image.resize((image.width * 3 // 5, image.height * 3 // 5)), quality=70)


@pytest.fixture
def edit():
    """Crop, shrink and re-encode a photo: a stand-in for an edited synthetic query."""
    return edited_copy


@pytest.fixture
def serve_in_thread():
    """`serve_in_thread()` runs the app as `attrib serve` does (the factory reads ATTRIB_*, so set
    them first) in a thread of this process on a free port, and returns the port; every server
    is stopped afterwards."""
    import socket
    import threading
    import time

    import uvicorn

    from app.timeouts import server_config

    servers = []

    def _serve() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = uvicorn.Server(server_config(Settings(), "127.0.0.1", port))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        for _ in range(1200):
            if server.started:
                return port
            time.sleep(0.05)
        raise AssertionError("the server did not start")

    yield _serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=30)


def losing_check() -> dict:
    """A self-check in which the kept head collapsed on one kind of edit and the raw backbone did not."""
    def figures(worst, mean):
        return {"mAP": mean, "R@1": mean - 5, "kinds_mAP": {"halftone": worst, "paste": 2 * mean - worst},
                "mean_over_kinds": mean, "worst_kind": worst}

    return {"queries": 120, "gallery": 4, "edits": "training/check_views.py", "kept": "head", "chosen": "raw",
            "candidates": {"raw": figures(41.0, 70.0), "head": figures(12.5, 55.0)}}
