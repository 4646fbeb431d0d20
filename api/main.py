"""Build the FastAPI application: settings, the job store, the worker pool, routes and the browser page."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from api import errors
from api.guard import RequestGuard
from api.routes import downloads, jobs
from api.schemas import Health
from api.settings import Settings
from api.store import DATABASE, JobStore
from api.workers import Dispatcher
from retouch import __version__

STATIC = Path(__file__).parent / "static"


def create_app(config: Settings | None = None) -> FastAPI:
    config = config or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = JobStore(config.data_dir / DATABASE, data_dir=config.data_dir)
        store.requeue_interrupted()  # items a dead process was running start again
        dispatcher = Dispatcher(store, config.data_dir, workers=config.workers, scheduler=config.scheduler,
                                poll_interval=config.poll_interval_s)
        app.state.settings, app.state.store, app.state.dispatcher = config, store, dispatcher
        dispatcher.start()
        try:
            yield
        finally:
            dispatcher.stop()

    # Swagger UI and ReDoc from the package's own copies, so /docs and /redoc work without internet
    app = FastAPIOffline(title="retouch", version=__version__, lifespan=lifespan, static_url="/docs-assets",
                         description="Find where archival photographs were doctored. Submit scans or pairs, poll "
                                     "the job, fetch report.json, report.html, masks and heatmaps; a job's "
                                     "results also come as one zip. Errors are JSON: "
                                     '{"error": {"code", "message"}}.')
    errors.install(app)
    # key and size checks must come before FastAPI reads (and spools) the body, so they are middleware
    app.add_middleware(RequestGuard, settings=config)
    app.include_router(jobs.router)
    app.include_router(downloads.router)

    @app.get("/health", response_model=Health, tags=["service"])
    def health() -> Health:
        return Health(status="ok", version=__version__, queue=app.state.store.counts())

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory api.main:app_from_env`` (settings from RETOUCH_* variables)."""
    return create_app(Settings())
