"""Helpers the test modules share: encoding images and archives, running ``retouch`` as a process, and a web
service started in this process (FastAPI's ``TestClient``). The fixtures built on them are in ``conftest.py``."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
from PIL import Image

FINISHED = ("done", "failed", "done_with_errors")


@dataclass
class CliRun:
    """What one in-process ``retouch`` command line returned and printed."""

    returncode: int
    stdout: str
    stderr: str


class CliRunner(Protocol):
    """The ``cli`` fixture: ``cli("analyze", image, "-o", out)`` runs the command line in this process."""

    def __call__(self, *args: str | Path, cwd: Path | None = None) -> CliRun: ...


def image_bytes(image: np.ndarray | Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    """``image`` (an array in RGB order, or a Pillow image) encoded as ``fmt`` by Pillow; ``options`` are
    Pillow's save options (``quality=75``, ``save_all=True``...)."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg_round_trip(pixels: np.ndarray, quality: int) -> np.ndarray:
    """``pixels`` (gray or RGB) saved as a JPEG at ``quality`` by Pillow and decoded again."""
    return np.asarray(Image.open(io.BytesIO(image_bytes(pixels, "JPEG", quality=quality))))


def zip_bytes(members: dict[str, bytes] | list[tuple[str, bytes]], *,
              compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``members``; a list of (name, data) may repeat a name, as some zip tools allow."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as bundle, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about a repeated name and writes it all the same
        for name, data in members.items() if isinstance(members, dict) else members:
            bundle.writestr(name, data)
    return buffer.getvalue()


def retouch_process(*args: str | bytes, cwd: Path | None = None, env: dict[str, str] | None = None,
                    text: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m retouch ARGS`` in a process of its own: the real exit code, stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "retouch", *args], capture_output=True, text=text, cwd=cwd,
                          env=env, timeout=timeout)


def one_line(stderr: str) -> str:
    """The one line a refused command prints on stderr (fails when there are more lines, or a traceback)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def wait_job(client: httpx.Client, job_id: str, timeout: float = 180) -> dict:
    """Poll ``/v1/jobs/{job_id}`` until the job has finished; its last status."""
    deadline = time.time() + timeout
    job: dict = {}
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in FINISHED:
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} not finished: {job}")


class InProcessService:
    """The web service's application in this process, driven by FastAPI's ``TestClient`` (no socket, no
    uvicorn); its worker pool runs items in worker processes as the real service does. It offers what
    :class:`tests.api_server.Server` offers, so a test reads the same against either."""

    def __init__(self, client: Any, data_dir: Path) -> None:
        self._client = client
        self.data_dir = data_dir

    def client(self) -> nullcontext:
        # the one client whose lifespan runs the worker pool: closing it would stop the service
        return nullcontext(self._client)

    def wait_job(self, client: httpx.Client, job_id: str, timeout: float = 180) -> dict:
        return wait_job(client, job_id, timeout)


@contextmanager
def in_process_service(data_dir: Path, *, workers: int = 1, api_key: str | None = None,
                       **limits: Any) -> Iterator[InProcessService]:
    """The service on ``data_dir`` with ``workers`` worker processes, started for the ``with`` block;
    ``limits`` are further settings (``max_upload_bytes=...``). With ``api_key`` the client sends no key of its
    own: each request says what it sends."""
    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.settings import Settings

    config = Settings(data_dir=data_dir, workers=workers, api_key=api_key, **limits)
    with TestClient(create_app(config)) as client:
        yield InProcessService(client, config.data_dir)


def assert_offset_field(features: np.ndarray, oy: np.ndarray, ox: np.ndarray, distance: np.ndarray,
                        min_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """A PatchMatch field is valid: every partner inside the image, at least ``min_offset`` away, and the reported
    distance the plain squared feature distance to that partner. Returns the partners' rows and columns."""
    height, width = features.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    ty, tx = ys + oy, xs + ox
    assert ((ty >= 0) & (ty < height) & (tx >= 0) & (tx < width)).all()
    assert (oy.astype(np.int64) ** 2 + ox.astype(np.int64) ** 2 >= min_offset**2).all()
    recomputed = ((features - features[ty, tx]) ** 2).sum(axis=2, dtype=np.float64)
    np.testing.assert_allclose(distance, recomputed, rtol=1e-5, atol=1e-6)
    return ty, tx
