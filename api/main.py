"""Build the FastAPI application: settings, the job store, the worker pool, routes and the browser page."""

from __future__ import annotations

import sqlite3
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from api import errors
from api.guard import RequestGuard
from api.recovery import DataFolderLock, survey, sweep
from api.routes import downloads, jobs
from api.schemas import Health
from api.settings import Settings
from api.store import DATABASE, JobStore
from api.workers import Dispatcher, ServiceHealth
from retouch import __version__

STATIC = Path(__file__).parent / "static"
HEALTH_READ_TIMEOUT_S = 0.25  # /health answers within this even when the store is locked


def create_app(config: Settings | None = None) -> FastAPI:
    config = config or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        config.data_dir.mkdir(parents=True, exist_ok=True)
        lock = DataFolderLock(config.data_dir)
        store = None
        try:
            store = JobStore(config.data_dir / DATABASE, data_dir=config.data_dir,
                             busy_timeout_s=config.db_busy_timeout_s)
            leftovers = survey(config.data_dir)  # before any request: what a crash may have left

            def recover() -> None:  # the dispatcher's first step, retried while the store refuses it
                store.requeue_interrupted()  # items a dead process was running start again
                sweep(store, config.data_dir, leftovers)  # unreferenced uploads, staging folders, temp files

            dispatcher = Dispatcher(store, config.data_dir, workers=config.workers, scheduler=config.scheduler,
                                    poll_interval=config.poll_interval_s, min_free_bytes=config.min_free_bytes,
                                    health=ServiceHealth(), recover=recover)
            app.state.settings, app.state.store, app.state.dispatcher = config, store, dispatcher
            dispatcher.start()
            try:
                yield
            finally:
                dispatcher.stop()
        finally:
            if store is not None:
                store.close()
            lock.release()

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

    @app.get("/health", response_model=Health, tags=["service"],
             responses={503: {"model": Health, "description": "the job store cannot be read"}})
    def health() -> Health | JSONResponse:
        """``ok``; ``degraded`` (200) while a fault holds work up (each in ``problems``, with the reason and since
        when: a locked or unwritable job store, a full disk); ``unavailable`` (503) while the store cannot be
        read. Never needs the key; answers within a quarter of a second whatever the store does."""
        dispatcher: Dispatcher = app.state.dispatcher
        problems = dispatcher.health.problems()
        if not dispatcher.alive():
            problems.append({"component": "dispatcher", "reason": "the dispatcher thread has stopped; restart "
                             "the service", "since": time.time()})
        try:
            queue = app.state.store.counts(timeout_s=HEALTH_READ_TIMEOUT_S)
        except sqlite3.Error as error:
            problems.append({"component": "store", "reason": f"the job store cannot be read ({error})",
                             "since": time.time()})
            body = Health(status="unavailable", version=__version__, queue={}, problems=problems)
            return JSONResponse(body.model_dump(), status_code=503)
        return Health(status="degraded" if problems else "ok", version=__version__, queue=queue,
                      problems=problems)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory api.main:app_from_env`` (settings from RETOUCH_* variables)."""
    return create_app(Settings())
