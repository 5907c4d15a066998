"""Restart after a crash: how much work does recovery redo?

`attrib index` of N photos (batch 32) is killed with SIGKILL when its last chunk's rows are
committed (ATTRIB_CRASH_AT=ingest_after_commit:<last>), before any space index was saved. The
stored features of the earlier chunks are durable, so the next load re-embeds only the last
chunk from its images and maps every stored feature through the heads. Measured side by side,
in one run: that load, a clean load of the same catalog, and what re-embedding all N sources
from their images costs (what recovery cost before features were stored).

Usage: .venv/bin/python benchmarks/recovery.py [--images 224]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.services import load_configured_encoder, open_catalog  # noqa: E402
from app.settings import Settings  # noqa: E402
from index.catalog import FeatureStore  # noqa: E402
from index.catalog.reconcile import embed_stored  # noqa: E402

SHARED = Path(os.environ.get("ATTRIB_SHARED_DATA", REPO.parent / "shared" / "data"))
BATCH = 32


def timed_load(settings: Settings, encoder) -> tuple[float, int]:
    catalog = open_catalog(settings, encoder)
    started = time.perf_counter()
    catalog.spaces()
    elapsed = time.perf_counter() - started
    count = len(catalog.features)
    catalog.close()
    return elapsed, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=224)
    args = parser.parse_args(argv)
    chunks = -(-args.images // BATCH)
    with tempfile.TemporaryDirectory() as tmp:
        folder, home = Path(tmp) / "corpus", Path(tmp) / "home"
        folder.mkdir()
        for path in sorted((SHARED / "imagenet-sample").glob("*.jpg"))[: args.images]:
            shutil.copy(path, folder / path.name)
        env = {**os.environ, "ATTRIB_HOME": str(home), "ATTRIB_DEVICE": "cpu",
               "ATTRIB_CRASH_AT": f"ingest_after_commit:{chunks}"}
        env.pop("ATTRIB_DATABASE_URL", None)
        attrib = str(Path(sys.executable).parent / "attrib")
        done = subprocess.run([attrib, "index", str(folder), "--batch-size", str(BATCH)], env=env, capture_output=True)
        print(f"attrib index of {args.images} photos killed at the last chunk (exit {done.returncode})")

        settings = Settings(home=home, database_url=None, device="cpu", batch_size=BATCH)
        encoder = load_configured_encoder(settings)
        recovery, count = timed_load(settings, encoder)
        clean, _ = timed_load(settings, encoder)
        catalog = open_catalog(settings, encoder)
        store = FeatureStore(Path(tmp) / "scratch", catalog.backbone_id, catalog.feature_dim)
        started = time.perf_counter()
        embed_stored(catalog, catalog.row_ids().tolist(), store)
        reembed = time.perf_counter() - started
        catalog.close()
    print(f"load after the crash: {recovery:.1f} s (re-embedded {args.images - (chunks - 1) * BATCH}, "
          f"re-headed {count} stored sources)")
    print(f"clean load of the same catalog: {clean:.1f} s")
    print(f"re-embedding all {count} sources from their images (recovery without stored features): {reembed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
