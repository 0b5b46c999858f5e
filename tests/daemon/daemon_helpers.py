"""Helpers for the daemon's tests: the daemon as a real subprocess, and a scriptable X-Ray endpoint."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HEADER = b'{"format": "json", "version": 1}\n'
_READY = re.compile(r"receiving segments on udp ([0-9.]+):(\d+)")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDTESTING",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def segment(i: int, pad: int = 0, trace: str = "1-5f000000-000000000000000000000001") -> bytes:
    """A valid segment document with a unique id; ``pad`` adds that many bytes of annotation."""
    doc = {
        "name": "svc",
        "id": f"{i:016x}",
        "trace_id": trace,
        "start_time": 1.5,
        "end_time": 2.5,
        "annotations": {"pad": "x" * pad},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


class DaemonProcess:
    """``python -m k8sxray.daemon`` in a subprocess, UDP on a free loopback port."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix="k8sxray-", suffix=".log", delete=False)  # noqa: SIM115
        self._out = tempfile.NamedTemporaryFile(prefix="k8sxray-", suffix=".out", delete=False)  # noqa: SIM115
        full_env = {
            k: v for k, v in os.environ.items() if not k.startswith("AWS_") and "proxy" not in k.lower()
        }
        # a daemon without AWS keeps segments locally: never in the user's own data directory
        full_env["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="k8sxray-data-")
        full_env.update(env or {})
        argv = [
            sys.executable,
            "-m",
            "k8sxray.daemon",
            "-b",
            "127.0.0.1:0",
            "-t",
            "off",
            "--http",
            "off",
            "-l",
            "debug",
            *args,
        ]
        self.proc = subprocess.Popen(
            argv, stdout=self._out, stderr=self._log, env=full_env, cwd=tempfile.gettempdir()
        )
        self.port = self._wait_ready()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def _wait_ready(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _READY.search(self.log)
            if match:
                return int(match.group(2))
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log}")
            time.sleep(0.02)
        raise AssertionError(f"daemon not ready after {timeout} s:\n{self.log}")

    @property
    def log(self) -> str:
        return Path(self._log.name).read_text()

    @property
    def stdout(self) -> bytes:
        return Path(self._out.name).read_bytes()

    def send(self, payload: bytes) -> None:
        self.sock.sendto(payload, ("127.0.0.1", self.port))

    def send_docs(self, docs: list[bytes], header: bytes = HEADER, pace_every: int = 200) -> None:
        for n, doc in enumerate(docs, 1):
            self.send(header + doc)
            if n % pace_every == 0:
                time.sleep(0.002)  # stay far below the kernel's receive buffer

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            assert time.monotonic() < deadline, f"{text!r} not logged within {timeout} s:\n{self.log}"
            time.sleep(0.02)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.sock.close()
        for f in (self._log, self._out):
            f.close()

    def summary(self) -> dict[str, int]:
        """The counts of the final log line."""
        pattern = r"received (\d+), sent (\d+), rejected (\d+), dropped (\d+), refused by the sink (\d+)"
        match = re.search(pattern, self.log)
        assert match, self.log
        keys = ("received", "sent", "rejected", "dropped", "refused")
        return dict(zip(keys, map(int, match.groups()), strict=True))


Behaviour = Callable[[list[str]], tuple[int, dict[str, Any], float]]
"""Given the documents of one call: (HTTP status, JSON answer, seconds to wait before answering)."""


class FakeXRay:
    """A PutTraceSegments endpoint on loopback whose answers the test scripts."""

    def __init__(self, port: int = 0) -> None:
        self.behaviour: Behaviour = lambda docs: (200, {"UnprocessedTraceSegments": []}, 0.0)
        self.delivered: list[str] = []
        self.other: list[tuple[str, bytes]] = []  # calls to paths other than /TraceSegments
        self.calls = 0
        self.access_keys: set[str] = set()  # who signed the PutTraceSegments calls
        self.host_headers: list[list[str]] = []  # the Host header(s) of each PutTraceSegments call
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path != "/TraceSegments":
                    with fake.lock:
                        fake.other.append((self.path, body))
                    self._answer(200, {})
                    return
                auth = self.headers["Authorization"]
                assert auth.startswith("AWS4-HMAC-SHA256 Credential=")
                with fake.lock:
                    fake.access_keys.add(auth.split("Credential=", 1)[1].split("/", 1)[0])
                    fake.host_headers.append(self.headers.get_all("Host") or [])
                docs = json.loads(body)["TraceSegmentDocuments"]
                if not all(_valid(d) for d in docs):  # strict, like a backend validating documents
                    self._answer(400, {"__type": "InvalidRequestException", "message": "invalid document"})
                    return
                with fake.lock:
                    fake.calls += 1
                    status, answer, delay = fake.behaviour(docs)
                if delay:
                    time.sleep(delay)
                if status == 200:
                    failed = {u["Id"] for u in answer.get("UnprocessedTraceSegments", [])}
                    with fake.lock:
                        fake.delivered.extend(d for d in docs if json.loads(d)["id"] not in failed)
                with contextlib.suppress(OSError):  # the daemon may have given up waiting
                    self._answer(status, answer)

            def _answer(self, status: int, answer: dict[str, Any]) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                if "__type" in answer:
                    self.send_header("x-amzn-ErrorType", answer["__type"])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def ids(self) -> set[str]:
        with self.lock:
            return {json.loads(d)["id"] for d in self.delivered}

    def wait_for(self, count: int, timeout: float = 15.0) -> set[str]:
        deadline = time.monotonic() + timeout
        while len(ids := self.ids()) < count:
            assert time.monotonic() < deadline, f"only {len(ids)} of {count} delivered"
            time.sleep(0.02)
        return ids

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _valid(doc: str) -> bool:
    try:
        data = json.loads(doc)
    except ValueError:
        return False
    return isinstance(data, dict) and isinstance(data.get("id"), str)


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
