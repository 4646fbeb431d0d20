"""``retouch serve`` as its operator sees it: the one line saying where it is, and a line as each job starts and
ends, in uvicorn's style or as JSON for a log collector."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from retouch.samples import make_authentic
from tests.api_server import Server
from tests.helpers import retouch_process

pytestmark = pytest.mark.server


def _log(server: Server, *, lines: int, timeout: float = 30) -> list[str]:
    """The server's log, once it holds at least ``lines`` lines."""
    path = server.data_dir.parent / f"server-{server.port}.log"
    deadline = time.time() + timeout
    while True:
        found = [line for line in path.read_text().splitlines() if line.strip()]
        if len(found) >= lines or time.time() > deadline:
            return found
        time.sleep(0.1)


def _one_job(server: Server) -> str:
    with server.client() as client:
        files = [("files", (f"scan{i}.jpg", make_authentic(60 + i, size=128).file_bytes)) for i in range(2)]
        job_id = client.post("/v1/batches", files=files, data={"detectors": "grain"}).json()["job_id"]
        server.wait_job(client, job_id)
    return job_id


def test_serve_says_where_it_is_and_logs_each_job_in_uvicorns_style(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", workers=1, api_key="s3cret").start()
    try:
        first = _log(server, lines=1)[0]
        data = re.escape(str(tmp_path / "data"))
        assert re.fullmatch(rf"INFO: +retouch serving http://127\.0\.0\.1:{server.port} · data {data} · "
                            r"1 worker · API key required \(Ctrl\+C to stop\)", first), first
        job_id = _one_job(server)
        started, finished = _log(server, lines=3)[1:3]
        assert started == f"INFO:     job {job_id} started: 2 items"
        assert re.fullmatch(rf"INFO: +job {job_id} done: 2 items, 0 failed, \d+\.\d s", finished), finished
    finally:
        server.stop()


def test_log_format_json_writes_one_object_a_line(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", workers=1, env={"RETOUCH_LOG_FORMAT": "json"}).start()
    try:
        job_id = _one_job(server)
        lines = [json.loads(line) for line in _log(server, lines=3)]
    finally:
        server.stop()
    service, started, finished = lines[:3]
    assert service["event"] == "service_started" and service["url"] == f"http://127.0.0.1:{server.port}"
    assert (service["workers"], service["key_required"], service["data_dir"]) == (1, False, str(tmp_path / "data"))
    assert (started["event"], started["job"], started["items"]) == ("job_started", job_id, 2)
    assert (finished["event"], finished["job"], finished["state"], finished["failed"]) == (
        "job_finished", job_id, "done", 0)
    assert finished["seconds"] > 0 and finished["level"] == "info" and finished["time"].endswith("+00:00")


def test_an_unknown_log_format_is_refused_in_one_line(tmp_path: Path) -> None:
    refused = retouch_process("serve", "--data-dir", str(tmp_path / "data"), "--log-format", "xml")
    assert refused.returncode == 2
    assert "--log-format xml: choose text or json" in refused.stderr and "Traceback" not in refused.stderr
