"""The JSON manifest of POST /index, parsed within limits.

A manifest is refused as a whole (422 `bad_manifest`) when it is not strict JSON (no `NaN`,
`Infinity` or numbers that overflow to them), nests deeper than MAX_DEPTH, or has a NUL character
in any `meta` string. Its size is capped by the multipart form-field limit (1 MiB; over it, 400).
Filenames and concept names are checked per file, so a bad one rejects only its own file.
"""

from __future__ import annotations

import json
import math
import re

from app.errors import ApiError

MAX_DEPTH = 32
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def bad_manifest(why: str) -> ApiError:
    return ApiError(f"the manifest is malformed: {why}", code="bad_manifest", status=422)


def parse_manifest(text: str) -> dict[str, tuple[str, dict]]:
    """{filename: (concept, meta)} from either manifest shape."""
    data = load_json(text)
    if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
        return {name: (concept, {}) for name, concept in data.items()}
    if not isinstance(data, list):
        raise bad_manifest('expected {"filename": "concept"} or a list of {"filename", "concept"} objects')
    entries = {}
    for number, entry in enumerate(data):
        if not (isinstance(entry, dict) and isinstance(entry.get("filename"), str)
                and isinstance(entry.get("concept"), str) and isinstance(entry.get("meta", {}), dict)):
            raise bad_manifest(f"entry {number} needs string `filename` and `concept` (and an optional object `meta`)")
        meta = entry.get("meta", {})
        if _has_nul(meta):
            raise bad_manifest(f"entry {number} has a NUL character in its `meta`")
        entries[entry["filename"]] = (entry["concept"], meta)
    return entries


def load_json(text: str):
    """Strict JSON, nested at most MAX_DEPTH deep (checked before parsing, without recursion)."""
    if nesting_depth(text) > MAX_DEPTH:
        raise bad_manifest(f"it is nested more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise bad_manifest(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except ValueError as exc:  # _not_json, _finite, or an integer too long to convert
        raise bad_manifest(str(exc)) from exc


def nesting_depth(text: str) -> int:
    """How deep brackets nest outside strings; stops counting once past MAX_DEPTH."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
    return deepest


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON number")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal[:40]} is too large for a number")
    return value


def _has_nul(value) -> bool:
    """A NUL in any key or string (depth is already bounded, so recursion is safe)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False
