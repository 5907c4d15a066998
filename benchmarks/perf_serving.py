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
        with served(env | {"ATTRIB_INFER_BATCH_IMAGES": str(images)}) as (url, pid):
            rows[f"batch {images}"] = load_test(url, queries, args.sequential, pid)
    result = {"engine": encoder.engine_name, "bare": bare, "served": rows,
              "ratio_c16": {name: round(row["c16_img_s"] / bare["best_img_s"], 3) for name, row in rows.items()},
              "c1_overhead_ms": {name: round(row["c1_p50_ms"] - bare["b1_ms"], 1) for name, row in rows.items()}}
    return result, table(result)


def bare_forward(encoder, pixels, rounds: int = 3) -> dict:
    import torch

    from perf_ingest import whole_batches

    best = {}
    with torch.inference_mode(), whole_batches(encoder):
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

    def __enter__(self) -> tuple[str, int]:
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
                    return url, self.process.pid
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("attrib serve did not become ready")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(30)


def load_test(url: str, queries: list[bytes], sequential: int, server_pid: int) -> dict:
    """Concurrency 1 (median latency) and 16 (throughput), over kept-alive connections, with
    requests built once: the client's own CPU time is reported beside the server's, since on a
    small machine the load generator competes with the server for the same cores."""
    import asyncio

    host, port = url.removeprefix("http://").split(":")
    requests = [_request(host, data) for data in queries]
    asyncio.run(_drive(host, int(port), requests[:3], 1))  # warm up
    latencies = asyncio.run(_drive(host, int(port), requests[:sequential], 1))
    client, server = _cpu_seconds(os.getpid()), _cpu_seconds(server_pid)
    started = time.perf_counter()
    asyncio.run(_drive(host, int(port), requests, 16))
    seconds = time.perf_counter() - started
    client, server = _cpu_seconds(os.getpid()) - client, _cpu_seconds(server_pid) - server
    return {"c1_p50_ms": round(float(np.median(latencies)), 1), "c16_img_s": round(len(queries) / seconds, 1),
            "c16_client_cpu_s": round(client, 2), "c16_server_cpu_s": round(server, 2), "c16_wall_s": round(seconds, 2)}


def _request(host: str, data: bytes) -> bytes:
    boundary = "attribperfboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"q.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /attribute?space=style&k=5 HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n")
    return head.encode() + body


async def _drive(host: str, port: int, requests: list[bytes], concurrency: int) -> list[float]:
    """Send every request over `concurrency` kept-alive connections; latencies in ms."""
    import asyncio

    pending, latencies = list(reversed(requests)), []

    async def connection():
        reader, writer = await asyncio.open_connection(host, port)
        while pending:
            request = pending.pop()
            started = time.perf_counter()
            writer.write(request)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if b" 200 " not in status:
                raise RuntimeError(f"/attribute answered {status!r}")
            latencies.append((time.perf_counter() - started) * 1000)
        writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return latencies


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def table(result: dict) -> str:
    bare = result["bare"]
    lines = [f"engine {result['engine']}: bare forward {bare['img_s']} img/s by batch; best {bare['best_img_s']} "
             f"(batch {bare['best_batch']}); batch-1 forward {bare['b1_ms']} ms", "",
             "| server | c=1 p50 ms | over one forward | c=16 img/s | ÷ best bare forward | c=16 CPU s: server / client |",
             "|---|---|---|---|---|---|"]
    for name, row in result["served"].items():
        lines.append(f"| inference {name} | {row['c1_p50_ms']} | +{result['c1_overhead_ms'][name]} ms | "
                     f"{row['c16_img_s']} | {result['ratio_c16'][name]} | {row['c16_server_cpu_s']} / "
                     f"{row['c16_client_cpu_s']} (in {row['c16_wall_s']} s) |")
    return "\n".join(lines)
