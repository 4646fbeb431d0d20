"""One executor abstraction for batch runs and the API's workers: local processes or a Dask cluster.

``make_executor(None)`` runs work in local processes (one per core), ``make_executor("local")`` starts a Dask
distributed ``LocalCluster``, and ``make_executor("tcp://host:port")`` connects to a running Dask scheduler.
Callers see ``concurrent.futures.Future`` objects either way. Submitted functions must be module-level and
receive paths, not pixels: workers read their own inputs, so nothing large travels through the scheduler.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from retouch.errors import InputError

DASK_SCHEMES = ("tcp://", "tls://", "inproc://", "ws://", "wss://")
DASK_DEFAULT_PORT = 8786
CONNECT_TIMEOUT_S = 20


class SchedulerError(InputError):
    """The scheduler named cannot be used: not a scheduler address, or no scheduler answers there."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="bad_scheduler")


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _leave_interrupts_to_the_coordinator() -> None:
    """Worker initializer. Ctrl-C in a terminal reaches every process of the group; a worker that raised
    KeyboardInterrupt while waiting for work would print a traceback. The coordinating process handles the
    interrupt and stops the workers itself (see ``LocalExecutor.shutdown``), with SIGTERM, which unwinds the
    running item so its atomic writes remove their temp files."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_quietly)


_terminated = False


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    global _terminated
    _terminated = True
    raise SystemExit(128 + signum)  # SystemExit ends a process without printing a traceback


def _run_until_terminated(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run one item in a worker; once SIGTERM has unwound it (its atomic writes removing their temp files), end
    the process. ProcessPoolExecutor's worker loop catches every exception of an item, SystemExit included, and
    would go on to the next item already queued for it, to be killed mid-write when the coordinator gives up
    waiting."""
    try:
        return fn(*args, **kwargs)
    except SystemExit as stop:
        if _terminated:
            os._exit(stop.code if isinstance(stop.code, int) else 1)
        raise


class LocalExecutor:
    """A pool of local worker processes (spawned, so safe beside threads and native libraries)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._pool = cf.ProcessPoolExecutor(max_workers=self.workers,
                                            mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_leave_interrupts_to_the_coordinator)
        self.description = f"local processes x{self.workers}"

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        return self._pool.submit(_run_until_terminated, fn, *args, **kwargs)

    def shutdown(self, *, cancel: bool = False) -> None:
        """Wait for submitted work, or with ``cancel`` drop what has not started and stop the workers now.

        Cancelling stops the workers mid-item: otherwise the interpreter would wait for each running item to
        finish before an interrupted program could exit. Tasks write every file atomically and their
        ``report.json`` last, so a stopped item is simply not done (and a batch rerun redoes it).
        """
        if not cancel:
            self._pool.shutdown(wait=True)
            return
        # ProcessPoolExecutor (before Python 3.14) has no public way to stop running workers
        workers = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            if process.is_alive():
                process.terminate()
        for process in workers:
            process.join(timeout=5)
            if process.is_alive():  # stuck in native code that does not return to Python
                process.kill()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(cancel=exc[0] is not None)


class DaskExecutor:
    """Work on a Dask distributed cluster: a new ``LocalCluster`` (``"local"``) or an existing scheduler."""

    def __init__(self, scheduler: str, workers: int | None = None) -> None:
        self._cluster = None
        if scheduler == "local":
            from distributed import Client, LocalCluster

            self._cluster = LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1,
                                         processes=True, dashboard_address=None, silence_logs=40)
            self._client = Client(self._cluster)
            self.description = f"Dask LocalCluster x{workers or default_workers()}"
        else:
            _probe(scheduler)  # before importing Dask (a second): an unreachable address is refused at once
            self._client = _connect(scheduler)
            self.description = f"Dask scheduler {scheduler}"

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        outer: cf.Future = cf.Future()
        inner = self._client.submit(fn, *args, pure=False, **kwargs)

        def relay(done: Any) -> None:
            if outer.cancelled():
                return
            try:
                outer.set_result(done.result())
            except BaseException as error:  # noqa: BLE001 - hand the worker's exception to the caller
                outer.set_exception(error)

        inner.add_done_callback(relay)
        outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)
        return outer

    def shutdown(self, *, cancel: bool = False) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(cancel=exc[0] is not None)


def check_scheduler(scheduler: str | None) -> None:
    """Refuse a ``scheduler`` value that is neither local processes, ``"local"`` nor a Dask address (no
    connection is made: :func:`make_executor` connects)."""
    if scheduler in (None, "", "processes", "local") or scheduler.startswith(DASK_SCHEMES):
        return
    raise SchedulerError(f"unknown scheduler {scheduler!r}: use 'local' or a Dask address such as "
                         "tcp://host:8786 (or leave out --scheduler to run on local processes)")


def _unreachable(scheduler: str, reason: str) -> SchedulerError:
    return SchedulerError(f"cannot connect to the Dask scheduler at {scheduler} ({reason}); check that it is "
                          "running and that the address is right, or leave out --scheduler to run on local "
                          "processes")


def _probe(scheduler: str) -> None:
    """Open (and close) a TCP connection to a network scheduler address: a refused connection or an unknown host
    is reported at once, where Dask's client retries until its timeout before raising a bare OSError."""
    if scheduler.startswith("inproc://"):
        return
    try:
        parts = urlsplit(scheduler)
        host, port = parts.hostname, parts.port or DASK_DEFAULT_PORT
    except ValueError as error:  # a port that is not a number, or out of range
        raise SchedulerError(f"{scheduler}: not a scheduler address ({error}); use tcp://HOST:PORT") from None
    if not host:
        raise SchedulerError(f"{scheduler}: not a scheduler address (no host); use tcp://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise _unreachable(scheduler, error.strerror or str(error) or type(error).__name__) from None


def _connect(scheduler: str) -> Any:
    """A Dask client connected to ``scheduler``, or :class:`SchedulerError` within about CONNECT_TIMEOUT_S.

    Dask's own timeout covers opening the connection, not the handshake after it: a port where something else
    listens and stays silent (the dashboard's HTTP port given for the scheduler's) would hang the command. So the
    client is made in a thread of its own, given up (left to the process's exit) when it takes too long.
    """
    from distributed import Client

    made: dict[str, Any] = {}

    def connect() -> None:
        try:
            made["client"] = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
            made["error"] = error

    thread = threading.Thread(target=connect, name="retouch-dask-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S)
    if thread.is_alive():
        raise _unreachable(scheduler, f"something listens there but no Dask scheduler answered in "
                                      f"{CONNECT_TIMEOUT_S} s")
    error = made.get("error")
    if isinstance(error, (OSError, TimeoutError)):  # reachable, but no Dask scheduler answered in time
        raise _unreachable(scheduler, str(error).split("\n")[0][:120]) from None
    if error is not None:
        raise error
    return made["client"]


def make_executor(scheduler: str | None = None, *, workers: int | None = None) -> LocalExecutor | DaskExecutor:
    """Local processes (``None``), a Dask ``LocalCluster`` (``"local"``) or a Dask scheduler (``"tcp://..."``).

    Raises :class:`SchedulerError` for a value that names no scheduler and for a scheduler that cannot be reached.
    """
    check_scheduler(scheduler)
    if scheduler in (None, "", "processes"):
        return LocalExecutor(workers)
    return DaskExecutor(scheduler, workers)


def as_completed(futures: Iterable[cf.Future]) -> Iterator[cf.Future]:
    return cf.as_completed(list(futures))
