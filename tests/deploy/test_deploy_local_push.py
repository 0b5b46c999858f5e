"""The local overlay's wiring, run for real on loopback: a daemon started with the DaemonSet's
arguments and environment ships a segment with its xray sink (signed with the placeholder keys)
into a daemon started with the console's arguments, where boto3 finds it through X-Ray's API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from deploy_helpers import Doc, container, env_values, expand, find, named, render

HEADER = b'{"format": "json", "version": 1}\n'
TOKEN = "local-overlay-test-token"


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _replace(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with the value of ``flag`` (given as ``flag value``) replaced."""
    assert flag in args, f"{flag} not in {args}"
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


class Daemon:
    """``python -m k8sxray.daemon`` with the given arguments and environment, and no AWS around."""

    def __init__(self, home: Path, args: list[str], env: dict[str, str]) -> None:
        home.mkdir(parents=True)
        self.log_path = home / "daemon.log"
        environ = {
            k: v for k, v in os.environ.items() if not k.startswith("AWS_") and "proxy" not in k.lower()
        }
        environ.update(
            HOME=str(home),
            XDG_DATA_HOME=str(home / "data"),
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=str(home / "no-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(home / "no-credentials"),
        )
        environ.update(env)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "k8sxray.daemon", *args],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=environ,
                cwd=home,
            )
        deadline = time.monotonic() + 20
        while "receiving segments on udp" not in self.log:
            assert self.proc.poll() is None, f"the daemon exited with {self.proc.returncode}:\n{self.log}"
            assert time.monotonic() < deadline, f"the daemon did not start:\n{self.log}"
            time.sleep(0.05)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def _console_args(console: Doc, tmp_path: Path, ports: tuple[int, int, int], token: bool) -> list[str]:
    """The console's arguments as the manifest has them, on loopback ports (http, udp, tcp)."""
    http, udp, tcp = ports
    args = container(console)["args"]
    if not token:
        args = [a for a in args if not a.startswith("--console-token")]
    args = expand(args, {"K8SXRAY_CONSOLE_TOKEN": TOKEN})
    args = _replace(args, "--store", str(tmp_path / "traces.db"))
    args = _replace(args, "--bind", f"127.0.0.1:{udp}")
    args = _replace(args, "--bind-tcp", f"127.0.0.1:{tcp}")
    return _replace(args, "--http", f"127.0.0.1:{http}")


def _daemonset(
    docs: list[Doc], tmp_path: Path, console_url: str, udp: int
) -> tuple[list[str], dict[str, str]]:
    c = container(find(docs, "DaemonSet", "xray-daemon"), "xray-daemon")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(named(docs, "ConfigMap", "xray-daemon-config-")["data"]["cfg.yaml"])
    args = _replace(c["args"], "-c", str(cfg))
    args = _replace(args, "--endpoint-url", console_url)
    args = _replace(args, "--http", "off")
    args += ["--bind", f"127.0.0.1:{udp}", "--bind-tcp", "off"]  # flags win over cfg.yaml's 0.0.0.0
    env = {name: value for name, value in env_values(c).items() if isinstance(value, str)}
    return args, env


def _send_segment(udp: int) -> tuple[str, dict[str, Any]]:
    now = time.time()
    trace_id = f"1-{int(now):08x}-{os.urandom(12).hex()}"
    doc = {
        "name": "service-a",
        "id": os.urandom(8).hex(),
        "trace_id": trace_id,
        "start_time": now - 0.25,
        "end_time": now,
        "origin": "AWS::EKS::Container",
        "http": {"request": {"method": "GET", "url": "http://service-a:8080/"}, "response": {"status": 200}},
    }
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(HEADER + json.dumps(doc).encode(), ("127.0.0.1", udp))
    return trace_id, doc


def _xray(url: str, token: str | None) -> Any:
    client = boto3.client(
        "xray",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}),
    )
    if token is not None:

        def add_token(request: Any, **_: Any) -> None:
            request.headers["X-K8sxray-Token"] = token

        client.meta.events.register("before-sign.xray.*", add_token)
    return client


def _wait_for_trace(client: Any, trace_id: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        traces = client.batch_get_traces(TraceIds=[trace_id])["Traces"]
        if traces or time.monotonic() > deadline:
            return [json.loads(s["Document"]) for t in traces for s in t["Segments"]]
        time.sleep(0.1)


def _run(
    tmp_path: Path, daemons: list[Daemon], token: bool
) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    docs = render("overlays/local")
    http = _free_port(socket.SOCK_STREAM)
    ports = (http, _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM))
    console_args = _console_args(find(docs, "Deployment", "xray-console"), tmp_path, ports, token)
    daemons.append(Daemon(tmp_path / "console", console_args, {}))
    url = f"http://127.0.0.1:{http}"
    udp = _free_port(socket.SOCK_DGRAM)
    args, env = _daemonset(docs, tmp_path, url, udp)
    if token:
        env["K8SXRAY_CONSOLE_TOKEN"] = TOKEN  # the Secret, as the manifest hands it over
    daemons.append(Daemon(tmp_path / "node", args, env))
    trace_id, sent = _send_segment(udp)
    found = _wait_for_trace(_xray(url, TOKEN if token else None), trace_id, timeout=8.0)
    return url, trace_id, sent, found


def test_the_daemonsets_xray_sink_ships_into_the_console(tmp_path: Path, daemons: list[Daemon]) -> None:
    """The mechanism: placeholder keys sign, the console stores what PutTraceSegments brings."""
    url, trace_id, sent, found = _run(tmp_path, daemons, token=False)
    assert found == [sent], daemons[1].log
    client = _xray(url, None)
    deadline = time.monotonic() + 8
    while True:  # a trace is summarised once it settles (a second without new documents)
        summaries = client.get_trace_summaries(StartTime=time.time() - 60, EndTime=time.time() + 60)
        ids = [s["Id"] for s in summaries["TraceSummaries"]]
        if ids or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ids == [trace_id]
    assert "HTTP 4" not in daemons[1].log  # nothing refused on the way


def test_the_local_overlay_as_rendered_with_its_token(tmp_path: Path, daemons: list[Daemon]) -> None:
    """The overlay exactly: the console asks for the Secret's token, the DaemonSet has it."""
    _, _, sent, found = _run(tmp_path, daemons, token=True)
    assert "HTTP 401" not in daemons[1].log, "the console refused the DaemonSet's calls (401)"
    assert found == [sent], daemons[1].log
