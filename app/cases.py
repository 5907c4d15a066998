"""Reading an attribution answer (the JSON of POST /attribute) for the review desk.

`headline` is the one place that decides what a case's list row shows: the answer's `verdict`
(one answer across spaces); for answers stored before there was one, a concept's calibrated
`probability` and a space's `none_probability` when the answer carries them, else `share`.
"""

from __future__ import annotations

from index.catalog import CONTENT, Catalog
from index.db import Actor
from index.desk import Headline, create_case
from index.images import DecodedImage


def main_space(answer: dict) -> dict | None:
    """The content space if it answered, else the first space that did (in the answer's order)."""
    spaces = answer.get("spaces") or {}
    ordered = ([spaces[CONTENT]] if CONTENT in spaces else []) + [s for n, s in spaces.items() if n != CONTENT]
    return next((space for space in ordered if space.get("available") and space.get("concepts")), None)


def headline(answer: dict) -> Headline:
    """Top concept, confidence and none-probability: the answer's `verdict` when it has one;
    otherwise (answers stored before the verdict) the main space's top concept, its `probability`
    if present and not null, else its `share`, and the space's `none_probability`."""
    verdict = answer.get("verdict")
    if isinstance(verdict, dict) and verdict.get("concept"):
        return Headline(verdict["concept"], _number(verdict.get("probability")), _number(verdict.get("none_probability")))
    space = main_space(answer)
    if space is None:
        return Headline(None, None, None)
    top = space["concepts"][0]
    confidence = top.get("probability") if top.get("probability") is not None else top.get("share")
    none = space.get("none_probability")
    return Headline(top.get("concept"), _number(confidence), _number(none))


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def ranking(space: dict | None) -> list[str]:
    return [concept["concept"] for concept in (space or {}).get("concepts", [])]


def compare(before: dict, after: dict) -> tuple[bool, dict]:
    """(did any space's top concept change, {space: {before, after}} for every space whose
    ranking changed). A space present on one side only counts as changed."""
    old, new = before.get("spaces") or {}, after.get("spaces") or {}
    changed, changes = False, {}
    for name in list(dict.fromkeys([*old, *new])):
        was, now = ranking(old.get(name)), ranking(new.get(name))
        if was != now:
            changes[name] = {"before": was, "after": now}
        if was[:1] != now[:1]:
            changed = True
    return changed, changes


def head_ids(answer: dict) -> dict[str, str]:
    """{space: head id} of the spaces that answered."""
    return {name: space["head_id"] for name, space in (answer.get("spaces") or {}).items() if space.get("head_id")}


def open_case(catalog: Catalog, actor: Actor, data: bytes, image: DecodedImage, filename: str, params: dict,
              answer: dict) -> int:
    """Store a case for an answer (the JSON of `attribute_response`); returns its id."""
    return create_case(catalog.sessions, catalog.blobs, actor, data, image, filename, params, answer,
                       head_ids(answer), headline(answer))
