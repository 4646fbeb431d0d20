"""The web service as only a real server shows it: HTTP on 127.0.0.1 under uvicorn, many clients at once,
bodies refused before they are read, a server killed mid-batch, and its stop by SIGTERM.

The API's contract (routes, errors, uploads, jobs) is tested in this process in ``test_api.py``.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from retouch.samples import make_forgery
from tests.api_server import Server
from tests.helpers import image_bytes

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("service")
    running = Server(folder / "data", workers=2, env={"RETOUCH_MAX_UPLOAD_BYTES": str(3_000_000),
                                                      "RETOUCH_MAX_ZIP_MEMBERS": "50"}).start()
    yield running
    running.stop()


def test_fifty_concurrent_submissions_all_complete_once(server: Server) -> None:
    rng = np.random.default_rng(0)
    images = [image_bytes(np.clip(rng.normal(120, 15, (96, 96)), 0, 255).astype(np.uint8)) for _ in range(50)]
    with server.client() as client:
        def submit(data: bytes) -> str:
            response = client.post("/v1/analyses", files={"image": ("s.png", data)}, data={"detectors": "grain"})
            assert response.status_code == 202, response.text
            return response.json()["job_id"]

        with ThreadPoolExecutor(max_workers=16) as pool:
            job_ids = list(pool.map(submit, images))
        assert len(set(job_ids)) == 50
        for job_id in job_ids:
            job = server.wait_job(client, job_id)
            assert job["state"] == "done"
            assert [item["completions"] for item in job["items"]] == [1]


def _raw_post(server: Server, path: str, headers: dict[str, str], body_parts: list[bytes],
              wait: float = 60.0) -> tuple[int, dict]:
    """POST over a bare socket, sending only ``body_parts`` whatever the headers promise, then read the answer.

    Returns (status, JSON body). The rest of the promised body never comes, so a server that waits for it never
    answers: the read then times out after ``wait`` seconds (a bound for a loaded machine, not a measurement),
    which fails the calling test.
    """
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:

        def send() -> None:
            try:
                for part in [head.encode(), *body_parts]:
                    sock.sendall(part)
            except OSError:  # the server refused and closed while the rest was still being sent
                pass

        # sent from a thread while this one reads: a server that refuses mid-body closes the connection, and
        # the answer must be read before the unread rest makes it reset the connection
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answer = b""
        try:
            while not _whole_response(answer) and (chunk := sock.recv(65536)):
                answer += chunk
        except TimeoutError:
            raise AssertionError(f"no whole answer within {wait} s: the server is waiting for the body") from None
        except ConnectionResetError:
            pass  # the server closed without reading what we sent; the answer arrived before the reset
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a send still blocked on a server that stopped reading
        except OSError:
            pass
        sender.join(wait)
    status_line, _, rest = answer.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body)


def _whole_response(answer: bytes) -> bool:
    """Whether ``answer`` holds a response's head and as much body as its Content-Length says."""
    head, separator, body = answer.partition(b"\r\n\r\n")
    if not separator:
        return False
    length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    return length is not None and len(body) >= int(length.group(1))


MULTIPART_HEAD = (b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"huge.png\"\r\n"
                  b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n")


MULTIPART_TYPE = {"Content-Type": "multipart/form-data; boundary=XyZ"}


def test_oversized_bodies_are_refused_before_they_are_read(server: Server) -> None:
    # a 1.5 GB Content-Length with a few bytes sent: refused from the header at once, not after the body
    for path, declared in (("/v1/analyses", 1_500_000_000), ("/v1/comparisons", 1_500_000_000),
                           ("/v1/batches", 2 * 1024 ** 3)):
        status, body = _raw_post(server, path, {**MULTIPART_TYPE, "Content-Length": str(declared)},
                                 [MULTIPART_HEAD])
        assert status == 413 and body["error"]["code"] == "upload_too_large", (path, body)
    # no Content-Length (chunked): reading stops once the count passes the limit (3 MB + framing allowance)
    chunk = b"\0" * 65536
    parts = [b"%x\r\n%s\r\n" % (len(MULTIPART_HEAD), MULTIPART_HEAD)]
    parts += [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (4_200_000 // len(chunk))
    status, body = _raw_post(server, "/v1/analyses", {**MULTIPART_TYPE, "Transfer-Encoding": "chunked"}, parts)
    assert status == 413 and body["error"]["code"] == "upload_too_large", body
    assert "3 MB upload limit" in body["error"]["message"]


def test_restart_mid_batch_finishes_every_item_exactly_once(tmp_path: Path) -> None:
    files = []
    for index in range(6):
        case = make_forgery(300 + index, method="diffusion", size=448)
        files.append(("files", (f"scan{index}.jpg" if case.file_format == "JPEG" else f"scan{index}.png",
                                case.file_bytes)))
    server = Server(tmp_path / "data", workers=1).start()
    try:
        with server.client() as client:
            job_id = client.post("/v1/batches", files=files,
                                 data={"detectors": "grain,ela,clone"}).json()["job_id"]
            deadline = time.time() + 120
            while time.time() < deadline:
                if client.get(f"/v1/jobs/{job_id}").json()["progress"]["finished"] >= 1:
                    break
                time.sleep(0.05)
        server.kill()  # mid-batch: some items done, one running, the rest queued
        server.start()
        with server.client() as client:
            job = server.wait_job(client, job_id)
        assert job["state"] == "done"
        assert [item["completions"] for item in job["items"]] == [1] * 6
        assert not list((tmp_path / "data" / "jobs" / job_id / "items").glob("*.partial"))
    finally:
        server.stop()


def test_sigterm_stops_the_service_as_its_normal_end(tmp_path: Path) -> None:
    # a service manager stops the service with SIGTERM (systemctl stop, docker stop): after uvicorn's graceful
    # shutdown the command said "retouch: error: terminated" and exited 143, which systemd counts as a failure
    running = Server(tmp_path / "data").start()
    assert running.process is not None
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=30) == 0
    log = (tmp_path / f"server-{running.port}.log").read_text()
    assert "error" not in log.lower(), log



def test_a_key_is_asked_for_before_the_body_is_read(tmp_path: Path) -> None:
    # headers promising 500 MB and a few bytes sent: the 401 comes at once, not after the body
    server = Server(tmp_path / "data", api_key="s3cret").start()
    try:
        assert httpx.get(server.url + "/health").status_code == 200
        promise = {**MULTIPART_TYPE, "Content-Length": "500000000"}
        status, body = _raw_post(server, "/v1/analyses", promise, [MULTIPART_HEAD])
        assert status == 401 and body["error"]["code"] == "unauthorized"
    finally:
        server.stop()
