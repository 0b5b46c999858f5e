"""Helpers for k8sxray-run tests: a UDP 'daemon', a downstream HTTP handler, polling GETs."""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

APPS = Path(__file__).parent / "apps"
BIN = os.path.dirname(sys.executable)
LOGSITE = Path(__file__).parent / "logsite"
"""A ``sitecustomize`` that names the logger on last-resort log lines (see its docstring)."""

_OURS = re.compile(r"^(?:[A-Z]+ k8sxray[.:]|k8sxray-run: )")


def k8sxray_lines(output: str) -> list[str]:
    """The lines of *output* that k8sxray wrote: its log records and the bootstrap's own lines.

    Matching the bare word would also match paths (a checkout in a folder named ``k8sxray``).
    """
    return [line for line in output.splitlines() if _OURS.match(line)]


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
