"""Start a real ``retouch serve`` (uvicorn) on 127.0.0.1 for the API and browser tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers import wait_job


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, *, workers: int = 1, env: dict[str, str] | None = None,
                 api_key: str | None = None, cwd: Path | None = None, logs: Path | None = None) -> None:
        self.data_dir = data_dir  # relative paths are relative to ``cwd``, the server's working folder
        self.logs = logs or ((cwd or Path.cwd()) / data_dir).parent  # where server-<port>.log is written
        self.cwd = cwd
        self.workers = workers
        self.env = dict(os.environ, **(env or {}))
        self.api_key = api_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        command = [sys.executable, "-m", "retouch", "serve", "--port", str(self.port), "--data-dir",
                   str(self.data_dir), "--workers", str(self.workers)]
        if self.api_key:
            command += ["--api-key", self.api_key]
        log = open(self.logs / f"server-{self.port}.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log, start_new_session=True,
                                        cwd=self.cwd)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            time.sleep(0.1)
        raise RuntimeError("server did not start in 60 s")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def kill_server_only(self) -> None:
        """SIGKILL the server process alone (as the out-of-memory killer does), leaving its workers to notice."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def worker_pids(self) -> list[int]:
        """The server's worker processes (spawned by multiprocessing), by process id."""
        import psutil

        assert self.process is not None
        return [child.pid for child in psutil.Process(self.process.pid).children()
                if "spawn_main" in " ".join(child.cmdline())]

    def log(self) -> str:
        return (self.logs / f"server-{self.port}.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def wait_job(self, client: httpx.Client, job_id: str, timeout: float = 180) -> dict:
        return wait_job(client, job_id, timeout)
