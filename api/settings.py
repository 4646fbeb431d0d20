"""Service settings, from ``RETOUCH_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from retouch.io.load import DEFAULT_MAX_PIXELS
from retouch.run.budget import DEFAULT_MAX_MEMORY


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
    max_job_bytes: int = 1024 * 1024 * 1024  # what a batch may store in all: its files and unpacked members
    max_memory: int = DEFAULT_MAX_MEMORY  # what one analysis may use (bytes), estimated from the header
    min_free_bytes: int = 256 * 1024 * 1024  # below this on the data folder's disk: 507 for uploads, no new item
    db_busy_timeout_s: float = 30.0  # how long a write waits for another connection's lock
    header_timeout_s: float = 10.0  # a request's headers must arrive within this
    body_timeout_s: float = 20.0  # a body must keep up with 20 s plus 1 s per body_min_rate bytes received
    body_min_rate: int = 500  # bytes per second (as Apache's mod_reqtimeout: body=20,MinRate=500)
    max_header_bytes: int = 64 * 1024  # the request line and headers together
    max_headers: int = 100
    poll_interval_s: float = 0.05

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # recorded uploads are resolved against it and handed to workers, which may run in other processes
        # (a Dask cluster sharing the folder): a relative folder would mean another place to each of them
        return value.absolute()
