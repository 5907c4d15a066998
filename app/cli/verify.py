"""`attrib verify [--repair] [--json]`: check that rows, stored features, every space's vectors,
images and thumbnails agree (index/jobs/consistency.py), online, beside a running server. Exit status 0
when everything agrees (after the repair, with --repair), 1 when something does not."""

from __future__ import annotations

import json


def add_verify_parser(commands) -> None:
    verify = commands.add_parser("verify", help="check that rows, features, vectors and images agree (like fsck)")
    verify.add_argument("--repair", action="store_true", help="repair what can be repaired, then check again")
    verify.add_argument("--json", action="store_true", help="print the report as one JSON object")
    verify.set_defaults(handler=cmd_verify)


def cmd_verify(args, _rest) -> int:
    from app.services import open_catalog
    from app.settings import Settings
    from index.jobs import open_as_found, repair, verify

    catalog = open_as_found(open_catalog(Settings()))
    try:
        report = repair(catalog) if args.repair else verify(catalog)
    finally:
        catalog.close()
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_report(report))
    return 0 if report.clean else 1


def format_report(report) -> str:
    lines = [f"repaired: {line}" for line in report.repaired]
    lines += [f"mismatch: {problem.line()}" for problem in report.problems]
    lines += [f"note: {note}" for note in report.notes]
    verdict = "clean" if report.clean else f"{len(report.problems)} mismatch(es)"
    return "\n".join(lines + [f"{verdict}: {report.sources} sources checked"])
