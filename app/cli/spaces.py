"""`attrib spaces`: list the search spaces, put a new head live, roll one back."""

from __future__ import annotations

import sys
from pathlib import Path

IDENTITY = "identity"


def add_spaces_parser(commands) -> None:
    spaces = commands.add_parser("spaces", help="list search spaces; put a new head live; roll back")
    actions = spaces.add_subparsers(dest="spaces_command", metavar="ACTION")
    put = actions.add_parser("set", help="build a space from a head checkpoint and switch to it")
    put.add_argument("name", help="the space, e.g. content")
    put.add_argument("checkpoint", help="an `attrib train` checkpoint, or 'identity' for raw backbone features")
    put.add_argument("--force", action="store_true", help="put a head live even though it lost its self-check to raw")
    back = actions.add_parser("rollback", help="put a space's previous head back live")
    back.add_argument("name")
    spaces.set_defaults(handler=cmd_spaces)


def cmd_spaces(args, _rest) -> int:
    from tqdm import tqdm

    from app.services import open_catalog
    from app.settings import Settings
    from index.calibration import put_live, rollback
    from index.catalog import check_name, prepare_head

    catalog = open_catalog(Settings())
    try:
        if args.spaces_command == "set":
            check_name(args.name)
            head, kept = prepare_head(catalog, None if args.checkpoint == IDENTITY else Path(args.checkpoint),
                                      force=args.force)
            with tqdm(total=len(catalog.features), unit="row", desc=f"building {args.name}", file=sys.stderr) as bar:
                info = put_live(catalog, args.name, head, kept, progress=bar.update)
            print(f"space {info.name} now serves head {info.head_id} ({info.count} vectors)")
        elif args.spaces_command == "rollback":
            info = rollback(catalog, args.name)
            print(f"space {info.name} rolled back to head {info.head_id} ({info.count} vectors)")
        else:
            print(format_spaces(catalog.spaces(), waiting_spaces(catalog)))
    finally:
        catalog.close()
    return 0


def format_spaces(spaces: dict, waiting: dict[str, str] | None = None) -> str:
    """A line per live space (its backbone, head, size, build time, previous head), then one per
    space that is not live, with the reason."""
    lines = [f"{'space':<10} {'backbone':<18} {'head':<44} {'vectors':>8}  {'dim':>5}  built (UTC)          "
             "previous head"]
    for name, space in sorted(spaces.items()):
        info = space.info
        lines.append(f"{name:<10} {info.backbone:<18} {info.head_id:<44} {len(space.index):>8}  {info.dim:>5}  "
                     f"{info.built_at:%Y-%m-%d %H:%M:%S}  {info.previous_head_id or '-'}")
    lines += [f"{name:<10} not live: {reason}" for name, reason in sorted((waiting or {}).items())]
    lines += [line for name, space in sorted(spaces.items()) if (line := self_check_line(name, space.head.self_check))]
    return "\n".join(lines)


def self_check_line(name: str, check: dict | None) -> str | None:
    """`content    self-check (350 derived queries, mAP of the worst kind/mean over kinds: raw 14.8/54.3, head
    15.3/55.2, distilled 12.5/49.4); kept head`."""
    from training.recipe import describe

    if not check:
        return None
    return f"{name:<10} self-check ({describe(check)}); kept {check.get('kept', check.get('chosen'))}"


def waiting_spaces(catalog) -> dict[str, str]:
    from app.attribution import unavailable_reason
    from index.catalog import COPY

    return {} if COPY in catalog.spaces() else {COPY: unavailable_reason(catalog, COPY)}
