"""`attrib calibrate [MANIFEST] [--space NAME|all]`: fit the calibration of each space's live head.

With a labelled manifest (path,role,concept; its `query` rows are used), the fit learns from
real queries: a query whose concept is in the catalog has a source, one whose concept is not
has none. Without one, the label-free catalog self-fit is redone (it is also made on its own
when a space has none). Either way the fit is stored beside the head, under its head id.
"""

from __future__ import annotations

import sys
from pathlib import Path


def add_calibrate_parser(commands) -> None:
    calibrate = commands.add_parser("calibrate", help="fit calibrated probabilities for the live heads")
    calibrate.add_argument("manifest", nargs="?", type=Path, metavar="MANIFEST",
                           help="path,role,concept CSV whose query rows are labelled queries (default: self-fit)")
    calibrate.add_argument("--space", default="all", help="content, style, another space, or all (default)")
    calibrate.set_defaults(handler=cmd_calibrate)


def cmd_calibrate(args, _rest) -> int:
    from tqdm import tqdm

    from app.services import open_catalog
    from app.settings import Settings
    from index.calibration import embed_queries, embed_query_views, manifest_fit, manifest_queries
    from training.data import read_manifest

    catalog = open_catalog(Settings())
    try:
        spaces = _spaces(catalog, args.space)
        if args.manifest is None:
            fits = {name: catalog.calibrations.refit(catalog, live) for name, live in spaces.items()}
        else:
            queries = manifest_queries(read_manifest(args.manifest), args.manifest.name)
            with tqdm(total=len(queries), unit="img", desc="embedding queries", file=sys.stderr) as bar:
                features = embed_queries(catalog, [row.path for row in queries], bar.update)
            fits, views = {}, {}
            paths = [row.path for row in queries]
            for name, live in spaces.items():
                count = live.head.query_views[0]
                with tqdm(total=len(queries) if count else 0, unit="img", desc=f"{name}: {count} query views each",
                          file=sys.stderr, disable=not count) as bar:
                    view_features = embed_query_views(catalog, live.head, paths, views, bar.update)
                fits[name] = manifest_fit(catalog, live, queries, features, args.manifest.name, view_features)
                catalog.calibrations.save(fits[name])
        for name, calibration in fits.items():
            print(describe(name, calibration, catalog.calibrations.path(calibration.head_id)))
    finally:
        catalog.close()
    return 0


def _spaces(catalog, space: str) -> dict:
    from index.spaces import CONTENT
    from training.errors import AttribError

    live = catalog.spaces()
    if space == "all":
        return dict(sorted(live.items()))
    if space == CONTENT and CONTENT not in live:
        raise AttribError("the catalog has no content head yet: put one live with `attrib spaces set content "
                          "CHECKPOINT` first", code="space_not_found")
    return {space: catalog.live_space(space)}


def describe(name: str, calibration, path: Path) -> str:
    summary = calibration.summary
    if calibration.method == "uninformed":
        return f"space {name}: not fitted ({calibration.fitted_on}); none_probability stays 0.5"
    return (f"space {name}: head {calibration.head_id}, method {calibration.method}, {calibration.fitted_on}\n"
            f"  {summary['queries']} fit queries ({summary['none_queries']} without a source); on them: none AUROC "
            f"{summary['fit_none_auroc']:.3f}, top-1 ECE {summary['fit_top1_ece']:.3f}\n  saved to {path}")
