"""The ops endpoint over real HTTP, and the Prometheus renderer checked with prometheus_client's parser."""

from __future__ import annotations

import http.client
import logging
import math
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8sxray.daemon.ops import CONTENT_TYPE, OpsServer, counter, gauge, histogram, render, summary


def _parse(text: str) -> dict[str, Any]:
    parser = pytest.importorskip("prometheus_client.parser")
    return {family.name: family for family in parser.text_string_to_metric_families(text)}


def test_render_counters_gauges_and_labels_with_escaping() -> None:
    text = render(
        [
            counter("xray_segments_received_total", "Segments received.", 42),
            counter(
                "xray_segments_rejected_total",
                'Rejected by "reason".\nSee \\docs.',
                {"bad_header": 3, 'quote"back\\slash\nnewline': 1},
                label="reason",
            ),
            gauge("xray_buffer_bytes", "Bytes held.", 1536.5),
            counter(
                "xray_backend_errors_total",
                "Errors.",
                {("429", "ThrottlingException"): 2},
                label=("status", "code"),
            ),
        ]
    )
    assert text.endswith("\n")
    assert '# HELP xray_segments_rejected_total Rejected by "reason".\\nSee \\\\docs.\n' in text
    assert "# TYPE xray_segments_received_total counter\n" in text
    assert 'xray_segments_rejected_total{reason="quote\\"back\\\\slash\\nnewline"} 1\n' in text
    assert "xray_segments_received_total 42\n" in text

    families = _parse(text)
    received = families["xray_segments_received"]
    assert received.type == "counter"
    assert [s.value for s in received.samples] == [42]
    rejected = families["xray_segments_rejected"]
    assert rejected.documentation == 'Rejected by "reason".\nSee \\docs.'
    assert {s.labels["reason"]: s.value for s in rejected.samples} == {
        "bad_header": 3,
        'quote"back\\slash\nnewline': 1,
    }
    assert families["xray_buffer_bytes"].samples[0].value == 1536.5
    [error] = families["xray_backend_errors"].samples
    assert error.labels == {"status": "429", "code": "ThrottlingException"}


def test_render_histogram_and_summary() -> None:
    text = render(
        [
            histogram(
                "xray_batch_seconds", "Batch latency.", [(0.01, 3), (0.1, 7), (1.0, 9)], total=2.5, count=10
            ),
            summary("xray_put_seconds", "Put latency.", {0.5: 0.02, 0.99: 0.3}, total=1.25, count=50),
        ]
    )
    assert 'xray_batch_seconds_bucket{le="+Inf"} 10\n' in text
    assert 'xray_batch_seconds_bucket{le="0.01"} 3\n' in text
    families = _parse(text)
    batch = families["xray_batch_seconds"].samples
    buckets = {s.labels["le"]: s.value for s in batch if s.name.endswith("_bucket")}
    assert buckets == {"0.01": 3, "0.1": 7, "1": 9, "+Inf": 10}
    sums = {s.name: s.value for s in batch if "le" not in s.labels}
    assert sums == {"xray_batch_seconds_sum": 2.5, "xray_batch_seconds_count": 10}
    put = families["xray_put_seconds"].samples
    quantiles = {s.labels["quantile"]: s.value for s in put if "quantile" in s.labels}
    assert quantiles == {"0.5": 0.02, "0.99": 0.3}
    assert {s.name: s.value for s in put if not s.labels} == {
        "xray_put_seconds_sum": 1.25,
        "xray_put_seconds_count": 50,
    }
    assert families["xray_put_seconds"].type == "summary"


def test_render_special_values_and_empty() -> None:
    text = render(
        [gauge("g", "special", {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "big": 1e20}, label="v")]
    )
    assert 'g{v="nan"} NaN\n' in text
    assert 'g{v="inf"} +Inf\n' in text
    assert 'g{v="ninf"} -Inf\n' in text
    assert 'g{v="big"} 1e+20\n' in text
    assert render([]) == ""


@pytest.mark.parametrize(
    "make",
    [
        lambda: counter("bad-name", "x", 1),
        lambda: counter("ok", "x", {"a": 1}),  # labelled values without a label name
        lambda: counter("ok", "x", {"a": 1}, label="bad-label"),
        lambda: counter("ok", "x", {"a": 1}, label="__reserved"),
        lambda: counter("ok", "x", {("a", "b"): 1}, label=("one",)),
        lambda: histogram("h", "x", [(1.0, 5), (2.0, 3)], total=1, count=5),
    ],
)
def test_render_rejects_invalid_metrics(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        make()


class State:
    def __init__(self) -> None:
        self.ready = False
        self.metrics_text = render([counter("xray_segments_received_total", "Segments received.", 5)])
        self.fail_ready = False
        self.fail_metrics = False

    def is_ready(self) -> bool:
        if self.fail_ready:
            raise RuntimeError("readiness exploded")
        return self.ready

    def metrics(self) -> str:
        if self.fail_metrics:
            raise RuntimeError("metrics exploded")
        return self.metrics_text


@pytest.fixture
def served() -> Iterator[tuple[State, OpsServer]]:
    state = State()
    server = OpsServer(("127.0.0.1", 0), state.is_ready, state.metrics)
    server.start()
    yield state, server
    server.close()


def _get(server: OpsServer, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*server.address, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_healthz_turns_ready(served: tuple[State, OpsServer]) -> None:
    state, server = served
    status, _, body = _get(server, "/healthz")
    assert (status, body) == (503, b"not ready\n")
    state.ready = True
    status, headers, body = _get(server, "/healthz")
    assert (status, body) == (200, b"ok\n")
    assert headers["Content-Type"].startswith("text/plain")


def test_metrics_content_type_and_body(served: tuple[State, OpsServer]) -> None:
    _, server = served
    status, headers, body = _get(server, "/metrics")
    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["Content-Length"]) == len(body)
    assert _parse(body.decode())["xray_segments_received"].samples[0].value == 5
    assert _get(server, "/metrics?name[]=x")[0] == 200


def test_head_unknown_paths_and_methods(served: tuple[State, OpsServer]) -> None:
    state, server = served
    state.ready = True
    status, headers, body = _get(server, "/metrics", "HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) == len(state.metrics_text)
    assert _get(server, "/healthz", "HEAD")[0] == 200
    for path in ("/", "/metricsx", "/healthz/", "/../etc/passwd"):
        assert _get(server, path)[0] == 404
    assert _get(server, "/healthz", "POST")[0] == 405
    assert _get(server, "/metrics", "DELETE")[0] == 405


def test_failing_callbacks_and_garbage_never_crash_it(
    served: tuple[State, OpsServer], caplog: pytest.LogCaptureFixture
) -> None:
    state, server = served
    state.fail_ready = state.fail_metrics = True
    with caplog.at_level(logging.WARNING, logger="k8sxray.daemon.ops"):
        for _ in range(3):
            assert _get(server, "/healthz")[0] == 503
            assert _get(server, "/metrics")[0] == 500
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1

    for raw in (b"\x00\xff garbage\r\n\r\n", b"GET /healthz\r\n", b"GET / HTTP/9.9\r\n\r\n", b""):
        with socket.create_connection(server.address, timeout=5) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            answer = sock.makefile("rb").read()
        assert answer == b"" or answer.startswith(b"HTTP/1.")
        if answer:
            assert answer.split(b" ")[1][:1] in (b"4", b"5")

    state.fail_ready = state.fail_metrics = False
    state.ready = True
    assert _get(server, "/healthz")[0] == 200


def test_keep_alive_serves_several_requests_on_one_connection(served: tuple[State, OpsServer]) -> None:
    state, server = served
    state.ready = True
    conn = http.client.HTTPConnection(*server.address, timeout=5)
    try:
        for path in ("/healthz", "/metrics", "/nope", "/healthz"):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert response.status in (200, 404)
    finally:
        conn.close()


def test_close_releases_the_port() -> None:
    state = State()
    server = OpsServer(("127.0.0.1", 0), state.is_ready, state.metrics)
    server.start()
    address = server.address
    server.close()
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more
        socket.create_connection(address, timeout=1).close()
    with pytest.raises(RuntimeError):
        _ = server.address


_PIECES = st.sampled_from(
    [
        b"GET ",
        b"HEAD ",
        b"POST ",
        b"/healthz",
        b"/metrics",
        b" HTTP/1.1\r\n",
        b" HTTP/1.0\r\n",
        b"\r\n",
        b"Host: x\r\n",
        b"Content-Length: 3\r\n",
        b"Connection: keep-alive\r\n",
        b"\x00\xff",
        b" ",
        b"?",
    ]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200), st.lists(_PIECES, max_size=10).map(b"".join)))
def test_fuzz_arbitrary_bytes_never_break_the_ops_server(
    served: tuple[State, OpsServer], data: bytes
) -> None:
    state, server = served
    state.ready = True
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = sock.makefile("rb").read()
    assert answer == b"" or answer.startswith(b"HTTP/1.")
    assert _get(server, "/healthz")[0] == 200
