"""``retouch serve``: the web service and browser page (FastAPI on uvicorn)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from retouch.cli.app import app


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    data_dir: Path = typer.Option(Path("retouch-data"), "--data-dir", help="Jobs database, uploads and results."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Worker processes [default: one per core]."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="'local' (Dask LocalCluster) or tcp://HOST:PORT."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="RETOUCH_API_KEY",
                                       help="Require 'Authorization: Bearer KEY' on every data route."),
) -> None:
    """Run the web service: JSON API under /v1 (docs at /docs) and the browser page at /."""
    import uvicorn

    from api.main import create_app
    from api.settings import Settings

    overrides = {"data_dir": data_dir, "workers": workers, "scheduler": scheduler, "api_key": api_key}
    config = Settings(**{k: v for k, v in overrides.items() if v is not None})
    os.environ.setdefault("RETOUCH_LOG_DIR", str(data_dir / "logs"))
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")
