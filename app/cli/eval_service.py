"""`attrib eval MANIFEST... --service [--head CKPT] [--json]`: the service's answers on benchmark
manifests, each space and the verdict across them, scored as copy detection is scored
(`training.verdict_metrics`: µAP, R@P90, none AUROC, ECE).

For each manifest a fresh catalog in a temporary ATTRIB_HOME with the service's settings
(ATTRIB_COPY_BACKBONE and the engine as configured, SQLite, FAISS): the gallery is indexed (every
distractor its own concept), the head given with --head is put live as the `content` space, the
calibrations and the verdict are fitted on the catalog (no labels), and every query is attributed
as POST /attribute answers it. A query whose concept has no source in the gallery has none.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="attrib eval --service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifests", nargs="+", type=Path, metavar="MANIFEST")
    parser.add_argument("--service", action="store_true", required=True)
    parser.add_argument("--head", type=Path, help="an A&D checkpoint to put live as the content space")
    parser.add_argument("--k", type=int, default=5, help="concepts per space in each answer")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    report = {manifest.name: evaluate_manifest(manifest, args.head, args.k) for manifest in args.manifests}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        from training.verdict_metrics import format_table

        print("\n".join(format_table(report)))
    return 0


def evaluate_manifest(manifest: Path, head: Path | None, k: int) -> dict[str, dict]:
    from app.attribution import attribute_bytes
    from app.cli.index import refresh_calibrations
    from app.routes.attribute import attribute_response
    from app.services import open_catalog
    from app.settings import Settings
    from index.calibration import set_head
    from index.ingest import IngestItem, ingest
    from training.data import read_manifest
    from training.verdict_metrics import score_answers

    rows = read_manifest(manifest)
    sourced = {row.concept for row in rows if row.role == "source"}
    with tempfile.TemporaryDirectory(prefix="attrib-eval-") as home:
        catalog = open_catalog(Settings(home=Path(home), database_url=None))
        try:
            gallery = [row for row in rows if row.role != "query"]
            with tqdm(total=len(gallery), unit="img", desc=f"indexing {manifest.name}", file=sys.stderr) as bar:
                ingest(catalog, [IngestItem(f"{i:05d}-{row.path.name}", _concept(row), path=row.path)
                                 for i, row in enumerate(gallery)], on_decoded=lambda: bar.update())
            if head is not None:
                set_head(catalog, "content", head)
            refresh_calibrations(catalog)  # as `attrib index` does: every space's calibration and the verdict
            queries = [row for row in rows if row.role == "query"]
            answers = [attribute_response(attribute_bytes(catalog, row.path.read_bytes(), k), k).model_dump(mode="json")
                       for row in tqdm(queries, unit="query", desc="attributing", file=sys.stderr)]
        finally:
            catalog.close()
    return score_answers(answers, [row.concept if row.concept in sourced else None for row in queries])


def _concept(row) -> str:
    return f"distractor:{row.path.stem}" if row.role == "distractor" else row.concept
