"""perf.py section `serving`: /attribute under concurrency against the engine's bare forward.

In one run: the configured engine's bare forward (best batched throughput over a few batch sizes,
and the median batch-1 latency), then a real `attrib serve` on a catalog of real photos, hit
with POST /attribute?space=style at concurrency 1 (median latency) and at concurrency 16
(throughput), first with the shared inference batches (ATTRIB_INFER_BATCH_IMAGES=16) and then
with one image per forward (=1), each in its own server. Targets (issue 10): concurrency 16 ≥ 0.8×
the engine's batched throughput; concurrency 1 p50 ≤ one forward + 15 ms.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def add_arguments(parser) -> None:
    group = parser.add_argument_group("serving")
    group.add_argument("--catalog-images", type=int, default=40, help="photos indexed into the served catalog")
    group.add_argument("--requests", type=int, default=96, help="requests per concurrency-16 trial")
    group.add_argument("--sequential", type=int, default=30, help="requests at concurrency 1")


def run(args) -> tuple[dict, str]:
    import torch
    from PIL import Image

    from training.encoders import load_encoder

    paths = sorted(args.data.glob("*.jpg"))
    home = Path(tempfile.mkdtemp(prefix="attrib-perf-serving-"))
    env = {**os.environ, "ATTRIB_HOME": str(home), "ATTRIB_KEEP_QUERIES": "false",
           "ATTRIB_WRITE_RATE_PER_MINUTE": "0"}
    subprocess.run([sys.executable, "-m", "app.cli", "index", *map(str, paths[: args.catalog_images]),
                    "--concept-from", "stem"], env=env, check=True, capture_output=True)
    encoder = load_encoder("default", device="cpu", engine=os.environ.get("ATTRIB_ENGINE", "auto"),
                           engine_cache=home / "engines")
    queries = [p.read_bytes() for p in paths[200:200 + args.requests]]
    pixels = torch.stack([encoder.preprocess(Image.open(p).convert("RGB")) for p in paths[200:264]])
    bare = bare_forward(encoder, pixels)
    rows = {}
    for images in (16, 1):
        with served(env | {"ATTRIB_INFER_BATCH_IMAGES": str(images)}) as url:
            rows[f"batch {images}"] = load_test(url, queries, args.sequential)
    result = {"engine": encoder.engine_name, "bare": bare, "served": rows,
              "ratio_c16": {name: round(row["c16_img_s"] / bare["best_img_s"], 3) for name, row in rows.items()},
              "c1_overhead_ms": {name: round(row["c1_p50_ms"] - bare["b1_ms"], 1) for name, row in rows.items()}}
    return result, table(result)


def bare_forward(encoder, pixels, rounds: int = 3) -> dict:
    import torch

    best = {}
    with torch.inference_mode():
        encoder.features(pixels[:2])
        for _ in range(rounds):
            for batch in (1, 4, 16):
                started = time.perf_counter()
                for start in range(0, len(pixels), batch):
                    encoder.features(pixels[start:start + batch])
                best[batch] = max(best.get(batch, 0), len(pixels) / (time.perf_counter() - started))
        singles = []
        for i in range(20):
            started = time.perf_counter()
            encoder.features(pixels[i:i + 1])
            singles.append((time.perf_counter() - started) * 1000)
    top = max(best, key=best.get)
    return {"img_s": {b: round(v, 1) for b, v in best.items()}, "best_batch": top,
            "best_img_s": round(best[top], 1), "b1_ms": round(float(np.median(singles)), 1)}


class served:
    """`attrib serve` on a free port in its own process, stopped on exit."""

    def __init__(self, env: dict):
        self.env = env

    def __enter__(self) -> str:
        import httpx

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
                                        env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("attrib serve did not become ready")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(30)


def load_test(url: str, queries: list[bytes], sequential: int) -> dict:
    import httpx

    def attribute(client, data):
        response = client.post(f"{url}/attribute", params={"space": "style", "k": 5},
                               files={"file": ("q.jpg", data, "image/jpeg")}, timeout=120)
        response.raise_for_status()

    with httpx.Client() as client:
        for data in queries[:3]:
            attribute(client, data)  # warm up
        latencies = []
        for data in queries[:sequential]:
            started = time.perf_counter()
            attribute(client, data)
            latencies.append((time.perf_counter() - started) * 1000)
    clients = [httpx.Client() for _ in range(16)]
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: attribute(clients[i % 16], queries[i]), range(len(queries))))
    seconds = time.perf_counter() - started
    for client in clients:
        client.close()
    return {"c1_p50_ms": round(float(np.median(latencies)), 1), "c16_img_s": round(len(queries) / seconds, 1)}


def table(result: dict) -> str:
    bare = result["bare"]
    lines = [f"engine {result['engine']}: bare forward {bare['img_s']} img/s by batch; best {bare['best_img_s']} "
             f"(batch {bare['best_batch']}); batch-1 forward {bare['b1_ms']} ms", "",
             "| server | c=1 p50 ms | over one forward | c=16 img/s | ÷ best bare forward |", "|---|---|---|---|---|"]
    for name, row in result["served"].items():
        lines.append(f"| inference {name} | {row['c1_p50_ms']} | +{result['c1_overhead_ms'][name]} ms | "
                     f"{row['c16_img_s']} | {result['ratio_c16'][name]} |")
    return "\n".join(lines)
