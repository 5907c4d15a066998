"""Attribution while ingestion runs, against a real uvicorn server on both databases (issue 25,
item 1): calibration refits read feature segments while ingestion merged and deleted them, and
8 of 4,500 answers were 500s. Segments merge here past 2 (not 64) and the self-fit is redone
past 1 % of drift (not 25 %), so the race comes up within seconds (on the code before the fix,
a 500 in the first 15-second run). `benchmarks/race.py` runs the
issue's 10 minutes."""

import io
import random
import threading
import time
from collections import Counter

import httpx
import pytest
from PIL import Image

from app.settings import Settings
from index.auth import create_key
from index.calibration import calibration as calibration_module
from index.catalog import features as features_module

SECONDS = 15


@pytest.fixture
def server(tmp_path, database_url, monkeypatch, serve_in_thread):
    monkeypatch.setattr(features_module, "MAX_SEGMENTS", 2)
    monkeypatch.setattr(calibration_module, "REFIT_DRIFT", 0.01)
    for name, value in {"HOME": str(tmp_path / "home"), "DATABASE_URL": database_url, "DEVICE": "cpu",
                        "WRITE_RATE_PER_MINUTE": "0", "BATCH_SIZE": "8"}.items():
        monkeypatch.setenv(f"ATTRIB_{name}", value)
    return f"http://127.0.0.1:{serve_in_thread()}"


def jpeg(photo, rng: random.Random) -> bytes:
    """A new crop of the photo: new bytes every time."""
    image = Image.open(photo).convert("RGB")
    w, h = image.size
    left, top = rng.randrange(w // 5), rng.randrange(h // 5)
    buffer = io.BytesIO()
    image.crop((left, top, left + w * 3 // 4, top + h * 3 // 4)).save(buffer, "JPEG", quality=rng.randrange(60, 95))
    return buffer.getvalue()


def test_attributing_while_indexing_never_fails(server, photos):
    key = create_key_for(server)
    outcomes, stop = Counter(), threading.Event()

    def attribute(seed):
        rng = random.Random(seed)
        with httpx.Client(base_url=server, timeout=60) as client:
            while not stop.is_set():
                outcomes[call(client.post, "/attribute", files={"file": ("q.jpg", jpeg(rng.choice(photos[:40]), rng))})] += 1

    def index(seed):
        rng = random.Random(seed)
        with httpx.Client(base_url=server, timeout=120) as client:
            while not stop.is_set():
                files = [("files", (f"{seed}-{i}.jpg", jpeg(rng.choice(photos), rng))) for i in range(8)]
                outcomes[call(client.post, "/index", files=files, data={"concept": f"c{seed}"},
                              headers={"X-API-Key": key})] += 1

    with httpx.Client(base_url=server, timeout=120) as client:
        files = [("files", (p.name, p.read_bytes())) for p in photos[:8]]
        assert client.post("/index", files=files, data={"concept": [p.stem for p in photos[:8]]},
                           headers={"X-API-Key": key}).status_code == 200
    threads = [threading.Thread(target=attribute, args=(i,)) for i in range(6)]
    threads += [threading.Thread(target=index, args=(100 + i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(SECONDS)
    stop.set()
    for thread in threads:
        thread.join()
    assert set(outcomes) == {"POST /attribute 200", "POST /index 200"}, outcomes
    assert outcomes["POST /attribute 200"] > 20 and outcomes["POST /index 200"] > 2


def create_key_for(server: str) -> str:
    import os

    from app.services import open_database

    engine, sessions = open_database(Settings(home=os.environ["ATTRIB_HOME"], database_url=os.environ["ATTRIB_DATABASE_URL"]))
    try:
        return create_key(sessions, "race")[1]
    finally:
        engine.dispose()


def call(method, path: str, **request) -> str:
    try:
        return f"{method.__name__.upper()} {path} {method(path, **request).status_code}"
    except httpx.HTTPError as exc:  # a reset connection is a failure too
        return f"{method.__name__.upper()} {path} {type(exc).__name__}"
