"""Ingestion into the catalog: files are read, decoded and checked in a pool of threads
(prepare.py), embedded in batches (pipeline.py), and their rows, blobs, features and vectors
committed by a writer thread (ingest_rows.py); items.py holds what passes between the stages.
"""

from index.ingest.items import IngestItem, IngestResult
from index.ingest.pipeline import ingest

__all__ = ["IngestItem", "IngestResult", "ingest"]
