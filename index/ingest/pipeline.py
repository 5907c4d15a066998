"""Ingestion, as a pipeline of three stages that overlap:

1. read, decode, validate and crop each file in a pool of threads (`prepare.py`);
2. in the calling thread: skip duplicates, normalise and run each backbone on a batch (the
   encoder, and the copy backbone when the catalog has one);
3. in a writer thread: insert the batch's rows and blobs and store its features and vectors
   (`ingest_rows.py`), while stage 2 embeds the next batch.

One bad file never spoils a batch: it becomes a `rejected` result with a code and a reason.
A batch's rows are committed before its results are reported, so nothing acknowledged is lost.
Each new source and concept is recorded in the audit log, in the transaction that adds it.
`on_decoded` is called once per file as soon as it is decoded (or rejected), so progress moves
per file; `on_result` once per file right after its batch is committed (in the writer thread),
in input order.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from index.catalog import Catalog, existing_sources
from index.db import CLI, Actor
from index.ingest.ingest_rows import commit_chunk
from index.ingest.items import IngestItem, IngestResult, Pending
from index.ingest.prepare import Prepared, PreparePool

log = logging.getLogger(__name__)
MAX_CONCEPT_LENGTH = 255
# Rows are committed per batch; the index file is rewritten at most this often during a long
# ingest (and at its end). A crash in between loses no work: reconcile re-embeds from the blobs.
SAVE_EVERY_SECONDS = 60.0


def ingest(
    catalog: Catalog,
    items: Iterable[IngestItem],
    on_result: Callable[[IngestResult], None] | None = None,
    actor: Actor = CLI,
    on_decoded: Callable[[], None] | None = None,
) -> list[IngestResult]:
    """Ingest items batch by batch, decoding in `config.decode_workers` threads (0: in this
    one); results come back in input order. `actor` is who the audit log names."""
    items = list(items)
    results: list[IngestResult] = []
    config = catalog.config
    try:
        crops = {backbone_id: backbone.crop for backbone_id, backbone in catalog.backbones.items()}
        with PreparePool(crops, config.max_pixels, config.decode_workers, on_done=on_decoded,
                         device_decode=_device_decode(catalog)) as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="attrib-ingest-writer") as writer:
            prepared = pool.map(_source(item) for item in items)
            in_flight: Future | None = None
            for chunk in _chunks(zip(items, prepared), config.batch_size):
                staged = _embed_chunk(catalog, chunk)
                if in_flight is not None:
                    results.extend(in_flight.result())
                in_flight = writer.submit(_write_chunk, catalog, staged, actor, on_result)
            if in_flight is not None:
                results.extend(in_flight.result())
    finally:
        catalog.flush()
    return results


def _source(item: IngestItem) -> bytes | Path | None:
    """What a decoding worker gets: the bytes or the path, or None for a file rejected up front."""
    if item.rejection or _concept_problem(item.concept):
        return None
    return item.data if item.data is not None else item.path


def _chunks(pairs: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for pair in pairs:
        chunk.append(pair)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class _Staged:
    items: list[IngestItem]
    results: dict[int, IngestResult]
    pending: dict[int, Pending]
    repeats: dict[int, int]
    features: dict | None = None  # backbone id -> features of the pending files, in order


def _embed_chunk(catalog: Catalog, chunk: list[tuple[IngestItem, Prepared | None]]) -> _Staged:
    """Stage 2: rejections and duplicates are settled; the rest are embedded."""
    staged = _Staged([item for item, _ in chunk], {}, {}, {})
    for position, (item, prepared) in enumerate(chunk):
        outcome = _validate(item, prepared)
        if isinstance(outcome, IngestResult):
            staged.results[position] = outcome
        else:
            staged.pending[position] = outcome
    if staged.pending:
        staged.repeats = _mark_duplicates(catalog, staged.pending, staged.results)
    if staged.pending:
        staged.features = _features(catalog, staged)
    return staged


def _features(catalog: Catalog, staged: _Staged) -> dict[str, np.ndarray]:
    """Features of the pending files by backbone, in order. With one backbone: Pillow-decoded
    pixels in one forward, JPEGs left for the device in another (a JPEG the device cannot decode
    is rejected as corrupt). With more, every file is decoded by Pillow and each backbone runs once."""
    if len(catalog.backbones) > 1:
        pixels = {bid: [p.prepared.pixels[bid] for p in staged.pending.values()] for bid in catalog.backbones}
        return {bid: backbone.features_of_pixels(pixels[bid]) for bid, backbone in catalog.backbones.items()}
    encoder = catalog.encoder
    on_host = [pos for pos, p in staged.pending.items() if not p.prepared.on_device]
    on_device = [pos for pos, p in staged.pending.items() if p.prepared.on_device]
    rows: dict[int, np.ndarray] = {}
    if on_host:
        crops = [staged.pending[p].prepared.pixels[encoder.backbone_id] for p in on_host]
        rows.update(zip(on_host, encoder.features_of_pixels(crops)))
    if on_device:
        from training.device_decode import jpeg_features

        features, decoded = jpeg_features(encoder, [staged.pending[p].prepared.data for p in on_device])
        good = [pos for pos, ok in zip(on_device, decoded) if ok]
        rows.update(zip(good, features))
        for pos in set(on_device) - set(good):
            item = staged.pending.pop(pos).item
            staged.results[pos] = IngestResult(item.filename, "rejected", item.concept, code="corrupt_image",
                                               reason="the JPEG image is truncated or corrupt (device decoder)")
    stacked = np.stack([rows[pos] for pos in staged.pending]) if staged.pending else np.zeros((0, encoder.feature_dim))
    return {encoder.backbone_id: stacked}


def _device_decode(catalog: Catalog) -> bool:
    setting = catalog.config.device_decode
    on = setting == "on" or (setting == "auto" and catalog.encoder.device.type == "cuda")
    return on and len(catalog.backbones) == 1  # the copy backbone takes Pillow's pixels


def _write_chunk(catalog: Catalog, staged: _Staged, actor: Actor, on_result) -> list[IngestResult]:
    """Stage 3 (the writer thread): commit, then report the results in input order at once (a
    job records them right after its rows are committed, not a batch later)."""
    results = staged.results
    if staged.pending:
        for position, (status, source_id) in commit_chunk(catalog, staged.pending, staged.features, actor).items():
            results[position] = IngestResult(staged.items[position].filename, status,
                                             staged.pending[position].concept, source_id)
    for position, first in staged.repeats.items():  # the same bytes as an earlier file of this batch
        earlier, filename = results[first], staged.items[position].filename
        results[position] = (replace(earlier, filename=filename) if earlier.status == "rejected" else
                             IngestResult(filename, "duplicate", earlier.concept, earlier.source_id))
    catalog.flush(max_age=SAVE_EVERY_SECONDS)
    return _report([results[position] for position in range(len(staged.items))], on_result)


def _report(results: list[IngestResult], on_result) -> list[IngestResult]:
    if on_result:
        for result in results:
            on_result(result)
    return results


def _concept_problem(concept: str | None) -> tuple[str, str] | None:
    concept = (concept or "").strip()
    if not concept:
        return "missing_concept", "no concept name was given for this file"
    if len(concept) > MAX_CONCEPT_LENGTH or not concept.isprintable():
        return "bad_concept", f"concept names are 1-{MAX_CONCEPT_LENGTH} printable characters"
    return None


def _validate(item: IngestItem, prepared: Prepared | None) -> Pending | IngestResult:
    problem = item.rejection or _concept_problem(item.concept) or (prepared.rejection if prepared else None)
    if problem or prepared is None:
        code, reason = problem or ("corrupt_image", "the file was not decoded")
        return IngestResult(item.filename, "rejected", item.concept, code=code, reason=reason)
    return Pending(item, item.concept.strip(), prepared)


def _mark_duplicates(catalog: Catalog, pending: dict[int, Pending], results: dict[int, IngestResult]) -> dict[int, int]:
    """Same bytes under the same concept, in the catalog or earlier in this chunk.

    Returns {position: earlier position} for the repeats within the chunk.
    """
    known = existing_sources(catalog.sessions, {(p.concept, p.prepared.sha256) for p in pending.values()})
    first_seen: dict[tuple[str, str], int] = {}
    repeats: dict[int, int] = {}
    for position, item in list(pending.items()):
        key = (item.concept, item.prepared.sha256)
        if key in known:
            results[position] = IngestResult(item.item.filename, "duplicate", item.concept, known[key])
            del pending[position]
        elif key in first_seen:
            repeats[position] = first_seen[key]
            del pending[position]
        else:
            first_seen[key] = position
    return repeats
