"""`attrib attribute`: which source concepts an image is from, printed for a person or as the
JSON that POST /attribute returns."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.settings import Settings
from training.errors import AttribError


def add_attribute_parser(commands) -> None:
    attribute = commands.add_parser("attribute", help="which source concepts is this image from?")
    attribute.add_argument("images", type=Path, nargs="+", metavar="IMAGE",
                           help="one or more images; several are attributed in one process, with a progress bar")
    attribute.add_argument("-k", type=int, default=5, help="number of concepts (1-100, default 5)")
    attribute.add_argument("--space", default="all", help="content, style, another space, or all (default)")
    attribute.add_argument("--evidence", choices=("none", "regions"), default="none",
                           help="regions: also match each space's first concept's sources region by region "
                           "(inliers, boxes), as POST /attribute?evidence=regions does")
    attribute.add_argument("--json", action="store_true",
                           help="print one JSON object per image (as POST /attribute), one per line, "
                           "with `file` added when there are several")
    attribute.set_defaults(handler=cmd_attribute)


def cmd_attribute(args, _rest) -> int:
    """Attribute each image; a file that can't be read or decoded is reported and the rest go on."""
    from tqdm import tqdm

    from app.attribution import attribute_bytes
    from app.routes.attribute import region_evidence
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
                regions = region_evidence(catalog, result) if args.evidence == "regions" else None
            except AttribError as exc:
                if not several or isinstance(exc, CatalogError):  # the catalog's problem, not the file's
                    raise
                failed += 1
                print_failure(path, exc, args.json)
                continue
            print_attribution(path if several else None, result, args, regions)
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


def print_attribution(path: Path | None, result, args, regions: dict | None = None) -> None:
    if args.json:
        answer = attribution_json(result, args.k, regions)
        print(json.dumps({"file": str(path), **answer} if path else answer), flush=True)
    else:
        text = format_attribution(result, regions)
        print(f"== {path}\n{text}\n" if path else text, flush=True)


def print_failure(path: Path, exc: AttribError, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"file": str(path), "error": {"code": exc.code, "message": str(exc)}}), flush=True)
    else:
        print(f"== {path}\nerror [{exc.code}]: {exc}\n", flush=True)


def attribution_json(result, k: int, regions: dict | None = None) -> dict:
    """The same object as POST /attribute returns (with `?evidence=regions` when `regions` is given)."""
    from app.routes.attribute import attribute_response

    return attribute_response(result, k, regions).model_dump(mode="json")


def format_attribution(result, regions: dict | None = None) -> str:
    lines = [format_verdict(result.verdict), f"backbone {result.backbone_id}"]
    for name, answer in result.spaces.items():
        lines.append("")
        if not answer.available:
            lines.append(f"[{name}] not available: {answer.message}")
            continue
        lines.append(f"[{name}] head {answer.head_id}")
        lines.append(f"     no plausible source: {answer.none_probability:6.1%}   "
                     f"(calibration: {answer.calibration.method}; {answer.calibration.fitted_on})")
        for rank, match in enumerate(answer.concepts, 1):
            lines.append(f"{rank:>3}. {match.concept:<32} probability {match.probability:6.1%}   "
                         f"score {match.score:+.4f}  share {match.share:6.1%} (uncalibrated)")
            for source in match.sources:
                lines.append(f"       source #{source.id:<8} {source.score:+.4f}  {source.filename}")
                if rank == 1 and regions and source.id in regions:
                    lines.append(f"                      {format_regions(regions[source.id])}")
    return "\n".join(lines)


def format_regions(match) -> str:
    """One line of region evidence (training/regions.py's RegionMatch)."""
    if not match.matched:
        return f"matched regions: none ({match.inliers} inliers)"
    mirrored = ", mirrored" if match.mirrored else ""
    query, source = ([round(v) for v in box] for box in (match.query_box, match.source_box))
    return f"matched regions: {match.inliers} inliers{mirrored}; query box {query}, source box {source}"


def format_verdict(verdict) -> str:
    if verdict is None:
        return "verdict: no space answered"
    said = f"match: {verdict.concept}" if verdict.kind == "match" else f"none (best candidate {verdict.concept})"
    source = f"; best source #{verdict.source.id} {verdict.source.filename} in {verdict.source_space}" if verdict.source else ""
    return (f"verdict: {said}   probability {verdict.probability:6.1%}   none {verdict.none_probability:6.1%}   "
            f"(ranked first by {', '.join(verdict.spaces) or '-'}; fused by {verdict.method}/{verdict.chosen}"
            f"{', reading matched regions' if verdict.read_regions else ''}){source}")
