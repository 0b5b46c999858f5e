"""Faults at the sink: the daemon retries until it recovers, counts exactly what it must drop."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from daemon_helpers import AWS_ENV, DaemonProcess, FakeXRay, free_tcp_port, segment


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


BASE = ["-n", "us-east-1", "--no-telemetry", "--flush-interval", "0.02"]


def _failing_for(seconds: float, status: int, answer: dict[str, Any]) -> Callable[[list[str]], Any]:
    until = time.monotonic() + seconds

    def behaviour(docs: list[str]) -> tuple[int, dict[str, Any], float]:
        if time.monotonic() < until:
            return status, answer, 0.0
        return 200, {"UnprocessedTraceSegments": []}, 0.0

    return behaviour


def test_5xx_then_recovery_loses_nothing(
    fake_xray: FakeXRay, start_daemon: Callable[..., DaemonProcess]
) -> None:
    fake_xray.behaviour = _failing_for(1.0, 500, {"__type": "InternalFailure", "message": "boom"})
    daemon = start_daemon(["--endpoint-url", fake_xray.url, *BASE], AWS_ENV)
    daemon.send_docs([segment(i) for i in range(500)])
    assert fake_xray.wait_for(500) == {f"{i:016x}" for i in range(500)}
    assert daemon.stop() == 0
    summary = daemon.summary()
    assert summary["sent"] == 500
    assert summary["dropped"] == 0
    assert "HTTP 500 InternalFailure" in daemon.log


def test_throttling_is_retried(fake_xray: FakeXRay, start_daemon: Callable[..., DaemonProcess]) -> None:
    answer = {"__type": "ThrottlingException", "message": "Rate exceeded"}
    fake_xray.behaviour = _failing_for(0.8, 429, answer)
    daemon = start_daemon(["--endpoint-url", fake_xray.url, *BASE], AWS_ENV)
    daemon.send_docs([segment(i) for i in range(300)])
    assert len(fake_xray.wait_for(300)) == 300
    assert daemon.stop() == 0
    assert daemon.summary()["sent"] == 300
    assert fake_xray.access_keys == {AWS_ENV["AWS_ACCESS_KEY_ID"]}  # the default chain signed


def test_slow_answers_past_the_timeout_are_retried(
    fake_xray: FakeXRay, start_daemon: Callable[..., DaemonProcess]
) -> None:
    slow_until = time.monotonic() + 1.0

    def behaviour(docs: list[str]) -> tuple[int, dict[str, Any], float]:
        # answers arriving after the daemon gave up still count as delivered here, as at X-Ray;
        # what matters is that every document arrives at least once
        return 200, {"UnprocessedTraceSegments": []}, 0.6 if time.monotonic() < slow_until else 0.0

    fake_xray.behaviour = behaviour
    daemon = start_daemon(["--endpoint-url", fake_xray.url, *BASE, "--request-timeout", "0.2"], AWS_ENV)
    daemon.send_docs([segment(i) for i in range(200)])
    assert len(fake_xray.wait_for(200)) == 200
    assert daemon.stop() == 0
    assert "Timeout" in daemon.log or "timed out" in daemon.log


def test_connection_refused_until_the_sink_appears(start_daemon: Callable[..., DaemonProcess]) -> None:
    port = free_tcp_port()
    daemon = start_daemon(["--endpoint-url", f"http://127.0.0.1:{port}", *BASE], AWS_ENV)
    daemon.send_docs([segment(i) for i in range(250)])
    daemon.wait_log("refused")
    fake = FakeXRay(port)
    try:
        assert len(fake.wait_for(250)) == 250
        assert daemon.stop() == 0
    finally:
        fake.close()
    assert daemon.summary()["sent"] == 250


def test_unprocessed_segments_retried_or_counted_by_code(
    fake_xray: FakeXRay, start_daemon: Callable[..., DaemonProcess]
) -> None:
    seen: set[str] = set()

    def behaviour(docs: list[str]) -> tuple[int, dict[str, Any], float]:
        failed = []
        for doc in docs:
            seg_id = json.loads(doc)["id"]
            number = int(seg_id, 16)
            if number % 10 == 0:
                failed.append({"Id": seg_id, "ErrorCode": "InvalidSegment", "Message": "bad"})
            elif number % 10 == 1 and seg_id not in seen:  # refused once, accepted on retry
                seen.add(seg_id)
                failed.append({"Id": seg_id, "ErrorCode": "ThrottledException", "Message": "slow down"})
        return 200, {"UnprocessedTraceSegments": failed}, 0.0

    fake_xray.behaviour = behaviour
    daemon = start_daemon(["--endpoint-url", fake_xray.url, *BASE], AWS_ENV)
    daemon.send_docs([segment(i) for i in range(200)])
    expected = {f"{i:016x}" for i in range(200) if i % 10 != 0}
    assert fake_xray.wait_for(180) == expected
    assert daemon.stop() == 0
    assert daemon.summary() == {"received": 200, "sent": 180, "rejected": 0, "dropped": 0, "refused": 20}
    assert len(seen) == 20


def test_small_buffer_drops_are_counted_exactly(
    fake_xray: FakeXRay, start_daemon: Callable[..., DaemonProcess]
) -> None:
    outage = threading.Event()
    outage.set()

    def behaviour(docs: list[str]) -> tuple[int, dict[str, Any], float]:
        if outage.is_set():
            return 503, {"__type": "ServiceUnavailableException"}, 0.0
        return 200, {"UnprocessedTraceSegments": []}, 0.0

    fake_xray.behaviour = behaviour
    daemon = start_daemon(
        ["--endpoint-url", fake_xray.url, *BASE, "-m", "3", "--http", "127.0.0.1:0"], AWS_ENV
    )
    ops = re.search(r"http://([0-9.]+:\d+)/healthz", daemon.log)
    assert ops, daemon.log
    metrics_url = f"http://{ops.group(1)}/metrics"
    docs = [segment(i, pad=900) for i in range(4000)]
    size = len(docs[0]) + 48  # what the buffer charges per document
    fits = 3 * 1024 * 1024 // size
    daemon.send_docs(docs, pace_every=100)
    deadline = time.monotonic() + 15
    while "k8sxray_daemon_segments_received_total 4000\n" not in _get(metrics_url):
        assert time.monotonic() < deadline, "not every datagram was read"
        time.sleep(0.05)
    dropped = f'k8sxray_daemon_segments_dropped_total{{reason="buffer_full"}} {4000 - fits}\n'
    assert dropped in _get(metrics_url)
    outage.clear()
    delivered = fake_xray.wait_for(fits)
    assert delivered == {f"{i:016x}" for i in range(fits)}  # the oldest are kept, the newest dropped
    assert daemon.stop() == 0
    assert daemon.summary() == {
        "received": 4000,
        "sent": fits,
        "rejected": 0,
        "dropped": 4000 - fits,
        "refused": 0,
    }


def test_sigterm_ships_a_full_buffer_before_exit(
    fake_xray: FakeXRay, start_daemon: Callable[..., DaemonProcess]
) -> None:
    fake_xray.behaviour = lambda docs: (200, {"UnprocessedTraceSegments": []}, 0.02)
    daemon = start_daemon(["--endpoint-url", fake_xray.url, *BASE, "--concurrency", "1"], AWS_ENV)
    daemon.send_docs([segment(i) for i in range(5000)], pace_every=250)
    time.sleep(0.2)
    assert len(fake_xray.ids()) < 5000  # most are still buffered
    assert daemon.stop() == 0
    assert len(fake_xray.ids()) == 5000
    assert "everything buffered was shipped" in daemon.log


def test_shutdown_timeout_reports_what_could_not_be_shipped(
    fake_xray: FakeXRay, start_daemon: Callable[..., DaemonProcess]
) -> None:
    fake_xray.behaviour = lambda docs: (500, {"__type": "InternalFailure"}, 0.0)
    daemon = start_daemon(["--endpoint-url", fake_xray.url, *BASE, "--shutdown-timeout", "0.5"], AWS_ENV)
    daemon.send_docs([segment(i) for i in range(120)])
    daemon.wait_log("InternalFailure")
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 5
    assert "120 segments could not be shipped" in daemon.log


def test_shutdown_is_bounded_even_with_calls_hanging(
    fake_xray: FakeXRay, start_daemon: Callable[..., DaemonProcess]
) -> None:
    fake_xray.behaviour = lambda docs: (200, {}, 10.0)  # every call hangs far past the grace period
    daemon = start_daemon(
        [
            "--endpoint-url",
            fake_xray.url,
            *BASE,
            "--concurrency",
            "4",
            "--request-timeout",
            "30",
            "--shutdown-timeout",
            "0.5",
        ],
        AWS_ENV,
    )
    daemon.send_docs([segment(i) for i in range(400)])
    deadline = time.monotonic() + 5
    while fake_xray.calls < 4:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 3.5
    assert "400 segments could not be shipped" in daemon.log
