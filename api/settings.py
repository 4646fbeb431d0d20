"""Service settings, from ``RETOUCH_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from retouch.io.load import DEFAULT_MAX_PIXELS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RETOUCH_", extra="ignore")

    data_dir: Path = Path("retouch-data")
    api_key: str | None = None
    workers: int | None = None
    scheduler: str | None = None
    max_upload_bytes: int = 200 * 1024 * 1024  # per uploaded file (a scan, or a batch's zip archive)
    max_batch_upload_bytes: int = 1024 * 1024 * 1024  # a whole POST /v1/batches body: all its files together
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_zip_members: int = 2000
    max_zip_total_bytes: int = 4 * 1024 * 1024 * 1024
    max_zip_ratio: float = 250.0
    poll_interval_s: float = 0.05

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # the job store records upload paths; relative ones would mean another folder once the server is started
        # from elsewhere (queued items could not find their inputs, a delete would leave uploads behind)
        return value.absolute()
