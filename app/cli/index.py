"""`attrib index` and `attrib demo`: add source images to the catalog, with a progress bar and
one line per rejected file; `attrib reindex` re-embeds it after a backbone change; `attrib
index-advice` says which FAISS index suits N vectors."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from app.settings import Settings
from training.errors import AttribError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


def add_index_parser(commands) -> None:
    index = commands.add_parser("index", help="add source images to the catalog")
    index.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders")
    naming = index.add_mutually_exclusive_group()
    naming.add_argument("--concept", help="one concept name for every image")
    naming.add_argument(
        "--concept-from", default="dir", metavar="dir|stem|csv:FILE",
        help="name concepts by parent folder (default), file stem, or a CSV with path,concept columns",
    )
    index.add_argument("--batch-size", type=int, help="images embedded per batch")
    index.set_defaults(handler=cmd_index)


def add_reindex_parser(commands) -> None:
    reindex = commands.add_parser(
        "reindex", help="re-run the backbone over every stored source (after changing ATTRIB_ENCODER's backbone)")
    reindex.add_argument("--backbone", metavar="NAME",
                         help="only add this backbone's features where they are missing (the copy backbone, e.g. "
                         "sscd_distilled, to give a catalog from before it its copy space), while the server keeps "
                         "answering; the spaces on it go live at the end")
    reindex.set_defaults(handler=cmd_reindex)


def add_demo_parser(commands) -> None:
    commands.add_parser("demo", help="index the demo corpus (photos shipped with dependencies)").set_defaults(
        handler=cmd_demo
    )


def cmd_index(args, _rest) -> int:
    from index.ingest import IngestItem

    files, ignored = collect_image_files(args.paths)
    namer = concept_namer(args.concept, args.concept_from)
    items = [IngestItem(path.name, namer(path), path=path, meta={"path": str(path)}) for path in files]
    settings = Settings()
    if args.batch_size:
        settings.batch_size = args.batch_size
    results = run_ingest(settings, items)
    return print_ingest_summary(results, ignored)


def run_ingest(settings: Settings, items: list) -> list:
    from tqdm import tqdm

    from app.services import open_catalog
    from index.ingest import ingest

    catalog = open_catalog(settings)
    try:
        with tqdm(total=len(items), unit="img", desc="decoded", file=sys.stderr, position=0) as decoded, \
                tqdm(total=len(items), unit="img", desc="indexed", file=sys.stderr, position=1) as indexed:
            results = ingest(catalog, items, on_result=lambda _result: indexed.update(1),
                             on_decoded=lambda: decoded.update(1))
        refresh_calibrations(catalog)
        return results
    finally:
        catalog.close()


def refresh_calibrations(catalog) -> None:
    """Fit (or refit, past the size drift) each space's label-free calibration and the verdict
    now, so that the first answers after indexing do not wait for them."""
    from index.calibration import calibration_for, verdict_for

    spaces = catalog.spaces()
    if spaces and len(catalog.features):
        print("calibrating " + ", ".join(sorted(spaces)) + " and the verdict …", file=sys.stderr, flush=True)
        for live in spaces.values():
            calibration_for(catalog, live, wait=True)
        verdict_for(catalog, spaces, wait=True)


def collect_image_files(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Image files under the given paths (recursively), and the other files that were skipped."""
    files, ignored = [], []
    for path in paths:
        if not path.exists():
            raise AttribError(f"no such file or folder: {path}", code="bad_path")
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for candidate in candidates:
            if candidate.name.startswith("."):
                continue
            is_image = candidate.suffix.lower() in IMAGE_SUFFIXES or not path.is_dir()
            (files if is_image else ignored).append(candidate)
    if not files:
        raise AttribError(f"no image files found in {', '.join(map(str, paths))}", code="bad_path")
    return files, ignored


def concept_namer(concept: str | None, concept_from: str):
    if concept is not None:
        return lambda _path: concept
    if concept_from == "dir":
        return lambda path: path.resolve().parent.name
    if concept_from == "stem":
        return lambda path: path.stem
    if concept_from.startswith("csv:"):
        return _csv_namer(Path(concept_from[4:]))
    raise AttribError(f"--concept-from must be dir, stem or csv:FILE, not {concept_from!r}", code="bad_argument")


def _csv_namer(csv_path: Path):
    """CSV with a `path` column and a `concept` (or `label`) column; paths relative to the CSV."""
    try:
        with csv_path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise AttribError(f"cannot read concept CSV {csv_path}: {exc.strerror}", code="bad_path") from exc
    column = next((c for c in ("concept", "label") if rows and c in rows[0]), None)
    if not rows or "path" not in rows[0] or column is None:
        raise AttribError(f"concept CSV {csv_path} needs a 'path' column and a 'concept' column", code="bad_argument")
    by_path = {(csv_path.parent / row["path"]).resolve(): row[column] for row in rows}
    by_name = {Path(row["path"]).name: row[column] for row in rows}
    return lambda path: by_path.get(path.resolve(), by_name.get(path.name))


def print_ingest_summary(results: list, ignored: list[Path]) -> int:
    counts = {status: sum(r.status == status for r in results) for status in ("indexed", "duplicate", "rejected")}
    for result in results:
        if result.status == "rejected":
            print(f"rejected {result.filename}: {result.reason} [{result.code}]", file=sys.stderr)
    line = f"indexed {counts['indexed']}, duplicates {counts['duplicate']}, rejected {counts['rejected']}"
    if ignored:
        line += f", ignored {len(ignored)} non-image files"
    print(line)
    return 1 if counts["rejected"] else 0


def cmd_demo(_args, _rest) -> int:
    from app.demo import demo_corpus
    from index.ingest import IngestItem

    corpus = demo_corpus()
    if not corpus:
        raise AttribError("no demo photos found: is scikit-image installed?", code="bad_path")
    items = [IngestItem(path.name, concept, path=path, meta={"demo": True}) for path, concept in corpus]
    return print_ingest_summary(run_ingest(Settings(), items), [])


def cmd_reindex(args, _rest) -> int:
    from tqdm import tqdm

    from app.services import open_catalog
    from index.catalog import reindex

    catalog = open_catalog(Settings())
    if args.backbone and args.backbone != catalog.encoder.name:
        try:
            return catch_up_backbone(catalog, args.backbone)
        finally:
            catalog.close()
    try:
        with tqdm(total=catalog.count(), unit="img", desc="re-embedding", file=sys.stderr) as bar:
            spaces = reindex(catalog, progress=bar.update)
    finally:
        catalog.close()
    for name, info in sorted(spaces.items()):
        print(f"space {name}: {info.count} vectors, head {info.head_id}")
    print(f"reindexed {catalog.count()} sources with backbone {catalog.backbone_id}")
    return 0


def catch_up_backbone(catalog, name: str) -> int:
    """`attrib reindex --backbone NAME`: embed the sources that lack NAME's features, with a bar."""
    from tqdm import tqdm

    from index.catalog import catch_up, missing_sources

    copy = catalog.copy
    if copy is None or copy.name != name:
        configured = copy.name if copy else f"none ({catalog.copy_problem})"
        raise AttribError(f"the backbone {name!r} is not this catalog's: the encoder is {catalog.encoder.name} and "
                          f"the copy backbone is {configured}; set ATTRIB_COPY_BACKBONE={name} to use it",
                          code="unknown_backbone")
    missing = len(missing_sources(catalog, copy.backbone_id))
    with tqdm(total=missing, unit="img", desc=f"embedding with {name}", file=sys.stderr) as bar:
        done = catch_up(catalog, copy.backbone_id, progress=bar.update)
    live = sorted(n for n, space in catalog.spaces().items() if space.info.backbone_id == copy.backbone_id)
    print(f"{name}: embedded {done.embedded} of {done.sources} sources that lacked its features; "
          f"live on it: {', '.join(live) or 'no space'}")
    return 0


def add_advice_parser(commands) -> None:
    advice = commands.add_parser("index-advice", help="which FAISS index for N vectors, and its memory")
    advice.add_argument("n", type=int, metavar="N", help="how many vectors the catalog will hold")
    advice.add_argument("--dim", type=int, default=512, help="dimensions per vector (default 512)")
    advice.set_defaults(handler=cmd_index_advice)


def cmd_index_advice(args, _rest) -> int:
    from index.stores import advise, format_advice

    if not 0 <= args.n <= 10**13 or not 1 <= args.dim <= 65_536:
        raise AttribError("N must be between 0 and 10^13 and --dim between 1 and 65536", code="bad_argument")
    print(format_advice(args.n, args.dim, advise(args.n, args.dim)))
    return 0
