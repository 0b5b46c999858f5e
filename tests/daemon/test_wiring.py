"""The server wires the side services: /healthz and /metrics, the sampling proxy, telemetry."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from daemon_helpers import AWS_ENV, DaemonProcess, FakeXRay, segment

pytest.importorskip("k8sxray.daemon.ops")
pytest.importorskip("k8sxray.daemon.proxy")
pytest.importorskip("k8sxray.daemon.telemetry")


def _address(log: str, pattern: str) -> str:
    match = re.search(pattern, log)
    assert match, log
    return f"{match.group(1)}:{match.group(2)}"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post(url: str, body: bytes) -> int:
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_ops_proxy_and_telemetry(fake_xray: FakeXRay, start_daemon: Callable[..., DaemonProcess]) -> None:
    daemon = start_daemon(
        [
            "--endpoint-url",
            fake_xray.url,
            "-n",
            "us-east-1",
            "--http",
            "127.0.0.1:0",
            "-t",
            "127.0.0.1:0",
            "-a",
            "arn:aws:eks:us-east-1:1:cluster/c",
        ],
        AWS_ENV,
    )
    daemon.wait_log("/healthz")
    daemon.wait_log("sampling proxy listening")
    ops = _address(daemon.log, r"http://([0-9.]+):(\d+)/healthz")
    proxy = _address(daemon.log, r"sampling proxy listening on ([0-9.]+):(\d+)")

    assert _get(f"http://{ops}/healthz")[0] == 200
    daemon.send_docs([segment(i) for i in range(7)])
    daemon.send(b"junk")
    fake_xray.wait_for(7)
    deadline = time.monotonic() + 5
    while True:
        status, metrics = _get(f"http://{ops}/metrics")
        if "k8sxray_daemon_segments_sent_total 7" in metrics or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200
    assert "k8sxray_daemon_segments_received_total 7" in metrics
    assert "k8sxray_daemon_segments_sent_total 7" in metrics
    assert 'k8sxray_daemon_segments_rejected_total{reason="bad_header"} 1' in metrics

    assert _post(f"http://{proxy}/GetSamplingRules", b"{}") == 200
    assert ("/GetSamplingRules", b"{}") in fake_xray.other
    assert _post(f"http://{proxy}/TraceSegments", b"{}") >= 400  # only the two sampling calls pass

    assert daemon.stop() == 0
    telemetry = [json.loads(body) for path, body in fake_xray.other if path == "/TelemetryRecords"]
    assert telemetry, "the final telemetry record is sent on shutdown"
    records = [r for t in telemetry for r in t["TelemetryRecords"]]
    assert sum(r["SegmentsReceivedCount"] for r in records) == 7
    assert sum(r["SegmentsSentCount"] for r in records) == 7
    assert sum(r["SegmentsRejectedCount"] for r in records) == 1
    assert telemetry[-1]["ResourceARN"] == "arn:aws:eks:us-east-1:1:cluster/c"


def test_draining_daemon_reports_not_ready_and_a_second_signal_exits_at_once(
    fake_xray: FakeXRay, start_daemon: Callable[..., DaemonProcess]
) -> None:
    fake_xray.behaviour = lambda docs: (500, {"__type": "InternalFailure"}, 0.0)  # nothing can be shipped
    daemon = start_daemon(
        [
            "--endpoint-url",
            fake_xray.url,
            "-n",
            "us-east-1",
            "--http",
            "127.0.0.1:0",
            "--no-telemetry",
            "--shutdown-timeout",
            "20",
        ],
        AWS_ENV,
    )
    daemon.wait_log("/healthz")
    ops = _address(daemon.log, r"http://([0-9.]+):(\d+)/healthz")
    daemon.send_docs([segment(i) for i in range(10)])
    daemon.wait_log("InternalFailure")
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.wait_log("shutting down")
    assert _get(f"http://{ops}/healthz")[0] == 503
    assert "k8sxray_daemon_segments_received_total 10" in _get(f"http://{ops}/metrics")[1]
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(10) == 1
    assert time.monotonic() - started < 5
    assert "again: exiting without shipping" in daemon.log
