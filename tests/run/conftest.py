"""Fixtures for k8sxray-run tests: a UDP 'daemon', a downstream HTTP server, a launcher."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

APPS = Path(__file__).parent / "apps"
BIN = os.path.dirname(sys.executable)


class Receiver:
    """A real UDP socket playing the daemon."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.documents: list[dict[str, Any]] = []

    def collect(self, until: Callable[[list[dict[str, Any]]], bool], timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not until(self.documents) and time.monotonic() < deadline:
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            header, _, body = data.partition(b"\n")
            assert json.loads(header) == {"format": "json", "version": 1}
            self.documents.append(json.loads(body))
        return self.documents


class _Downstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get_all("X-Amzn-Trace-Id")))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.sock.close()


@pytest.fixture
def downstream() -> Iterator[Any]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Downstream)
    httpd.daemon_threads = True
    httpd.seen = []  # type: ignore[attr-defined]
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def env(receiver: Receiver, downstream: Any) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY", "K8SXRAY"))}
    return {
        **base,
        "PATH": BIN + os.pathsep + base.get("PATH", ""),
        "AWS_XRAY_DAEMON_ADDRESS": receiver.address,
        "AWS_XRAY_TRACING_NAME": "zero-code",
        "K8SXRAY_SAMPLING_RATE": "1",
        "K8SXRAY_SAMPLING_CENTRAL": "false",
        "K8SXRAY_PLUGINS": "none",
        "DOWNSTREAM": downstream.url,
    }


class Launched:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def stop(self) -> str:
        """Stop the process; returns its stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=5)
        return err


@pytest.fixture
def launch() -> Iterator[Callable[..., Launched]]:
    started: list[Launched] = []

    def start(args: list[str], env: dict[str, str], **kwargs: Any) -> Launched:
        proc = subprocess.Popen(
            [sys.executable, "-m", "k8sxray.run", *args],
            env=env,
            cwd=APPS,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,
        )
        launched = Launched(proc)
        started.append(launched)
        return launched

    yield start
    for launched in started:
        launched.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 15.0) -> tuple[int, str, str]:
    """GET *url*, retrying while the server starts; (status, X-Pid, body)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.headers.get("X-Pid", ""), response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
