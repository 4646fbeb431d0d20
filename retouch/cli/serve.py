"""``retouch serve``: the web service and browser page (FastAPI on uvicorn)."""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from retouch.cli.app import app
from retouch.errors import InputError

if TYPE_CHECKING:
    import uvicorn

    from api.settings import Settings


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    data_dir: Path = typer.Option(Path("retouch-data"), "--data-dir", help="Jobs database, uploads and results."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Worker processes [default: one per core]."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="'local' (Dask LocalCluster) or tcp://HOST:PORT."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="RETOUCH_API_KEY",
                                       help="Require 'Authorization: Bearer KEY' on every data route."),
    log_format: str = typer.Option("text", "--log-format", envvar="RETOUCH_LOG_FORMAT",
                                   help="'text' (uvicorn's style) or 'json' (one object a line, for collectors)."),
) -> None:
    """Run the web service: JSON API under /v1 (docs at /docs) and the browser page at /.

    Once it listens it prints one line: its URL, data folder, workers and whether a key is required; then a line
    as each job starts and ends (id, items, seconds since it was submitted).
    """
    import uvicorn

    from api.http import guarded_protocol
    from api.logs import LOG_FORMATS, log_config
    from api.main import create_app

    if log_format not in LOG_FORMATS:
        raise InputError(f"--log-format {log_format}: choose {' or '.join(LOG_FORMATS)}")
    overrides = {"data_dir": data_dir, "workers": workers, "scheduler": scheduler, "api_key": api_key}
    config = _settings({k: v for k, v in overrides.items() if v is not None})
    # uvicorn starts the app (and its worker pool) before it binds the port, and reports a failure of either as a
    # traceback with exit code 3: everything a user can get wrong is checked here first, one line and exit 2
    _check_service(config)
    _check_port(host, port)
    os.environ.setdefault("RETOUCH_LOG_DIR", str(config.data_dir / "logs"))
    application = create_app(config)
    # the request head's limits and timeout live in the protocol (api.http), the body's in api.guard
    protocol = guarded_protocol(header_timeout_s=config.header_timeout_s, max_header_bytes=config.max_header_bytes,
                                max_headers=config.max_headers)
    server = _server(uvicorn.Config(application, host=host, port=port, log_config=log_config(log_format),
                                     access_log=False, http=protocol))
    with _stopped_quietly_by_sigterm():
        server.run()


def _service_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}" + (" (every interface)" if host in ("0.0.0.0", "::") else "")


def _server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn's server, which says where the service is once it listens (uvicorn's own lines are off)."""
    import uvicorn

    class Service(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:  # listening: a failed bind or start-up has asked to exit
                _announce(self.config)

    return Service(config)


def _announce(config: uvicorn.Config) -> None:
    """The service's one start line: URL, data folder, workers, whether a key is required."""
    import logging

    settings, dispatcher = config.app.state.settings, config.app.state.dispatcher
    url = _service_url(config.host, config.port)
    count = dispatcher.capacity
    workers = f"{count} worker{'s' if count != 1 else ''}"
    if settings.scheduler:
        workers += f" on {settings.scheduler}"
    key = "API key required" if settings.api_key else "no API key"
    logging.getLogger("retouch.serve").info(
        "retouch serving %s · data %s · %s · %s (Ctrl+C to stop)", url, settings.data_dir, workers, key,
        extra={"event": "service_started", "url": url.split(" ")[0], "data_dir": str(settings.data_dir),
               "workers": dispatcher.capacity, "scheduler": settings.scheduler,
               "key_required": bool(settings.api_key)})


class _Stopped(BaseException):
    """SIGTERM arrived: the service's normal end (not an Exception, which a handler on the way might swallow)."""


@contextmanager
def _stopped_quietly_by_sigterm() -> Iterator[None]:
    """SIGTERM is how service managers stop a service (systemctl stop, docker stop): once uvicorn has shut down
    gracefully it raises the signal again for the handler it found, which is this one, so the command ends with
    exit 0 and no message. The command line's own handler would say "terminated" with exit 143, which systemd
    counts as a failed stop; before uvicorn runs, SIGTERM also ends the command here, as quietly."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except _Stopped:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _settings(overrides: dict[str, object]) -> Settings:
    """The service's settings; a ``RETOUCH_*`` variable that does not parse is refused, naming it."""
    from pydantic import ValidationError

    from api.settings import Settings

    try:
        return Settings(**overrides)
    except ValidationError as error:
        problem = error.errors()[0]
        name = "RETOUCH_" + "_".join(str(part) for part in problem["loc"]).upper()
        raise InputError(f"{name}={problem.get('input')!r}: {problem['msg'].lower()}; correct or unset the "
                         "environment variable") from None


def _check_service(config: Settings) -> None:
    """Refuse a data folder the service cannot use and a scheduler it cannot reach."""
    from api.recovery import DataFolderInUse, DataFolderLock
    from api.store import DATABASE
    from retouch.io.folders import require_output_folder
    from retouch.run.executor import check_scheduler, make_executor

    require_output_folder(config.data_dir, [DATABASE], option="--data-dir")
    try:
        DataFolderLock(config.data_dir).release()  # taken for good as the service starts
    except DataFolderInUse as error:
        raise InputError(str(error)) from None
    check_scheduler(config.scheduler)
    if config.scheduler and config.scheduler not in {"local", "processes"}:
        make_executor(config.scheduler).shutdown()  # connect once: an unreachable cluster is refused now


def _check_port(host: str, port: int) -> None:
    """Bind (and release) every address uvicorn will listen on, as it binds them (SO_REUSEADDR)."""
    try:
        addresses = {info[4][:2]: info[0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                          flags=socket.AI_PASSIVE)}
    except socket.gaierror as error:
        raise InputError(f"--host {host}: not an address of this machine ({error.strerror}); give one such as "
                         "127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None
    for address, family in addresses.items():
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                raise InputError(_bind_problem(host, port, error)) from None


def _bind_problem(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return (f"{host}:{port}: the port is already in use (by another program, or another retouch serve); "
                "choose another --port or stop that program")
    if error.errno == errno.EACCES:
        return (f"{host}:{port}: not allowed to listen on this port (ports below 1024 need root); choose a --port "
                "above 1023")
    return (f"--host {host}: cannot listen on this address ({error.strerror or error}); give an address of this "
            "machine, such as 127.0.0.1 or 0.0.0.0")
