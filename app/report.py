"""A case's report: one self-contained HTML page (images inlined as data: URIs, inline CSS with
print rules, no script, no external asset) that a browser prints to PDF as it is.

Every value that came from a person or a file (filenames, concept names, notes, key names) is
HTML-escaped; the route serves the page with a Content-Security-Policy that allows nothing but
inline style and data: images.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from html import escape

from index.desk import CaseRecord

CANDIDATES_PER_SPACE = 5
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#111;margin:2rem auto;max-width:60rem;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:1.6rem 0 .5rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.4rem 0}td,th{border:1px solid #ddd;padding:.3rem .45rem;
text-align:left;vertical-align:top}th{background:#f4f4f4}.muted{color:#666}.query{max-width:100%;max-height:26rem}
.thumb{width:96px;height:96px;object-fit:cover;display:block}.sources{display:flex;gap:.4rem;flex-wrap:wrap}
.sources figure{margin:0;font-size:.75rem;width:96px}.superseded{color:#777;text-decoration:line-through}
.note{white-space:pre-wrap}.status{font-weight:600;text-transform:uppercase}.regions{margin:.4rem 0}.regions img{max-width:100%}
@media print{body{margin:0;max-width:none;font-size:11px}h2{break-after:avoid}tr,figure,section{break-inside:avoid}
a{color:inherit;text-decoration:none}}
@page{margin:1.5cm}
"""
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def data_uri(data: bytes | None, media_type: str = "image/jpeg") -> str | None:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}" if data else None


def _e(value) -> str:
    return escape("" if value is None else str(value))


def _number(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


@dataclass(frozen=True)
class RegionFigure:
    """The query and the decided source side by side, matched regions drawn (app/evidence.py)."""

    source_id: int
    jpeg: bytes | None
    regions: dict | None
    problem: str  # why there is no figure


def render_report(record: CaseRecord, query_jpeg: bytes | None, thumbnails: dict[int, bytes | None],
                  generated_at: datetime, regions: RegionFigure | None = None) -> str:
    """The page. `thumbnails` maps each candidate source id to its JPEG (None when it is gone);
    `regions` is the figure of the decided source, if a decision names one."""
    case = record.case
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>Case {case.id}: attribution review report</title><style>{STYLE}</style></head><body>",
        f"<h1>Case {case.id}: attribution review report</h1>",
        f"<p class=muted>Generated {_e(generated_at.isoformat(timespec='seconds'))} by attrib.</p>",
        _summary(record),
        "<h2>Query image</h2>",
        (f"<img class=query alt='query image' src='{data_uri(query_jpeg)}'>" if query_jpeg
         else "<p class=muted>The stored query image could not be read.</p>"),
        f"<p class=muted>{_e(case.filename)} · {case.width}×{case.height} {_e(case.format)} · sha256 "
        f"{_e(case.sha256)}</p>",
        "<h2>Top candidates</h2>",
        _candidates(case.answer, thumbnails),
        "<h2>Decisions</h2>",
        _decisions(record),
    ]
    if regions is not None:
        parts += ["<h2>Matched regions</h2>", _regions(regions)]
    if record.rescores:
        parts += ["<h2>Re-scorings</h2>", _rescores(record)]
    parts.append("</body></html>")
    return "\n".join(parts)


def _summary(record: CaseRecord) -> str:
    case = record.case
    heads = "".join(f"<div>{_e(space)}: <code>{_e(head)}</code></div>" for space, head in (case.head_ids or {}).items())
    rows = [
        ("Status", f"<span class=status>{_e(case.status)}</span>"),
        ("Created", f"{_e(case.created_at.isoformat(timespec='seconds'))} by key {_e(case.key_name)}"
                    f" (id {_e(case.key_id)})"),
        ("Verdict", _verdict(case.answer.get("verdict"))),
        ("Top concept", f"{_e(case.top_concept or '—')} · confidence {_number(case.confidence)} · "
                        f"none of these {_number(case.none_probability)}"),
        ("Backbone", f"<code>{_e(case.backbone_id)}</code>"),
        ("Heads", heads or "—"),
    ]
    return "<table>" + "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows) + "</table>"


def _verdict(verdict: dict | None) -> str:
    """The answer's one verdict across spaces (answers stored before it have none)."""
    if not isinstance(verdict, dict):
        return "—"
    said = f"match: {_e(verdict.get('concept'))}" if verdict.get("kind") == "match" else "no source in the catalog"
    fused = "the surest space" if verdict.get("method") == "max_rule" else \
        f"a {_e(verdict.get('method'))} fit ({_e(verdict.get('chosen'))})"
    return (f"<strong>{said}</strong> · probability {_number(verdict.get('probability'))} · none "
            f"{_number(verdict.get('none_probability'))} · ranked first by {_e(', '.join(verdict.get('spaces') or []) or '—')}"
            f" · fused from {fused}")


def _candidates(answer: dict, thumbnails: dict[int, bytes | None]) -> str:
    blocks = []
    for name, space in (answer.get("spaces") or {}).items():
        header = f"<h3>{_e(name)} <span class=muted>head {_e(space.get('head_id') or '—')}</span></h3>"
        if not space.get("available"):
            blocks.append(f"<section>{header}<p class=muted>{_e(space.get('message') or 'not available')}</p></section>")
            continue
        none = space.get("none_probability")
        rows = ["<tr><th>#</th><th>Concept</th><th>Score</th><th>Share</th><th>Probability</th><th>Best sources</th></tr>"]
        for rank, concept in enumerate(space.get("concepts", [])[:CANDIDATES_PER_SPACE], 1):
            rows.append(f"<tr><td>{rank}</td><td>{_e(concept.get('concept'))}</td><td>{_number(concept.get('score'))}</td>"
                        f"<td>{_number(concept.get('share'))}</td><td>{_number(concept.get('probability'))}</td>"
                        f"<td><div class=sources>{_sources(concept.get('sources', []), thumbnails)}</div></td></tr>")
        extra = f"<p>Probability that none of these is the source: {_number(none)}</p>" if none is not None else ""
        blocks.append(f"<section>{header}<table>{''.join(rows)}</table>{extra}</section>")
    return "".join(blocks) or "<p class=muted>No space answered.</p>"


def _sources(sources: list[dict], thumbnails: dict[int, bytes | None]) -> str:
    figures = []
    for source in sources:
        uri = data_uri(thumbnails.get(source.get("id")))
        image = f"<img class=thumb alt='source {_e(source.get('id'))}' src='{uri}'>" if uri else \
            "<div class='thumb muted'>image no longer in the catalog</div>"
        figures.append(f"<figure>{image}<figcaption>#{_e(source.get('id'))} {_e(source.get('filename'))}"
                       f"<br>score {_number(source.get('score'))}</figcaption></figure>")
    return "".join(figures)


def _decisions(record: CaseRecord) -> str:
    if not record.decisions:
        return "<p class=muted>No decision yet: the case is open.</p>"
    rows = ["<tr><th>#</th><th>When</th><th>Reviewer</th><th>Decision</th><th>Concepts</th><th>Sources</th><th>Note</th></tr>"]
    last = record.decisions[-1].id
    for row in record.decisions:
        mark = "" if row.id == last else " class=superseded"
        rows.append(f"<tr><td>{row.id}</td><td>{_e(row.created_at.isoformat(timespec='seconds'))}</td>"
                    f"<td>{_e(row.key_name)} (id {_e(row.key_id)})</td><td{mark}>{_e(row.decision)}"
                    f"{'' if row.id == last else ' (superseded)'}</td><td>{_e(', '.join(row.concepts or []))}</td>"
                    f"<td>{_e(', '.join(str(i) for i in row.source_ids or []))}</td>"
                    f"<td class=note>{_e(row.note)}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _rescores(record: CaseRecord) -> str:
    rows = ["<tr><th>When</th><th>By</th><th>Heads</th><th>Top concept changed</th><th>Rankings that changed</th></tr>"]
    for row in record.rescores:
        heads = ", ".join(f"{space}: {head}" for space, head in (row.head_ids or {}).items())
        changes = "".join(f"<div>{_e(space)}: {_e(', '.join(c['before']))} → {_e(', '.join(c['after']))}</div>"
                          for space, c in (row.changes or {}).items())
        rows.append(f"<tr><td>{_e(row.created_at.isoformat(timespec='seconds'))}</td><td>{_e(row.key_name)}</td>"
                    f"<td><code>{_e(heads)}</code></td><td>{'yes' if row.changed else 'no'}</td>"
                    f"<td>{changes or '—'}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _regions(figure: RegionFigure) -> str:
    if figure.jpeg is None:
        return f"<p class=muted>No figure for source #{figure.source_id}: {_e(figure.problem)}</p>"
    found = figure.regions or {}
    said = (f"{found.get('inliers')} matched keypoints{' (the query is mirrored)' if found.get('mirrored') else ''}; "
            f"the query lies at {_e(found.get('source_region'))} in the source" if found.get("source_region")
            else f"only {found.get('inliers')} matched keypoints: no region is claimed")
    return (f"<figure class=regions><img alt='the query and source #{figure.source_id} side by side' "
            f"src='{data_uri(figure.jpeg)}'><figcaption>Left: the query; right: source #{figure.source_id}. "
            f"Orange and blue boxes: the matched keypoints in each; yellow: the query's frame in the source. "
            f"{said}.</figcaption></figure>")
