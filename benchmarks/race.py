"""Attribution beside ingestion for N minutes, on SQLite and PostgreSQL (issue 25, item 1): 8
clients attribute edited photos while 2 clients index batches of 16 new JPEGs, against a real
uvicorn server run as `attrib serve` runs it, with the service's own settings (segments merge
past 64, the self-fit is redone past 25 % of drift). Every answer must be a 200; a 5xx or a reset
connection is a failure.

Usage: .venv/bin/python benchmarks/race.py [--minutes 10] [--databases sqlite,postgres]
(PostgreSQL at postgresql+psycopg://postgres@127.0.0.1:5432/test, in a schema of its own.)
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from app.services import open_database  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.timeouts import server_config  # noqa: E402
from index.auth import create_key  # noqa: E402

PHOTOS = sorted((Path(os.environ.get("ATTRIB_SHARED_DATA", REPO.parent / "shared" / "data")) / "imagenet-sample").glob("*.jpg"))
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def jpeg(photo: Path, rng: random.Random) -> bytes:
    import io

    from PIL import Image

    image = Image.open(photo).convert("RGB")
    w, h = image.size
    left, top = rng.randrange(w // 5), rng.randrange(h // 5)
    buffer = io.BytesIO()
    image.crop((left, top, left + w * 3 // 4, top + h * 3 // 4)).save(buffer, "JPEG", quality=rng.randrange(60, 95))
    return buffer.getvalue()


def run(database_url: str, seconds: float) -> Counter:
    home = Path(tempfile.mkdtemp(prefix="attrib-race-"))
    os.environ |= {"ATTRIB_HOME": str(home), "ATTRIB_DATABASE_URL": database_url, "ATTRIB_DEVICE": "cpu",
                   "ATTRIB_WRITE_RATE_PER_MINUTE": "0"}
    engine, sessions = open_database(Settings())
    key = create_key(sessions, "race")[1]
    engine.dispose()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(server_config(Settings(), "127.0.0.1", port))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    url, outcomes, stop = f"http://127.0.0.1:{port}", Counter(), threading.Event()
    with httpx.Client(base_url=url, timeout=300) as client:
        files = [("files", (p.name, p.read_bytes())) for p in PHOTOS[:32]]
        client.post("/index", files=files, data={"concept": [p.stem for p in PHOTOS[:32]]},
                    headers={"X-API-Key": key}).raise_for_status()

    def client_loop(seed: int, writer: bool) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=300) as client:
            while not stop.is_set():
                try:
                    if writer:
                        files = [("files", (f"{seed}-{i}.jpg", jpeg(rng.choice(PHOTOS), rng))) for i in range(16)]
                        status = client.post("/index", files=files, data={"concept": f"c{seed}"},
                                             headers={"X-API-Key": key}).status_code
                    else:
                        status = client.post("/attribute", files={"file": ("q.jpg", jpeg(rng.choice(PHOTOS[:32]), rng))}
                                             ).status_code
                    outcomes[f"{'index' if writer else 'attribute'} {status}"] += 1
                except httpx.HTTPError as exc:
                    outcomes[f"{'index' if writer else 'attribute'} {type(exc).__name__}"] += 1

    threads = [threading.Thread(target=client_loop, args=(i, i >= 8)) for i in range(10)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    server.should_exit = True
    time.sleep(2)
    return outcomes


def postgres_schema() -> str:
    schema = f"race_{uuid.uuid4().hex[:8]}"
    engine = create_engine(POSTGRES)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{POSTGRES}?options=-csearch_path%3D{schema}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args()
    failures = 0
    for database in args.databases.split(","):
        url = postgres_schema() if database == "postgres" else f"sqlite:///{tempfile.mkdtemp()}/attrib.db"
        outcomes = run(url, args.minutes * 60)
        bad = sum(n for outcome, n in outcomes.items() if not outcome.endswith(" 200"))
        failures += bad
        print(f"{database}: {dict(outcomes)}; failures {bad}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
