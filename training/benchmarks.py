"""Benchmarks for `attrib eval`: which images are queries, which are the gallery, and which
gallery images are each query's positives. From a `path,role,concept` manifest, or from the AbC
layout (Wang et al., ICCV 2023)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from training.data import DataError, list_images, read_manifest


@dataclass
class Benchmark:
    name: str
    queries: list[Path]
    query_concepts: list[str]
    gallery: list[Path]
    gallery_concepts: list[str | None]  # None for distractors
    protocol: str = "full"


def manifest_benchmark(path: str | Path, protocol: str = "full") -> Benchmark:
    rows = read_manifest(path)
    queries = [r for r in rows if r.role == "query"]
    gallery = [r for r in rows if r.role != "query"]
    if not queries or not any(r.role == "source" for r in gallery):
        raise DataError(f"manifest {path} needs query and source rows to be evaluated")
    return Benchmark(
        Path(path).name, [r.path for r in queries], [r.concept for r in queries],
        [r.path for r in gallery], [r.concept if r.role == "source" else None for r in gallery], protocol,
    )


def abc_benchmark(root: str | Path, split: str, prompt: str, pool: str = "laion_subset") -> Benchmark:
    """The AbC layout (PeterWang512/GenDataAttribution): `<root>/dataset/json/<split>.json` (or
    `<root>/json/<split>.json`) lists one entry per customized model, `{"exemplar": [...],
    "synth": {"gpt": [...], "object": [...]}}`, paths relative to `root`; the distractor pool is
    the images under `<root>/<pool>`. Each synthetic image is ranked against the pool plus its
    own entry's exemplars (the abc protocol)."""
    root = Path(root)
    entries = _read_abc_split(root, split)
    queries, query_concepts, gallery, gallery_concepts = [], [], [], []
    for number, entry in enumerate(entries):
        concept = f"{split}:{number}"
        synth = entry.get("synth", {}).get(prompt, [])
        queries += [root / p for p in synth]
        query_concepts += [concept] * len(synth)
        gallery += [root / p for p in entry.get("exemplar", [])]
        gallery_concepts += [concept] * len(entry.get("exemplar", []))
    if not queries:
        raise DataError(f"AbC split {split!r} has no synthetic images for prompt type {prompt!r}")
    distractors = list_images(root / pool) if (root / pool).is_dir() else []
    if not distractors:
        raise DataError(f"AbC distractor pool {root / pool} has no images")
    _require_files(queries + gallery, f"AbC split {split}")
    return Benchmark(
        f"abc:{split}:{prompt}", queries, query_concepts, distractors + gallery,
        [None] * len(distractors) + gallery_concepts, "abc",
    )


def _read_abc_split(root: Path, split: str) -> list[dict]:
    name = split if split.endswith(".json") else f"{split}.json"
    for candidate in (root / "dataset" / "json" / name, root / "json" / name, root / name):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text())
            except json.JSONDecodeError as exc:
                raise DataError(f"AbC split file {candidate} is not valid JSON: {exc}") from exc
            if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
                raise DataError(f"AbC split file {candidate} must be a JSON list of objects")
            return data
    raise DataError(f"AbC split {split!r} not found under {root}/dataset/json/")


def _require_files(paths: list[Path], where: str) -> None:
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise DataError(f"{where}: {len(absent)} image(s) not found, first {absent[0]}")
