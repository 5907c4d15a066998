"""`attrib` command line: index, attribute, reindex, verify, serve, worker, demo, train, eval, calibrate.

Every command reads ATTRIB_HOME and ATTRIB_DATABASE_URL (see app/settings.py). Problems a user
can fix print one `error:` line and exit 1; argument mistakes exit 2. One module per command
group adds its commands to the parser: index.py (index, reindex, demo, index-advice),
attribute.py, spaces.py, calibrate.py, pool.py, serve.py (serve, worker), keys.py and train.py
(train, eval), verify.py. Each imports what its command runs only when it runs, so `attrib --help` and the
key commands start without torch.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from app.cli.attribute import add_attribute_parser
from app.cli.calibrate import add_calibrate_parser
from app.cli.index import add_advice_parser, add_demo_parser, add_index_parser, add_reindex_parser
from app.cli.keys import add_keys_parser
from app.cli.pool import add_pool_parser
from app.cli.serve import add_serve_parser
from app.cli.spaces import add_spaces_parser
from app.cli.train import add_train_parser
from app.cli.verify import add_verify_parser
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
    add_index_parser(commands)
    add_attribute_parser(commands)
    add_reindex_parser(commands)
    add_verify_parser(commands)
    add_spaces_parser(commands)
    add_calibrate_parser(commands)
    add_pool_parser(commands)
    add_advice_parser(commands)
    add_demo_parser(commands)
    add_serve_parser(commands)
    add_keys_parser(commands)
    add_train_parser(commands)
    return parser
