"""What a new head costs: re-heading N stored sources against re-embedding them from blobs.

Re-heading is measured in full: N synthetic float16 feature rows (a Gaussian mixture, in
16,384-row segments as a merged store holds them) are mapped by a real 1280x1280 linear head
and built into a Flat index by the same `build_index` that `attrib spaces set` uses.

Re-embedding is what a catalog without stored features would pay: decode each stored JPEG,
preprocess, and run the backbone. Its rate is measured on real photos at the best batch size
of a few tried, and the time for N is extrapolated from that rate (N forwards would take
hours here). Both figures come from the same run.

Usage: .venv/bin/python benchmarks/reheading.py [--sources 100000] [--images 96]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from index.catalog.features import MERGE_BELOW_ROWS, FeatureStore  # noqa: E402
from index.catalog.spaces import build_index  # noqa: E402
from index.images import decode_image  # noqa: E402
from training.encoders import create_encoder  # noqa: E402
from training.heads import Head  # noqa: E402

SHARED = Path(os.environ.get("ATTRIB_SHARED_DATA", REPO.parent / "shared" / "data"))


def synthetic_store(root: Path, n: int, dim: int) -> FeatureStore:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(256, dim)).astype(np.float32)
    store = FeatureStore(root, "synthetic", dim)
    for start in range(0, n, MERGE_BELOW_ROWS):
        rows = min(MERGE_BELOW_ROWS, n - start)
        features = centres[rng.integers(0, 256, rows)] + 0.5 * rng.normal(size=(rows, dim)).astype(np.float32)
        store.add(np.arange(start + 1, start + rows + 1), np.abs(features))
    return store


def reembed_rate(encoder, blobs: list[bytes], batches: list[int]) -> tuple[float, int]:
    """Best images/s of decode + preprocess + backbone forward over real JPEG bytes."""
    best = (0.0, batches[0])
    encoder.embed_features([decode_image(blobs[0]).image], 1)  # warm-up
    for batch in batches:
        started = time.perf_counter()
        encoder.embed_features((decode_image(data).image for data in blobs), batch)
        best = max(best, (len(blobs) / (time.perf_counter() - started), batch))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=96, help="real photos to measure re-embedding on")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    encoder = create_encoder(head_config={"type": "linear"})
    with torch.no_grad():
        encoder.head.weight.add_(0.05 * torch.randn_like(encoder.head.weight))
    encoder.invalidate_id()
    head = Head.of_encoder(encoder)

    with tempfile.TemporaryDirectory() as folder:
        store = synthetic_store(Path(folder), args.sources, encoder.feature_dim)
        started = time.perf_counter()
        index = build_index(store, head, "Flat")
        reheading = time.perf_counter() - started
    assert len(index) == args.sources

    photos = sorted((SHARED / "imagenet-sample").glob("*.jpg"))[: args.images]
    rate, batch = reembed_rate(encoder, [p.read_bytes() for p in photos], [4, 8, 32])
    reembedding = args.sources / rate
    print(f"re-heading {args.sources:,} stored sources (read features, linear head, Flat index): {reheading:.1f} s")
    print(f"re-embedding from blobs: {rate:.1f} img/s at batch {batch} (best of 4, 8, 32) on {len(photos)} photos "
          f"-> {reembedding:,.0f} s for {args.sources:,} ({reembedding / 3600:.1f} h)")
    print(f"re-heading is {reembedding / reheading:,.0f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
