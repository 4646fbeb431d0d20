"""One executor abstraction for batch runs and the API's workers: local processes or a Dask cluster.

``make_executor(None)`` runs work in local processes (one per core), ``make_executor("local")`` starts a Dask
distributed ``LocalCluster``, and ``make_executor("tcp://host:port")`` connects to a running Dask scheduler.
Callers see ``concurrent.futures.Future`` objects either way. Submitted functions must be module-level and
receive paths, not pixels: workers read their own inputs, so nothing large travels through the scheduler.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
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


# Thread pools of the numerical libraries a worker loads. In a pool of several workers the cores are already
# shared out one process each, and a BLAS pool per process only spins against the other workers: with one BLAS
# thread per worker a batch of 1 MP scans took about a tenth fewer CPU seconds a scan, measured under load
# (benchmarks/results/batch.md).
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

WORKER_STOPPED_CODE = 128 + signal.SIGTERM  # a worker's exit code once SIGTERM has unwound its item
ORPHAN_GRACE_S = 10.0  # how long an orphaned worker's item may take to unwind before the process just ends


class WorkerDied(RuntimeError):
    """The worker process running an item ended before the item did: killed (out of memory, by hand), or a crash
    in native code. Only that item fails; the pool starts another process in its place."""


class WorkerStopped(RuntimeError):
    """The pool was shut down, or the worker was stopped by SIGTERM (a service manager stopping the whole group),
    while it ran an item: the item was not finished, through no fault of its own."""


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        cause = " (the system's out-of-memory killer, or kill -9)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{cause}"
    return f"exit code {code}"


def _prepare_worker(one_blas_thread: bool) -> None:
    """What a worker process does before its first item: leave interrupts to its coordinator, and watch it; in a
    pool of several workers, ask the numerical libraries for one thread each (before they are imported: this
    module imports none of them), unless the user set their own.

    Ctrl-C in a terminal reaches every process of the group; a worker that raised KeyboardInterrupt while waiting
    for work would print a traceback. The coordinating process handles the interrupt and stops the workers itself
    (see ``LocalExecutor.shutdown``), with SIGTERM, which unwinds the running item so its atomic writes remove
    their temp files.

    A worker never outlives its coordinator (a server killed alone by the out-of-memory killer, a ``retouch batch``
    killed with -9): once the coordinator has gone, whatever the worker computes is recorded by no one, and a
    restarted coordinator runs the item again. So a thread waits on the parent's sentinel (a pipe the parent holds
    open, readable once it has died) and then stops the process as SIGTERM does, ending it outright after
    :data:`ORPHAN_GRACE_S` if the item is stuck in native code.
    """
    if one_blas_thread:
        for name in BLAS_THREAD_VARIABLES:
            os.environ.setdefault(name, "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_quietly)
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    if sentinel is None:  # not started by multiprocessing: nothing to watch
        return

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE_S)
        os._exit(WORKER_STOPPED_CODE)

    threading.Thread(target=watch, name="retouch-parent-watch", daemon=True).start()


_terminated = False


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    global _terminated
    _terminated = True
    raise SystemExit(128 + signum)  # SystemExit ends a process without printing a traceback


def _portable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling (to travel back to the coordinator), else a RuntimeError naming it."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any exception may refuse to be pickled
        return RuntimeError(f"{type(error).__name__}: {str(error)[:500]}")
    return error


def _serve(connection: Connection, one_blas_thread: bool = False) -> None:
    """A worker process's life: run the items its coordinator sends, one at a time, until told to stop (``None``)
    or until the coordinator is gone. After SIGTERM has unwound an item (its atomic writes removing their temp
    files), the process ends instead of taking the next item."""
    _prepare_worker(one_blas_thread)
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):  # the coordinator has gone
            return
        if task is None:
            return
        fn, args, kwargs = task
        try:
            reply = ("ok", fn(*args, **kwargs))
        except SystemExit as stop:
            if _terminated:
                os._exit(WORKER_STOPPED_CODE)
            reply = ("error", RuntimeError(f"the item called sys.exit({stop.code!r})"))
        except BaseException as error:  # noqa: BLE001 - handed to the coordinator, which decides
            reply = ("error", _portable(error))
        if _terminated:
            os._exit(WORKER_STOPPED_CODE)
        try:
            connection.send(reply)
        except (EOFError, OSError):
            return
        except Exception as error:  # noqa: BLE001 - a result that cannot be pickled
            connection.send(("error", RuntimeError(f"the item's result cannot be sent back ({error})")))


@dataclass
class _Task:
    future: cf.Future
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    started: bool = False  # its future is marked running (it may go back to the queue once, see _hand_out)


@dataclass
class _Worker:
    process: BaseProcess
    connection: Connection
    task: _Task | None = None


Settlement = Callable[[], None]  # a future's result or exception, set once the pool's lock is released


class LocalExecutor:
    """A pool of local worker processes (spawned, so safe beside threads and native libraries), one item at a
    time each.

    Unlike ``concurrent.futures.ProcessPoolExecutor``, whose every pending item fails once any worker dies, the
    pool knows which item each process runs: a worker that dies (killed, out of memory, a crash in native code)
    fails only its own item, with :class:`WorkerDied`, and a new process takes its place. Workers watch their
    coordinator and end when it does (:func:`_prepare_worker`). Futures are settled by the pool's manager thread,
    outside its lock, so their callbacks may submit more work.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self.description = f"local processes x{self.workers}"
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._queue: collections.deque[_Task] = collections.deque()
        self._closing = False  # no more submissions; the manager ends once the queue and the workers are idle
        self._stopping = False  # shutting down now: workers are being stopped
        self._wake_reader, self._wake_writer = multiprocessing.Pipe(duplex=False)
        self._pool: list[_Worker] = [self._start_worker() for _ in range(self.workers)]
        self._retired: list[_Worker] = []
        self._manager = threading.Thread(target=self._manage, name="retouch-pool", daemon=True)
        self._manager.start()

    def processes(self) -> list[BaseProcess]:
        """The worker processes now running (a dead one is replaced by a new one)."""
        with self._lock:
            return [worker.process for worker in self._pool]

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        with self._lock:
            if self._closing:
                raise RuntimeError("cannot submit work to a pool that is shutting down")
            self._queue.append(_Task(future, fn, args, kwargs))
        self._wake()
        return future

    def shutdown(self, *, cancel: bool = False) -> None:
        """Wait for submitted work, or with ``cancel`` drop what has not started and stop the workers now.

        Cancelling stops the workers mid-item (with SIGTERM, then SIGKILL for one that has not ended within 5 s):
        otherwise the interpreter would wait for each running item to finish before an interrupted program could
        exit. Tasks write every file atomically and publish their folder whole, so a stopped item is simply not
        done (and a batch rerun redoes it); its future fails with :class:`WorkerStopped`.
        """
        with self._lock:
            if self._stopping or (self._closing and not cancel):
                return  # shut down already
            self._closing = True
            dropped = []
            if cancel:
                self._stopping = True
                while self._queue:
                    dropped.append(self._queue.popleft())
            workers = list(self._pool)
        for task in dropped:
            if not task.future.cancel():  # marked running, then put back: it never reached a worker
                task.future.set_exception(WorkerStopped("the pool was stopped before the item started"))
        self._wake()
        if cancel:
            for worker in workers:
                if worker.process.is_alive():
                    worker.process.terminate()
            deadline = time.monotonic() + 5
            for worker in workers:
                worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
                if worker.process.is_alive():  # stuck in native code that does not return to Python
                    worker.process.kill()
        self._manager.join()
        for worker in [*self._pool, *self._retired]:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.connection.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def _wake(self) -> None:
        try:
            self._wake_writer.send_bytes(b"")
        except OSError:  # shut down already
            pass

    def _start_worker(self) -> _Worker:
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_serve, args=(theirs, self.workers > 1), name="retouch-worker",
                                        daemon=True)
        process.start()
        theirs.close()  # only the worker holds its end: a dead worker is then an end of file here
        return _Worker(process, ours)

    def _manage(self) -> None:
        """The manager thread: hand queued items to idle workers, collect results, replace dead workers."""
        while True:
            settled: list[Settlement] = []
            with self._lock:
                self._hand_out(settled)
                busy = [worker for worker in self._pool if worker.task is not None]
                finished = self._closing and not self._queue and not busy
                if finished:
                    for worker in self._pool:
                        try:
                            worker.connection.send(None)
                        except OSError:  # died meanwhile: nothing to stop
                            pass
                watched = [worker.connection for worker in busy] + [w.process.sentinel for w in self._pool]
            _settle(settled)
            if finished:
                return
            ready = set(multiprocessing.connection.wait([self._wake_reader, *watched]))
            if self._wake_reader in ready:
                while self._wake_reader.poll():
                    self._wake_reader.recv_bytes()
            with self._lock:
                for worker in list(self._pool):
                    if worker.connection in ready and worker.task is not None:
                        self._collect(worker, settled)
                    if worker.process.sentinel in ready:
                        self._bury(worker, settled)
                        self._pool.remove(worker)
                        self._retired.append(worker)
                        if not self._stopping and not (self._closing and not self._queue):
                            self._pool.append(self._start_worker())
            _settle(settled)

    def _hand_out(self, settled: list[Settlement]) -> None:
        for worker in self._pool:
            if not self._queue:
                return
            if worker.task is not None:
                continue
            task = self._queue.popleft()
            if not task.started:
                if not task.future.set_running_or_notify_cancel():
                    continue
                task.started = True
            try:
                worker.connection.send((task.fn, task.args, task.kwargs))
            except (OSError, EOFError):  # the worker died meanwhile: the item goes to another one
                self._queue.appendleft(task)
                continue
            except Exception as error:  # noqa: BLE001 - the function or its arguments cannot be pickled
                settled.append(lambda future=task.future, error=error: future.set_exception(error))
                continue
            worker.task = task

    def _collect(self, worker: _Worker, settled: list[Settlement]) -> None:
        """The result the worker sent, for its item's future."""
        task = worker.task
        assert task is not None
        try:
            kind, value = worker.connection.recv()
        except (EOFError, OSError):  # it died before it could answer: see _bury
            return
        except Exception as error:  # noqa: BLE001 - a result that cannot be unpickled here
            kind, value = "error", RuntimeError(f"the worker's result cannot be read ({error})")
        worker.task = None
        if kind == "ok":
            settled.append(lambda: task.future.set_result(value))
        else:
            settled.append(lambda: task.future.set_exception(value))

    def _bury(self, worker: _Worker, settled: list[Settlement]) -> None:
        """A worker process has ended: the item it ran (if any, and if no answer came first) fails."""
        worker.process.join()
        if worker.task is not None and worker.connection.poll():
            self._collect(worker, settled)
        task, worker.task = worker.task, None
        if task is None:
            return
        code = worker.process.exitcode
        if self._stopping or code in (WORKER_STOPPED_CODE, -signal.SIGTERM):
            error: Exception = WorkerStopped(f"the worker was stopped ({_describe_exit(code)}) before the item "
                                             "was finished")
        else:
            error = WorkerDied(f"the worker process running this item ended unexpectedly ({_describe_exit(code)})")
        settled.append(lambda: task.future.set_exception(error))

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(cancel=exc[0] is not None)


def _settle(settled: list[Settlement]) -> None:
    for settle in settled:
        try:
            settle()
        except cf.InvalidStateError:  # cancelled meanwhile
            pass


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
