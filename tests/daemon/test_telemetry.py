"""The telemetry reporter against moto_server and against a failing-then-recovering HTTP server."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.session
import pytest

from k8sxray.daemon.telemetry import TelemetryCounts, TelemetryReporter

REGION = "us-east-1"


def _session() -> botocore.session.Session:
    session = botocore.session.Session()
    session.set_credentials("AKIDTELEMETRY", "secret")
    return session


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


class Counts:
    """A daemon's counters as the reporter sees them: snapshot() hands over deltas and resets."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current = TelemetryCounts()
        self.calls = 0

    def add(self, **kwargs: Any) -> None:
        with self.lock:
            for name, value in kwargs.items():
                if name == "backend_errors":
                    for kind, n in value.items():
                        self.current.backend_errors[kind] = self.current.backend_errors.get(kind, 0) + n
                else:
                    setattr(self.current, name, getattr(self.current, name) + value)

    def snapshot(self) -> TelemetryCounts:
        with self.lock:
            self.calls += 1
            taken, self.current = self.current, TelemetryCounts()
            return taken


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _moto_records() -> list[Any]:
    from moto.xray.models import xray_backends

    return list(xray_backends["123456789012"][REGION]._telemetry_records)


@pytest.mark.usefixtures("no_proxy_env")
def test_counts_reach_moto_as_put_telemetry_records(moto_url: str) -> None:
    before = len(_moto_records())
    counts = Counts()
    counts.add(
        segments_received=12,
        segments_sent=10,
        segments_spillover=1,
        segments_rejected=2,
        backend_errors={"Timeout": 3, "HTTPCode5XX": 1, "Weird": 2},
    )
    reporter = TelemetryReporter(
        counts.snapshot,
        _session(),
        REGION,
        endpoint_url=moto_url,
        resource_arn="arn:aws:eks:us-east-1:123456789012:cluster/c",
        hostname="node-a",
        instance_id="i-0123456789abcdef0",
        interval=0.05,
    )
    reporter.start()
    try:
        _wait_for(lambda: len(_moto_records()) > before)
    finally:
        reporter.close()
    sent = _moto_records()[before:]
    assert sent[0].hostname == "node-a"
    assert sent[0].instance_id == "i-0123456789abcdef0"
    assert sent[0].resource_arn == "arn:aws:eks:us-east-1:123456789012:cluster/c"
    records = [r for batch in sent for r in batch.records]
    assert sum(r["SegmentsReceivedCount"] for r in records) == 12
    first = records[0]
    assert (
        first["SegmentsReceivedCount"],
        first["SegmentsSentCount"],
        first["SegmentsSpilloverCount"],
        first["SegmentsRejectedCount"],
    ) == (12, 10, 1, 2)
    assert first["BackendConnectionErrors"] == {
        "TimeoutCount": 3,
        "ConnectionRefusedCount": 0,
        "HTTPCode4XXCount": 0,
        "HTTPCode5XXCount": 1,
        "UnknownHostCount": 0,
        "OtherCount": 2,
    }
    assert isinstance(first["Timestamp"], (int, float))
    assert abs(first["Timestamp"] - time.time()) < 60


class Recorder:
    """A real HTTP server speaking PutTelemetryRecords that fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        self.failing = False
        self.server: ThreadingHTTPServer | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                recorder.attempts += 1
                if recorder.failing or self.path != "/TelemetryRecords":
                    status, data = 500, b'{"__type": "InternalFailure", "message": "down"}'
                else:
                    recorder.bodies.append(json.loads(body))
                    status, data = 200, b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for body in self.bodies for r in body["TelemetryRecords"]]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    rec.server = ThreadingHTTPServer(("127.0.0.1", 0), rec.handler())
    rec.server.daemon_threads = True
    thread = threading.Thread(target=rec.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()
    thread.join(5)


def _url(rec: Recorder) -> str:
    assert rec.server is not None
    return f"http://127.0.0.1:{rec.server.server_address[1]}"


@pytest.mark.usefixtures("no_proxy_env")
def test_failed_records_are_kept_and_resent(recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    recorder.failing = True
    counts = Counts()
    counts.add(segments_received=7, backend_errors={"ConnectionRefused": 4})
    reporter = TelemetryReporter(
        counts.snapshot, _session(), REGION, endpoint_url=_url(recorder), interval=0.02, timeout=2.0
    )
    with caplog.at_level(logging.WARNING, logger="k8sxray.daemon.telemetry"):
        reporter.start()
        _wait_for(lambda: recorder.attempts >= 3)
        counts.add(segments_received=5)
        _wait_for(lambda: counts.calls >= 8)
        assert recorder.bodies == []
        assert reporter.pending >= 2
        recorder.failing = False
        _wait_for(lambda: sum(r["SegmentsReceivedCount"] for r in recorder.records) == 12)
        reporter.close()
    assert reporter.pending == 0
    assert sum(r["BackendConnectionErrors"]["ConnectionRefusedCount"] for r in recorder.records) == 4
    timestamps = [r["Timestamp"] for r in recorder.records]
    assert timestamps == sorted(timestamps)
    assert recorder.bodies[0]["Hostname"]
    warnings = [r for r in caplog.records if "PutTelemetryRecords failed" in r.getMessage()]
    assert len(warnings) == 1  # many failures, one line per minute


@pytest.mark.usefixtures("no_proxy_env")
def test_pending_records_are_bounded(recorder: Recorder) -> None:
    recorder.failing = True
    counts = Counts()
    reporter = TelemetryReporter(
        counts.snapshot,
        _session(),
        REGION,
        endpoint_url=_url(recorder),
        interval=0.01,
        timeout=2.0,
        max_pending=5,
    )
    reporter.start()
    try:
        _wait_for(lambda: counts.calls >= 12)
        assert reporter.pending == 5
        recorder.failing = False
        _wait_for(lambda: recorder.bodies != [])
    finally:
        reporter.close()
    assert len(recorder.bodies[0]["TelemetryRecords"]) == 5


@pytest.mark.usefixtures("no_proxy_env")
def test_close_sends_a_final_record_only_when_something_was_counted(recorder: Recorder) -> None:
    counts = Counts()
    idle = TelemetryReporter(counts.snapshot, _session(), REGION, endpoint_url=_url(recorder), interval=60)
    idle.start()
    idle.close()
    assert recorder.attempts == 0

    counts.add(segments_sent=3, segments_spillover=2)
    busy = TelemetryReporter(
        counts.snapshot, _session(), REGION, endpoint_url=_url(recorder), interval=60, hostname="h"
    )
    busy.start()
    busy.close()
    [body] = recorder.bodies
    assert body["Hostname"] == "h"
    assert "EC2InstanceId" not in body
    assert "ResourceARN" not in body
    [record] = body["TelemetryRecords"]
    assert (record["SegmentsSentCount"], record["SegmentsSpilloverCount"]) == (3, 2)


@pytest.mark.usefixtures("no_proxy_env")
def test_a_failing_snapshot_or_endpoint_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> TelemetryCounts:
        raise RuntimeError("counter exploded")

    reporter = TelemetryReporter(broken, _session(), REGION, endpoint_url="http://127.0.0.1:9", interval=0.01)
    with caplog.at_level(logging.WARNING, logger="k8sxray.daemon.telemetry"):
        reporter.start()
        time.sleep(0.1)
        reporter.close()
    assert sum("cannot read the daemon's counts" in r.getMessage() for r in caplog.records) == 1

    counts = Counts()
    counts.add(segments_received=1)
    unreachable = TelemetryReporter(
        counts.snapshot, _session(), REGION, endpoint_url="http://127.0.0.1:9", interval=60, timeout=0.5
    )
    unreachable.start()
    unreachable.close()
    assert unreachable.pending == 1
