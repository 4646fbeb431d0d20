"""What the service writes to its log: its start, each job's start and end, in uvicorn's style or as JSON.

``text`` lines look like uvicorn's own (``INFO:     job 3f2a... started: 12 items``); ``json`` writes one object
per line (``time``, ``level``, ``logger``, ``message`` and the event's fields: ``event``, ``job``, ``items``,
``failed``, ``seconds``...) for log collectors. Both apply to uvicorn's loggers too, so a collector reads one
format.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from typing import Any

from api.store import JobStore

log = logging.getLogger("retouch.api")
LOG_FORMATS = ("text", "json")
ENDS_REMEMBERED = 10_000  # jobs whose end was logged, kept to log it once: far more than finish at one moment
# attributes every LogRecord has: the rest are the fields a call passed with ``extra=``
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON: time (ISO 8601, UTC), level, logger, message, and the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_config(log_format: str) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for uvicorn's ``log_config``: uvicorn's loggers at warning (its own
    start lines are replaced by the service's one line; no line per request), retouch's at info, all on stderr
    in ``log_format``."""
    formatter = ({"()": "api.logs.JsonFormatter"} if log_format == "json" else
                 {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s"})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default",
                                 "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "WARNING", "propagate": False},
            "uvicorn.error": {"level": "WARNING"},
            "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False},
            "retouch": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }


class JobEvents:
    """Logs a job's start (its first item handed to a worker) and its end (its last item recorded) with its id,
    its items and the seconds since it was submitted; each once per service process."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._started: set[str] = set()  # jobs whose start was logged and whose end was not yet
        self._ended: dict[str, None] = {}  # the latest jobs whose end was logged, oldest first

    def item_started(self, job_id: str) -> None:
        """An item of the job was handed to a worker: the job's start, if it is the first in this process."""
        if job_id in self._started:
            return
        try:
            job = self.store.progress(job_id)
        except Exception:  # noqa: BLE001 - a log line must never stop the dispatcher
            log.warning("job %s: its start could not be logged", job_id, exc_info=True)
            return
        with self._lock:
            if job is None or job_id in self._started:
                return
            self._started.add(job_id)
        finished = job["done"] + job["failed"]
        resumed = f", {finished} finished before" if finished else ""
        log.info("job %s started: %d items%s", job_id, job["total"], resumed,
                 extra={"event": "job_started", "job": job_id, "items": job["total"], "finished": finished})

    def item_recorded(self, job_id: str) -> None:
        """An item of the job was recorded: the job's end, if it was its last."""
        try:
            job = self.store.progress(job_id)
        except Exception:  # noqa: BLE001 - a log line must never stop the dispatcher
            log.warning("job %s: its progress could not be read for the log", job_id, exc_info=True)
            return
        if job is None or job["done"] + job["failed"] < job["total"]:
            return
        with self._lock:
            if job_id in self._ended:  # two last items recorded at once: both see the job finished
                return
            self._ended[job_id] = None
            if len(self._ended) > ENDS_REMEMBERED:
                del self._ended[next(iter(self._ended))]
            self._started.discard(job_id)
        seconds = round(time.time() - job["created"], 2)
        log.info("job %s %s: %d items, %d failed, %.1f s", job_id, job["state"], job["total"], job["failed"],
                 seconds, extra={"event": "job_finished", "job": job_id, "state": job["state"],
                                 "items": job["total"], "failed": job["failed"], "seconds": seconds})
