"""perf.py section `spaces`: what each space adds to /attribute at concurrency 1 (issue 27).

One catalog of real photos with its copy space (SSCD distilled) live and a content head trained
on it (`attrib train --from-catalog`): the distilled query head on Lite0, the same on the SSCD
student's descriptors (no forward of its own), the rendered head on them (the query's sketch and
silhouette at 192 px: two small SSCD forwards of its own), and the previous recipe (queries
averaged over 8 views: 9 Lite0 forwards). For each, one server answers requests that alternate between
?space=style (one Lite0 forward) and ?space=all (copy, style and content), so both medians come
from the same minutes. Beside them, the bare batch-1 forward of the SSCD
student. Target: all-spaces p50 <= style-only p50 + one SSCD forward + 10 ms.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from perf_serving import _drive, _request, served


def add_arguments(parser) -> None:
    group = parser.add_argument_group("spaces")
    group.add_argument("--spaces-catalog", type=int, default=60, help="photos indexed for the spaces section")
    group.add_argument("--spaces-requests", type=int, default=40, help="requests per space and recipe at c=1")


def run(args) -> tuple[dict, str]:
    paths = sorted(args.data.glob("*.jpg"))
    home = Path(tempfile.mkdtemp(prefix="attrib-perf-spaces-"))
    env = {**os.environ, "ATTRIB_HOME": str(home), "ATTRIB_KEEP_QUERIES": "false", "ATTRIB_WRITE_RATE_PER_MINUTE": "0"}
    cli = [sys.executable, "-m", "app.cli"]
    subprocess.run([*cli, "index", *map(str, paths[: args.spaces_catalog]), "--concept-from", "stem"],
                   env=env, check=True, capture_output=True)
    queries = [p.read_bytes() for p in paths[300:300 + args.spaces_requests]]
    rows = {}
    for label, flags in RECIPES.items():
        ckpt = home / f"{label.replace(' ', '-')}.pt"
        subprocess.run([*cli, "train", "--from-catalog", *flags, "--output", str(ckpt)],
                       env=env, check=True, capture_output=True)
        subprocess.run([*cli, "spaces", "set", "content", str(ckpt), "--force"], env=env, check=True, capture_output=True)
        with served(env) as (url, _pid):
            rows[label] = alternate(url, queries)
    sscd, rendered = sscd_forward_ms(paths[300:320]), rendering_ms(paths[300:320])
    for row in rows.values():  # each server's own style-only median is its baseline
        row["target_ms"] = round(row["style_p50_ms"] + sscd + 10, 1)
        row["met"] = row["all_p50_ms"] <= row["target_ms"]
    result = {"served": rows, "sscd_b1_ms": sscd, "rendering": rendered}
    return result, table(result)


# the content heads measured: one forward a query on either backbone, and the previous recipe
RECIPES = {"distilled on Lite0": ["--backbone", "efficientnet_lite0", "--recipe", "distilled"],
           "distilled on SSCD": ["--backbone", "sscd_distilled", "--recipe", "distilled"],
           "rendered on SSCD": ["--backbone", "sscd_distilled", "--recipe", "rendered"],
           "views (previous)": ["--backbone", "efficientnet_lite0", "--recipe", "views"]}


def alternate(url: str, queries: list[bytes]) -> dict:
    """c=1 medians of ?space=style and ?space=all, requests alternating between the two."""
    import asyncio

    host, port = url.removeprefix("http://").split(":")
    style = [_request(host, q) for q in queries]
    every = [r.replace(b"space=style", b"space=all", 1) for r in style]
    asyncio.run(_drive(host, int(port), every[:3] + style[:3], 1))  # warm up both paths
    times = {"style": [], "all": []}
    for s, a in zip(style, every):
        times["style"] += asyncio.run(_drive(host, int(port), [s], 1))
        times["all"] += asyncio.run(_drive(host, int(port), [a], 1))
    return {f"{k}_p50_ms": round(float(np.median(v)), 1) for k, v in times.items()}


def sscd_forward_ms(paths: list[Path], rounds: int = 3) -> float:
    """The SSCD student's bare batch-1 forward: the lowest of `rounds` medians over the crops (the
    best bare forward, so that a busy minute does not loosen the target)."""
    from PIL import Image

    from training.sscd import load_copy_backbone

    backbone = load_copy_backbone("sscd_distilled")
    crops = [backbone.crop(Image.open(p).convert("RGB"))[None] for p in paths]
    backbone.features_of_pixels(crops[0])
    medians = []
    for _ in range(rounds):
        times = []
        for crop in crops:
            started = time.perf_counter()
            backbone.features_of_pixels(crop)
            times.append((time.perf_counter() - started) * 1000)
        medians.append(float(np.median(times)))
    return round(min(medians), 1)


def rendering_ms(paths: list[Path]) -> dict:
    """Medians of what a rendered head adds to a query: drawing its sketch and silhouette, and
    their batch-2 SSCD forward."""
    from PIL import Image

    from training.config import RENDERING_NAMES, AugmentConfig
    from training.recipe import RENDER_SIZE
    from training.query_views import query_view_images
    from training.sscd import load_copy_backbone

    backbone = load_copy_backbone("sscd_distilled")
    augment = AugmentConfig(renderings=RENDERING_NAMES, render_size=RENDER_SIZE)  # what the recipe's rendered head draws
    draw, forward = [], []
    for path in paths:
        image = Image.open(path).convert("RGB")
        started = time.perf_counter()
        views = np.stack([np.asarray(v) for v in query_view_images(image, "", 2, augment, backbone.input_size)])
        drawn = time.perf_counter()
        backbone.features_of_pixels(views)
        draw.append((drawn - started) * 1000)
        forward.append((time.perf_counter() - drawn) * 1000)
    return {"draw_ms": round(float(np.median(draw[1:])), 1), "views_forward_ms": round(float(np.median(forward[1:])), 1),
            "size_px": RENDER_SIZE}


def table(result: dict) -> str:
    lines = [f"SSCD distilled bare batch-1 forward {result['sscd_b1_ms']} ms; target for all spaces: style only "
             "+ that + 10 ms", "",
             f"A rendered head's two renderings: drawn in {result['rendering']['draw_ms']} ms, their batch-2 SSCD "
             f"forward at {result['rendering']['size_px']} px {result['rendering']['views_forward_ms']} ms", "",
             "| content head | style only p50 ms | copy + style + content p50 ms | added by copy and content | target |",
             "|---|---|---|---|---|"]
    for recipe, row in result["served"].items():
        lines.append(f"| {recipe} | {row['style_p50_ms']} | {row['all_p50_ms']} | "
                     f"+{round(row['all_p50_ms'] - row['style_p50_ms'], 1)} ms | "
                     f"≤ {row['target_ms']} ({'met' if row['met'] else 'not met'}) |")
    return "\n".join(lines)
