"""A server's memory under large uploads: idle, peak during a burst, and settled after it.

    .venv/bin/python benchmarks/memory_burst.py [--megapixels 50] [--flood 32] [--clients 8]

Starts a real `attrib serve` (SQLite, a fresh ATTRIB_HOME), indexes a few photos, then sends:
  burst  4 uploads at once of one photo blown up to --megapixels (a JPEG of a few MB each), and
         4 at once of a 16-bit PNG gradient of the same size (small files, full-size decodes);
  flood  --flood uploads of such JPEGs from --clients clients.
The server's RSS is sampled every 20 ms: before (idle, after a warm-up query), the peak of each
phase, and 10 s after the last answer (settled). Also counts answers by status: a 5xx is a bug.
Prints a table and writes JSON to --out. Bar (issue 25): flood peak ≤ idle + 800 MB, and
settled within 150 MB of idle.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import REPO, SHARED, rss_mb, start_server  # noqa: E402


def big_jpeg(photo: Path, megapixels: float) -> bytes:
    image = Image.open(photo).convert("RGB")
    scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
    size = (int(image.width * scale), int(image.height * scale))
    buffer = io.BytesIO()
    image.resize(size, Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def big_png(megapixels: float) -> bytes:
    side = int((megapixels * 1e6) ** 0.5)
    ramp = np.linspace(0, 65535, side, dtype=np.uint32).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(np.tile(ramp, (side, 1))).save(buffer, "PNG")
    return buffer.getvalue()


class Sampler:
    """Polls a process's RSS; `peak()` is the highest since the last `reset()`."""

    def __init__(self, pid: int):
        self.pid, self._peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._peak = max(self._peak, rss_mb(self.pid))

    def reset(self) -> None:
        self._peak = rss_mb(self.pid)

    def peak(self) -> float:
        return self._peak

    def stop(self) -> None:
        self._stop.set()


def attribute_all(url: str, uploads: list[tuple[str, bytes]], clients: int) -> Counter:
    def one(upload: tuple[str, bytes]) -> str:
        try:
            with httpx.Client(base_url=url, timeout=600) as client:
                return str(client.post("/attribute", files={"file": upload}).status_code)
        except httpx.TransportError as exc:
            return type(exc).__name__
    with ThreadPoolExecutor(clients) as pool:
        return Counter(pool.map(one, uploads))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, default=50)
    parser.add_argument("--flood", type=int, default=32)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "benchmarks" / "memory_burst.json")
    args = parser.parse_args(argv)
    photos = sorted((SHARED / "imagenet-sample").glob("*.jpg"))[:16]
    jpegs = [(f"big{i}.jpg", big_jpeg(photos[i % len(photos)], args.megapixels)) for i in range(4)]
    png = ("big.png", big_png(args.megapixels))
    report: dict = {"megapixels": args.megapixels, "jpeg_mb": round(len(jpegs[0][1]) / 2**20, 1),
                    "png_mb": round(len(png[1]) / 2**20, 2), "phases": {}}
    with tempfile.TemporaryDirectory() as home:
        process, url, key = start_server(Path(home))
        sampler = Sampler(process.pid)
        try:
            files = [("files", (p.name, p.read_bytes())) for p in photos]
            httpx.post(f"{url}/index", files=files, data={"concept": [p.stem for p in photos]},
                       headers={"X-API-Key": key}, timeout=600).raise_for_status()
            attribute_all(url, [(photos[0].name, photos[0].read_bytes())] * 4, 2)  # warm-up
            time.sleep(2)
            report["idle_rss_mb"] = idle = round(rss_mb(process.pid))
            phases = {"burst, 4 JPEGs at once": (jpegs, 4), "burst, 4 PNGs at once": ([png] * 4, 4),
                      f"flood, {args.flood} JPEGs from {args.clients} clients":
                          ([jpegs[i % 4] for i in range(args.flood)], args.clients)}
            for name, (uploads, clients) in phases.items():
                sampler.reset()
                started = time.perf_counter()
                statuses = attribute_all(url, uploads, clients)
                seconds = time.perf_counter() - started
                peak = sampler.peak()
                time.sleep(10)
                report["phases"][name] = {"answers": dict(statuses), "seconds": round(seconds, 1),
                                          "peak_over_idle_mb": round(peak - idle),
                                          "settled_over_idle_mb": round(rss_mb(process.pid) - idle)}
        finally:
            sampler.stop()
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    errors = sum(n for phase in report["phases"].values() for status, n in phase["answers"].items()
                 if not status.isdigit() or status.startswith("5"))
    return 1 if errors else 0


def table(report: dict) -> str:
    lines = [f"{report['megapixels']} MP uploads: JPEG {report['jpeg_mb']} MB, PNG {report['png_mb']} MB; "
             f"idle RSS {report['idle_rss_mb']} MB", "",
             "| phase | answers | seconds | peak over idle (MB) | settled over idle (MB) |", "|---|---|---|---|---|"]
    for name, phase in report["phases"].items():
        lines.append(f"| {name} | {phase['answers']} | {phase['seconds']} | {phase['peak_over_idle_mb']} | "
                     f"{phase['settled_over_idle_mb']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
