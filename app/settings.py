"""Settings from ATTRIB_* environment variables, with embedded defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from index.catalog import CatalogConfig
from index.pool import Retention


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATTRIB_", extra="ignore")

    home: Path = Field(Path("var"), description="Where the embedded database, vectors and images live.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; SQLite under `home` when unset.")
    encoder: str = Field("default", description="'default', a backbone name, or an encoder checkpoint path.")
    encoder_weights: Path | None = Field(None, description="Local weights for open_clip:/timm: backbones.")
    device: str = Field("auto", description="'auto', 'cpu' or 'cuda'.")
    index_factory: str = Field("Flat", description="FAISS factory string, e.g. Flat, HNSW32, IVF256,Flat.")
    batch_size: int = Field(32, ge=1, le=1024, description="Images embedded per batch.")
    max_pixels: int = Field(50_000_000, ge=1, description="Larger images are rejected (decompression bombs).")
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1, description="Larger files get 413 (or are rejected in a batch).")
    max_request_bytes: int = Field(1024 * 1024 * 1024, ge=1, description="Larger request bodies get 413.")
    async_batch_files: int = Field(
        64, ge=1, description="POST /index batches with more files run as a background job (202)."
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

    @property
    def database_url_resolved(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'attrib.db').resolve()}"

    def catalog_config(self) -> CatalogConfig:
        return CatalogConfig(
            home=self.home,
            database_url=self.database_url_resolved,
            factory=self.index_factory,
            max_pixels=self.max_pixels,
            batch_size=self.batch_size,
        )

    def retention(self) -> Retention:
        return Retention(self.pool_max_queries, self.pool_max_age_days)
