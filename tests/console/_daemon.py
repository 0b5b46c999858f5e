"""The daemon as a real subprocess with its local console, on free loopback ports."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

HEADER = b'{"format": "json", "version": 1}\n'
_CONSOLE = re.compile(r"console: (http://\S+)")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(home: Path) -> dict[str, str]:
    """An environment with no AWS credentials, region or metadata service: local mode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and "proxy" not in k.lower()}
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(home / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-credentials"),
    )
    return env


class LocalDaemon:
    """``python -m k8sxray.daemon`` with no AWS in sight, so that it keeps traces itself."""

    def __init__(self, home: Path, *args: str, http: str | None = None) -> None:
        self.udp = free_port()
        self.tcp = free_port(socket.SOCK_STREAM)
        self.http_port = free_port(socket.SOCK_STREAM)
        home.mkdir(parents=True, exist_ok=True)
        self.log_path = home / f"daemon-{self.udp}.log"
        argv = [
            sys.executable,
            "-m",
            "k8sxray.daemon",
            "-b",
            f"127.0.0.1:{self.udp}",
            "-t",
            f"127.0.0.1:{self.tcp}",
            "--http",
            http or f"127.0.0.1:{self.http_port}",
            *args,
        ]
        self.log_file = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=self.log_file, env=clean_env(home)
        )
        self.url = self._wait_ready()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_ready(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log
            if "receiving segments on udp" in log:
                match = _CONSOLE.search(log)
                return match.group(1) if match else ""
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{log}")
            time.sleep(0.05)
        raise AssertionError(f"daemon not ready after {timeout} s:\n{self.log}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def send(self, *documents: dict[str, Any]) -> None:
        for doc in documents:
            self.sock.sendto(HEADER + json.dumps(doc).encode(), ("127.0.0.1", self.udp))

    def client(self, endpoint: str | None = None) -> Any:
        return boto3.client(
            "xray",
            endpoint_url=endpoint or self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 1}),
        )

    def wait_for(self, trace_ids: set[str], timeout: float = 10.0) -> None:
        """Until every one of ``trace_ids`` is in the console (its traces settle after a second)."""
        deadline = time.monotonic() + timeout
        client = self.client()
        while time.monotonic() < deadline:
            now = time.time()
            found = {
                s["Id"]
                for page in client.get_paginator("get_trace_summaries").paginate(
                    StartTime=now - 3600, EndTime=now + 60
                )
                for s in page["TraceSummaries"]
            }
            if trace_ids <= found:
                return
            time.sleep(0.2)
        raise AssertionError(f"traces {trace_ids - found} not in the console:\n{self.log}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.sock.close()
        self.log_file.close()
        return int(self.proc.returncode)
