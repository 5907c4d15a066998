"""Peak memory of decoding a pixel flood: a small 16-bit PNG that declares 7000 x 7000 pixels.

    .venv/bin/python benchmarks/decode_flood.py --parallel 1
    .venv/bin/python benchmarks/decode_flood.py --parallel 8 --max-concurrent-decodes 4

Writes the PNG (about 100 kB) to a temporary file in a child process, so its making does not
count; then decodes it `--parallel` times at once, in threads, with `decode_image`, and prints
the process RSS before, the peak (ru_maxrss) and the RSS after, in MB, and the wall time.
"""

from __future__ import annotations

import argparse
import gc
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def make_flood(path: Path, side: int) -> None:
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 65535, side, dtype=np.uint32).astype(np.uint16)
    Image.fromarray(np.tile(ramp, (side, 1))).save(path, "PNG")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=7000)
    parser.add_argument("--parallel", type=int, default=1, help="decodes started at once")
    parser.add_argument("--max-concurrent-decodes", type=int, help="set the decoder's limit (default: its own)")
    parser.add_argument("--make", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        make_flood(args.make, args.side)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flood.png"
        subprocess.run([sys.executable, __file__, "--make", str(path), "--side", str(args.side)], check=True)
        data = path.read_bytes()
    import index.images as images

    if args.max_concurrent_decodes:
        images.set_max_concurrent_decodes(args.max_concurrent_decodes)
    before, started = rss_mb(), time.perf_counter()
    results: list = []

    def decode() -> None:
        results.append(images.decode_image(data, max_pixels=args.side * args.side).image.size)

    threads = [threading.Thread(target=decode) for _ in range(args.parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results.clear()
    gc.collect()
    print(
        f"{len(data) / 1000:.0f} kB PNG, {args.side}x{args.side} 16-bit, {args.parallel} parallel: "
        f"RSS before {before:.0f} MB, peak {peak:.0f} MB (+{peak - before:.0f}), after {rss_mb():.0f} MB; "
        f"{elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
