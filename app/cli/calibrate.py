"""`attrib calibrate [MANIFEST | --from-decisions] [--space NAME|all]`: fit the calibration of
each space's live head.

With a labelled manifest (path,role,concept; its `query` rows are used), the fit learns from
real queries: a query whose concept is in the catalog has a source, one whose concept is not
has none. `--from-decisions` does the same with the review desk's decided cases: the queries the
service was really asked about, labelled by reviewers. Without either, the label-free catalog
self-fit is redone (it is also made on its own when a space has none). Either way the fit is
stored beside the head, under its head id.
"""

from __future__ import annotations

import sys
from pathlib import Path


def add_calibrate_parser(commands) -> None:
    calibrate = commands.add_parser("calibrate", help="fit calibrated probabilities for the live heads")
    labels = calibrate.add_mutually_exclusive_group()
    labels.add_argument("manifest", nargs="?", type=Path, metavar="MANIFEST",
                        help="path,role,concept CSV whose query rows are labelled queries (default: self-fit)")
    labels.add_argument("--from-decisions", action="store_true",
                        help="fit from the review desk's decided cases (match / no_match) instead of a manifest")
    calibrate.add_argument("--space", default="all", help="content, style, another space, or all (default)")
    calibrate.set_defaults(handler=cmd_calibrate)


def cmd_calibrate(args, _rest) -> int:
    from app.services import open_catalog
    from app.settings import Settings
    from index.calibration import decision_queries, manifest_queries, record_fit, refit, refit_from_decisions
    from index.db import CLI
    from training.calibration import DECISIONS, MANIFEST
    from training.data import read_manifest

    catalog = open_catalog(Settings())
    try:
        spaces = _spaces(catalog, args.space)
        if args.from_decisions:
            queries = decision_queries(catalog)
            fits = _labelled_fits(catalog, spaces, queries, f"reviewers' decisions on {len(queries)} cases", DECISIONS)
        elif args.manifest is not None:
            queries = manifest_queries(read_manifest(args.manifest), args.manifest.name)
            fits = _labelled_fits(catalog, spaces, queries, f"manifest {args.manifest.name}", MANIFEST)
        else:
            fits = {name: refit(catalog, live) for name, live in spaces.items()}
        for name, calibration in fits.items():
            record_fit(catalog, CLI, name, calibration)
            print(describe(name, calibration, catalog.calibrations.path(calibration.head_id)))
        if args.from_decisions and args.space == "all":
            print(describe_verdict(refit_from_decisions(catalog, CLI)))
    finally:
        catalog.close()
    return 0


def _labelled_fits(catalog, spaces: dict, queries: list, name: str, method: str) -> dict:
    from tqdm import tqdm

    from index.calibration import labelled_fits, labelled_work

    with tqdm(total=labelled_work(spaces, queries), unit="img", desc="embedding queries and their views",
              file=sys.stderr) as bar:
        return labelled_fits(catalog, spaces, queries, name, method, bar.update)


def _spaces(catalog, space: str) -> dict:
    from index.catalog import CONTENT
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


def describe_verdict(outcome: dict) -> str:
    """One line on the verdict's refit from decisions: put live or not, and why."""
    if "log_loss_new" not in outcome:
        return f"verdict: kept the live fit ({outcome.get('reason', 'nothing to fit')})"
    said = "now live" if outcome["live"] else f"not better than the live {outcome['live_method']} fit: kept that one"
    return (f"verdict: a fit on {outcome['cases']} decided cases, {said}; held-back log-loss "
            f"{outcome['log_loss_new']} against {outcome['log_loss_live']} on {outcome['held_back']} cases")
