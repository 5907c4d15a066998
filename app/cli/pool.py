"""`attrib pool`: import unlabeled synthetic images, list the pool, see its size, purge it."""

from __future__ import annotations

import sys
from pathlib import Path

from training.errors import AttribError


def add_pool_parser(commands) -> None:
    pool = commands.add_parser("pool", help="the query pool: unlabeled synthetic images to train on")
    actions = pool.add_subparsers(dest="pool_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="import images (folders, files, or the query rows of manifests)")
    add.add_argument("paths", nargs="+", type=Path, metavar="FOLDER|IMAGE|MANIFEST")
    listing = actions.add_parser("list", help="the newest queries")
    listing.add_argument("--limit", type=int, default=20)
    actions.add_parser("stats", help="how many queries, from where, since when")
    purge = actions.add_parser("purge", help="remove queries (rows, images, cached features)")
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", type=int, default=[], metavar="ID")
    which.add_argument("--all", action="store_true", help="empty the pool")
    pool.set_defaults(handler=cmd_pool)


def cmd_pool(args, _rest) -> int:
    from app.services import open_database, open_pool
    from app.settings import Settings

    settings = Settings()
    engine, sessions = open_database(settings)
    pool = open_pool(settings, sessions)
    try:
        if args.pool_command == "add":
            return import_images(pool, args.paths, settings.max_pixels)
        if args.pool_command == "list":
            rows, total = pool.listing(0, args.limit)
            for row in rows:
                print(f"{row.id:>6}  {row.created_at:%Y-%m-%d %H:%M}  {row.origin:<9} x{row.times_seen:<4} {row.filename}")
            print(f"{len(rows)} of {total} queries")
        elif args.pool_command == "stats":
            stats = pool.stats()
            origins = ", ".join(f"{n} {origin}" for origin, n in sorted(stats["by_origin"].items())) or "none"
            print(f"{stats['queries']} queries ({origins}), {stats['requests']} requests, "
                  f"first {stats['first'] or '-'}, last {stats['last'] or '-'}")
        else:
            removed = pool.remove(pool.all_ids() if args.all else args.ids)
            print(f"removed {removed} queries")
            if args.ids and removed < len(set(args.ids)):
                raise AttribError(f"{len(set(args.ids)) - removed} of the ids are not in the pool", code="query_not_found")
    finally:
        engine.dispose()
    return 0


def import_images(pool, paths: list[Path], max_pixels: int) -> int:
    from tqdm import tqdm

    from app.cli.index import collect_image_files
    from index.images import ImageError, decode_image
    from training.data import read_manifest

    files: list[Path] = []
    for path in paths:
        if path.suffix.lower() == ".csv":
            files += [row.path for row in read_manifest(path) if row.role == "query"]
        else:
            files += collect_image_files([path])[0]
    rejected = 0
    for path in tqdm(files, unit="img", desc="importing", file=sys.stderr):
        try:
            data = path.read_bytes()
            pool.remember(data, decode_image(data, max_pixels), path.name, "import")
        except (OSError, ImageError) as exc:
            rejected += 1
            print(f"rejected {path}: {getattr(exc, 'message', exc)}", file=sys.stderr)
    print(f"imported {len(files) - rejected} images into the query pool, rejected {rejected}")
    return 1 if rejected else 0
