"""`attrib train` and `attrib eval`: training and evaluation live in training/; `train
--from-catalog` hands it the catalog's sources and the query pool's images."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings


def add_train_parser(commands) -> None:
    train = commands.add_parser("train", help="train an attribution encoder (see --help)", add_help=False)
    train.add_argument("--from-catalog", action="store_true")
    train.set_defaults(handler=cmd_train)
    commands.add_parser("eval", help="evaluate an encoder on benchmarks (see --help)", add_help=False).set_defaults(
        handler=cmd_eval
    )


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
    if "--service" in rest:  # the service's answers: each space and the verdict (app/cli/eval_service.py)
        from app.cli import eval_service

        return eval_service.main(rest)
    from training import evaluate

    return evaluate.main(rest)
