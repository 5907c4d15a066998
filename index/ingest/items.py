"""What ingestion passes between its stages: a file to ingest (`IngestItem`), a decoded file
waiting for its rows (`Pending`, from the pipeline to the writer, ingest_rows.py) and what came
of each file (`IngestResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from index.ingest.prepare import Prepared


@dataclass
class IngestItem:
    filename: str
    concept: str | None
    data: bytes | None = None
    path: Path | None = None
    meta: dict = field(default_factory=dict)
    rejection: tuple[str, str] | None = None  # (code, reason) found before ingestion, e.g. too large

    def read(self) -> bytes:
        return self.data if self.data is not None else Path(self.path).read_bytes()


@dataclass
class IngestResult:
    filename: str
    status: str  # indexed | duplicate | rejected
    concept: str | None = None
    source_id: int | None = None
    code: str | None = None
    reason: str | None = None


@dataclass
class Pending:
    item: IngestItem
    concept: str
    prepared: Prepared
