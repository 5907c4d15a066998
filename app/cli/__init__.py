"""`attrib` command line: index, attribute, reindex, serve, worker, demo, train, eval, calibrate.

Every command reads ATTRIB_HOME and ATTRIB_DATABASE_URL (see app/settings.py). Problems a user
can fix print one `error:` line and exit 1; argument mistakes exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from app.cli.calibrate import add_calibrate_parser
from app.cli.index import add_advice_parser, cmd_demo, cmd_index
from app.cli.keys import add_keys_parser
from app.cli.pool import add_pool_parser
from app.cli.spaces import add_spaces_parser, attribution_json, format_attribution
from app.settings import MAX_POLL_SECONDS, MAX_WORKERS, Settings
from training.errors import AttribError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("train", "eval"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args, rest)
    except AttribError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        problems = "; ".join(f"ATTRIB_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        print(f"error: invalid setting: {problems}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attrib", description="Synthetic-image attribution.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    attribute = commands.add_parser("attribute", help="which source concepts is this image from?")
    attribute.add_argument("images", type=Path, nargs="+", metavar="IMAGE",
                           help="one or more images; several are attributed in one process, with a progress bar")
    attribute.add_argument("-k", type=int, default=5, help="number of concepts (1-100, default 5)")
    attribute.add_argument("--space", default="all", help="content, style, another space, or all (default)")
    attribute.add_argument("--json", action="store_true",
                           help="print one JSON object per image (as POST /attribute), one per line, "
                           "with `file` added when there are several")
    attribute.set_defaults(handler=cmd_attribute)

    commands.add_parser(
        "reindex", help="re-run the backbone over every stored source (after changing ATTRIB_ENCODER's backbone)"
    ).set_defaults(handler=cmd_reindex)
    add_spaces_parser(commands)
    add_calibrate_parser(commands)
    add_pool_parser(commands)
    add_advice_parser(commands)
    commands.add_parser("demo", help="index the demo corpus (photos shipped with dependencies)").set_defaults(
        handler=cmd_demo
    )

    serve = commands.add_parser("serve", help="start the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, metavar="N",
                       help="worker processes on one socket (default: ATTRIB_WORKERS, 1); see docs/performance.md")
    serve.set_defaults(handler=cmd_serve)

    worker = commands.add_parser("worker", help="run ingestion jobs queued by the server (ATTRIB_INGEST_QUEUE=external)")
    worker.add_argument("--poll-seconds", type=float, metavar="S",
                        help="wait between looks at an empty queue (default: ATTRIB_WORKER_POLL_SECONDS, 2)")
    worker.add_argument("--once", action="store_true", help="run the queued jobs, then exit when none is left")
    worker.set_defaults(handler=cmd_worker)

    add_keys_parser(commands)

    train = commands.add_parser("train", help="train an attribution encoder (see --help)", add_help=False)
    train.add_argument("--from-catalog", action="store_true")
    train.set_defaults(handler=cmd_train)
    commands.add_parser("eval", help="evaluate an encoder on benchmarks (see --help)", add_help=False).set_defaults(
        handler=cmd_eval
    )
    return parser


# -- attribute, reindex, demo, serve ---------------------------------------------------------


def cmd_attribute(args, _rest) -> int:
    """Attribute each image; a file that can't be read or decoded is reported and the rest go on."""
    from tqdm import tqdm

    from app.attribution import attribute_bytes
    from app.services import open_catalog
    from index.errors import CatalogError

    if not 1 <= args.k <= 100:
        raise AttribError(f"-k must be between 1 and 100, not {args.k}", code="bad_argument")
    several = len(args.images) > 1
    if not several:  # one image: a problem is the command's error, as before
        read_image(args.images[0])
    catalog = open_catalog(Settings())
    failed = 0
    try:
        for path in tqdm(args.images, unit="img", desc="attributing", file=sys.stderr, disable=not several):
            try:
                result = attribute_bytes(catalog, read_image(path), args.k, space=args.space)
            except AttribError as exc:
                if not several or isinstance(exc, CatalogError):  # the catalog's problem, not the file's
                    raise
                failed += 1
                print_failure(path, exc, args.json)
                continue
            print_attribution(path if several else None, result, args)
    finally:
        catalog.close()
    if failed:
        print(f"error: {failed} of {len(args.images)} images could not be attributed", file=sys.stderr)
    return 1 if failed else 0


def read_image(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AttribError(f"cannot read {path}: {exc.strerror or exc}", code="bad_path") from exc


def print_attribution(path: Path | None, result, args) -> None:
    if args.json:
        answer = attribution_json(result, args.k)
        print(json.dumps({"file": str(path), **answer} if path else answer), flush=True)
    else:
        print(f"== {path}\n{format_attribution(result)}\n" if path else format_attribution(result), flush=True)


def print_failure(path: Path, exc: AttribError, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"file": str(path), "error": {"code": exc.code, "message": str(exc)}}), flush=True)
    else:
        print(f"== {path}\nerror [{exc.code}]: {exc}\n", flush=True)


def cmd_reindex(_args, _rest) -> int:
    from tqdm import tqdm

    from app.services import open_catalog
    from index.catalog import reindex

    catalog = open_catalog(Settings())
    try:
        with tqdm(total=catalog.count(), unit="img", desc="re-embedding", file=sys.stderr) as bar:
            spaces = reindex(catalog, progress=bar.update)
    finally:
        catalog.close()
    for name, info in sorted(spaces.items()):
        print(f"space {name}: {info.count} vectors, head {info.head_id}")
    print(f"reindexed {catalog.count()} sources with backbone {catalog.backbone_id}")
    return 0


def cmd_serve(args, _rest) -> int:
    from app.timeouts import run_server, server_config

    settings = Settings()
    workers = settings.workers if args.workers is None else args.workers
    if workers < 1:
        raise AttribError(f"--workers must be at least 1, not {workers}", code="bad_argument")
    if workers > MAX_WORKERS:
        raise AttribError(f"--workers must be at most {MAX_WORKERS}, not {workers}", code="bad_argument")
    os.environ["ATTRIB_WORKERS"] = str(workers)  # the workers read their settings (mapped indexes) from it
    run_server(server_config(settings, args.host, args.port, workers))
    return 0


def cmd_worker(args, _rest) -> int:
    from app.services import open_catalog
    from app.worker import run_worker, stop_on_signals

    settings = Settings()
    if settings.ingest_queue != "external":
        raise AttribError("`attrib worker` runs jobs queued for workers: set ATTRIB_INGEST_QUEUE=external (with a "
                          "PostgreSQL database) for the server and the workers", code="queue_not_external")
    poll = settings.worker_poll_seconds if args.poll_seconds is None else args.poll_seconds
    if not 0 < poll <= MAX_POLL_SECONDS:  # also refuses nan
        raise AttribError(f"--poll-seconds must be positive and at most {MAX_POLL_SECONDS:g}, not {poll}",
                          code="bad_argument")
    logging.getLogger("app.worker").setLevel(logging.INFO)
    logging.getLogger("index.jobs.jobs").setLevel(logging.INFO)
    stop = stop_on_signals()
    catalog = open_catalog(settings)
    try:
        finished = run_worker(catalog, poll, args.once, stop, settings.worker_stale_seconds)
    finally:
        catalog.close()
    print(f"worker stopped: ran {finished} jobs", file=sys.stderr)
    return 0


# -- training and evaluation live in training/ -------------------------------------------------


def cmd_train(args, rest) -> int:
    from training import train

    if not args.from_catalog:
        return train.main(rest)
    # the catalog's sources as catalog anchors, the query pool as pool anchors; labels never used
    settings = Settings()
    return train.main(rest + ["--from-catalog"], catalog_images=catalog_image_paths(settings),
                      pool_images=pool_image_paths(settings))


def catalog_image_paths(settings: Settings) -> list[Path]:
    from app.services import open_database
    from index.catalog import BlobStore, source_image_paths

    engine, sessions = open_database(settings)
    try:
        return source_image_paths(sessions, BlobStore.under(settings.home))
    finally:
        engine.dispose()


def pool_image_paths(settings: Settings) -> list[Path]:
    from app.services import open_database, open_pool

    engine, sessions = open_database(settings)
    try:
        return open_pool(settings, sessions).image_paths()
    finally:
        engine.dispose()


def cmd_eval(_args, rest) -> int:
    from training import evaluate

    return evaluate.main(rest)


if __name__ == "__main__":
    sys.exit(main())
