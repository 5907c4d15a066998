"""Soak: a bounded load of mixed traffic against a real `attrib serve` process for N minutes.

Traffic (from --workers threads, each waiting for its answer before the next request):
  70 % POST /attribute of an edited copy of a catalog photo
  20 % POST /index of two new images (crops of photos, so every upload is new bytes)
  10 % DELETE /sources/{id} of a source this run indexed
Only loopback addresses are used, and the run stops by itself after --minutes.

Prints error counts by kind and status, p50/p95 latency per kind, the server's RSS minute by
minute (and its peak), and `attrib verify --json` run against the live server's home at the end.
Writes the same as JSON to --out. Passes (exit 0) with no 5xx or dropped connection, RSS flat
(the last minute within 150 MB of the RSS after the first tenth of the run), the server healthy
and verify clean.

Issue 25's soak, twice the c=16 load for an hour:
    .venv/bin/python benchmarks/soak.py --minutes 60 --workers 32
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATTRIB_SHARED_DATA", REPO.parent / "shared" / "data"))
ATTRIB = str(Path(sys.executable).parent / "attrib")


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def crop(path: Path, rng: random.Random) -> bytes:
    image = Image.open(path)
    w, h = image.size
    left, top = rng.randint(0, w // 5), rng.randint(0, h // 5)
    return jpeg(image.crop((left, top, left + w * 3 // 4, top + h * 3 // 4)))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Soak:
    def __init__(self, url: str, key: str, photos: list[Path], seed: int):
        self.url, self.auth, self.photos = url, {"X-API-Key": key}, photos
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.indexed: list[int] = []

    def request(self, client: httpx.Client, kind: str) -> None:
        with self.lock:
            photo, roll = self.rng.choice(self.photos), self.rng.random()
            victim = self.indexed.pop(self.rng.randrange(len(self.indexed))) if kind == "delete" and self.indexed else None
        started = time.perf_counter()
        try:
            response = self.send(client, kind, photo, victim, roll)
            status = str(response.status_code)
        except httpx.TransportError as exc:
            response, status = None, type(exc).__name__
        with self.lock:
            self.statuses[(kind, status)] += 1
            self.latency[kind].append((time.perf_counter() - started) * 1000)
            if kind == "index" and response is not None and response.status_code == 200:
                self.indexed += [r["source_id"] for r in response.json()["results"] if r["status"] == "indexed"]

    def send(self, client: httpx.Client, kind: str, photo: Path, victim: int | None, roll: float) -> httpx.Response:
        if kind == "attribute":
            return client.post("/attribute", files={"file": ("q.jpg", crop(photo, random.Random(roll)))})
        if kind == "index":
            files = [("files", (f"soak-{roll}-{i}.jpg", crop(photo, random.Random(roll + i)))) for i in range(2)]
            return client.post("/index", files=files, data={"concept": f"soak {photo.stem}"}, headers=self.auth)
        return client.delete(f"/sources/{victim if victim is not None else 2**31 - 1}", headers=self.auth)

    def worker(self, deadline: float) -> None:
        kinds = ["attribute"] * 7 + ["index"] * 2 + ["delete"]
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while time.monotonic() < deadline:
                with self.lock:
                    kind = self.rng.choice(kinds)
                self.request(client, kind)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def start_server(home: Path) -> tuple[subprocess.Popen, str, str]:
    env = {**os.environ, "ATTRIB_HOME": str(home), "ATTRIB_DEVICE": "cpu"}
    env.pop("ATTRIB_DATABASE_URL", None)
    key = subprocess.run([ATTRIB, "keys", "create", "--name", "soak"], env=env, capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([ATTRIB, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url, key
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the server did not become ready")


def index_photos(url: str, key: str, photos: list[Path]) -> None:
    """Each photo its own concept (its file name's stem), in one POST /index."""
    files = [("files", (p.name, p.read_bytes())) for p in photos]
    httpx.post(f"{url}/index", files=files, data={"concept": [p.stem for p in photos]},
               headers={"X-API-Key": key}, timeout=600).raise_for_status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "benchmarks" / "soak.json")
    args = parser.parse_args(argv)
    photos = sorted((SHARED / "imagenet-sample").glob("*.jpg"))[: args.photos]
    with tempfile.TemporaryDirectory() as home:
        process, url, key = start_server(Path(home))
        try:
            index_photos(url, key, photos)
            soak = Soak(url, key, photos, seed=0)
            start_rss, peak, timeline = rss_mb(process.pid), 0.0, []
            started = time.monotonic()
            deadline = started + args.minutes * 60
            threads = [threading.Thread(target=soak.worker, args=(deadline,)) for _ in range(args.workers)]
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                peak = max(peak, rss_mb(process.pid))
                if time.monotonic() - started >= 60 * len(timeline):
                    timeline.append(round(rss_mb(process.pid)))
                time.sleep(1)
            healthy = httpx.get(f"{url}/healthz", timeout=10).status_code == 200
            report = summary(soak, start_rss, rss_mb(process.pid), peak, healthy, args)
            settled = timeline[min(len(timeline) - 1, max(1, len(timeline) // 10))]
            report |= {"rss_mb_by_minute": timeline, "rss_flat": report["rss_mb"]["end"] - settled <= 150,
                       "verify": verify(Path(home))}
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    ok = report["server_errors"] == 0 and healthy and report["rss_flat"] and report["verify"].get("clean")
    return 0 if ok else 1


def verify(home: Path) -> dict:
    """`attrib verify --json` against the home of the server, which is still running."""
    env = {**os.environ, "ATTRIB_HOME": str(home), "ATTRIB_DEVICE": "cpu"}
    env.pop("ATTRIB_DATABASE_URL", None)
    done = subprocess.run([ATTRIB, "verify", "--json"], env=env, capture_output=True, text=True, timeout=600)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"clean": False, "exit": done.returncode, "stderr": done.stderr[-2000:]}


def summary(soak: Soak, start_rss: float, end_rss: float, peak: float, healthy: bool, args) -> dict:
    counts = {f"{kind} {status}": n for (kind, status), n in sorted(soak.statuses.items())}
    errors = sum(n for (_, status), n in soak.statuses.items() if not status.isdigit() or status.startswith("5"))
    return {
        "minutes": args.minutes, "workers": args.workers, "requests": sum(soak.statuses.values()),
        "server_errors": errors, "responses": counts,
        "latency_ms": {kind: {"p50": round(percentile(v, 0.5), 1), "p95": round(percentile(v, 0.95), 1)}
                       for kind, v in soak.latency.items()},
        "rss_mb": {"start": round(start_rss), "end": round(end_rss), "peak": round(peak)},
        "healthy_at_end": healthy,
    }


if __name__ == "__main__":
    sys.exit(main())
