"""The program: sink fallback, exit codes, log format, version."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

import pytest
from daemon_helpers import HEADER, DaemonProcess, FakeXRay

from k8sxray.console.store import Store

NO_CREDENTIALS = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
}


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k8sxray.daemon", *args],
        capture_output=True,
        text=True,
        timeout=30,
        # a clean environment (no AWS settings from the machine), but the same k8sxray as this test's
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **(env or {})},
        check=False,
    )


def test_without_credentials_it_runs_locally_and_keeps_segments(
    start_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    daemon = start_daemon(["--log-format", "json"], {**NO_CREDENTIALS, "XDG_DATA_HOME": str(tmp_path)})
    now = time.time()
    docs = [
        json.dumps(
            {
                "name": "svc",
                "id": f"{i:016x}",
                "trace_id": f"1-{int(now):08x}-{i:024x}",
                "start_time": now,
                "end_time": now + 0.1,
            }
        ).encode()
        for i in range(3)
    ]
    daemon.send_docs(docs)
    time.sleep(0.3)
    assert daemon.stop() == 0
    assert daemon.stdout == b""
    records = [json.loads(line) for line in daemon.log.splitlines()]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any("no AWS credentials found: running locally" in r["message"] for r in records)
    store = Store(tmp_path / "k8sxray" / "traces.db")
    try:
        assert sorted(store.documents(f"1-{int(now):08x}-{i:024x}")[0] for i in range(3)) == sorted(docs)
    finally:
        store.close()


def test_sink_stdout_by_name_needs_no_aws_at_all(start_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = start_daemon(["--sink", "stdout"], NO_CREDENTIALS)
    daemon.send(HEADER + b'{"k": "v"}')
    deadline = time.monotonic() + 5
    while not daemon.stdout:
        assert time.monotonic() < deadline, daemon.log
        time.sleep(0.02)
    assert daemon.stop() == 0
    assert daemon.stdout == b'{"k": "v"}\n'
    assert "no AWS credentials" not in daemon.log


def test_unknown_yaml_key_exits_2_with_the_key_named(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("Version: 2\nTotalBufferSizeMB: 8\nSampling: true\n")
    result = _run("-c", str(cfg))
    assert result.returncode == 2
    assert "unknown key 'Sampling'" in result.stderr


def test_xray_sink_without_region_exits_2() -> None:
    env = {**NO_CREDENTIALS, "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    result = _run("--sink", "xray", "-o", "-b", "127.0.0.1:0", "-t", "off", "--http", "off", env=env)
    assert result.returncode == 2
    assert "no AWS region" in result.stderr


def test_udp_port_in_use_is_named_and_nothing_else_is_reported(
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    daemon = start_daemon(["--sink", "stdout"], NO_CREDENTIALS)
    result = _run(
        "--sink", "stdout", "-b", f"127.0.0.1:{daemon.port}", "-t", "off", "--http", "off", env=NO_CREDENTIALS
    )
    assert result.returncode == 1
    assert f"cannot listen on udp 127.0.0.1:{daemon.port}: Address already in use" in result.stderr
    assert "shutting down" not in result.stderr
    assert "shipped" not in result.stderr
    assert daemon.stop() == 0


@pytest.mark.parametrize(
    ("flag", "scheme", "what"), [("-t", "tcp", "sampling port"), ("--http", "http", "ops")]
)
def test_tcp_and_http_ports_in_use_are_named(flag: str, scheme: str, what: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"-t": "off", "--http": "off", flag: f"127.0.0.1:{port}"}
        args = [a for pair in ports.items() for a in pair]
        result = _run("--sink", "stdout", "-b", "127.0.0.1:0", *args, env=NO_CREDENTIALS)
    assert result.returncode == 1
    assert f"cannot listen on {scheme} 127.0.0.1:{port} ({what}" in result.stderr
    assert "Address already in use" in result.stderr
    assert "shutting down" not in result.stderr
    assert "shipped" not in result.stderr


@pytest.mark.parametrize("flag", ["-v", "--v", "-version", "--version", "-version=true"])
def test_version_is_the_packages(flag: str) -> None:
    result = _run(flag)
    assert result.returncode == 0
    assert result.stdout == f"k8sxray daemon {metadata.version('k8sxray')}\n"


@pytest.mark.parametrize("flag", ["-h", "--h", "-help", "--help"])
def test_help_in_every_go_spelling(flag: str) -> None:
    result = _run(flag)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m k8sxray.daemon")


def test_go_daemon_command_line_starts_the_daemon(start_daemon: Callable[..., DaemonProcess]) -> None:
    # As a manifest written for AWS's daemon spells it (DaemonProcess adds its own -b/-t/--http first).
    daemon = start_daemon(
        ["-local-mode", "-region", "us-east-1", "-log-level=debug", "-buffer-memory", "4", "-sink", "stdout"],
        NO_CREDENTIALS,
    )
    assert "buffer 4 MB; sink stdout" in daemon.log
    assert daemon.stop() == 0


def test_help_lists_every_flag() -> None:
    usage = _run("-h")
    assert usage.returncode == 0
    for flag in (
        "--bind",
        "--bind-tcp",
        "--buffer-memory",
        "--region",
        "--resource-arn",
        "--role-arn",
        "--local-mode",
        "--config",
        "--proxy-address",
        "--log-level",
        "--endpoint-url",
        "--sink",
        "--shutdown-timeout",
        "--log-format",
        "--http",
        "--concurrency",
        "--sampling-rules",
    ):
        assert flag in usage.stdout


def test_region_from_instance_metadata(
    fake_xray: FakeXRay, start_daemon: Callable[..., DaemonProcess]
) -> None:
    requests: list[str] = []

    class Metadata(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_PUT(self) -> None:  # IMDSv2 session token
            requests.append(f"PUT {self.path}")
            self._reply(b"token-123")

        def do_GET(self) -> None:
            requests.append(f"GET {self.path} {self.headers.get('X-aws-ec2-metadata-token')}")
            if self.path == "/latest/meta-data/placement/availability-zone/":
                self._reply(b"eu-central-1b")
            else:
                self.send_error(404)

        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        env = {
            "AWS_ACCESS_KEY_ID": "a",
            "AWS_SECRET_ACCESS_KEY": "b",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}/",
        }
        daemon = start_daemon(["--sink", "xray", "--endpoint-url", fake_xray.url, "--no-telemetry"], env)
        assert "(region eu-central-1)" in daemon.log
        assert daemon.stop() == 0
    finally:
        server.shutdown()
        server.server_close()
    assert requests[0] == "PUT /latest/api/token"
    assert "GET /latest/meta-data/placement/availability-zone/ token-123" in requests
