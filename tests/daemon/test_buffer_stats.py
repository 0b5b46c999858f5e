"""The bounded buffer and the counters (Prometheus text, telemetry deltas)."""

from __future__ import annotations

import threading
import time

from k8sxray.daemon.buffer import DOC_OVERHEAD, Buffer
from k8sxray.daemon.stats import Stats


def test_take_returns_a_full_batch_at_once_and_a_partial_one_after_the_wait() -> None:
    buffer = Buffer(1 << 20, batch_size=3)
    docs = [b"{%d}" % i for i in range(4)]
    assert buffer.put_many(docs, sum(len(d) + DOC_OVERHEAD for d in docs)) == 0
    started = time.monotonic()
    assert buffer.take(5.0) == docs[:3]
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    assert buffer.take(0.05) == docs[3:]
    assert time.monotonic() - started >= 0.04


def test_a_waiting_taker_wakes_when_a_batch_is_complete() -> None:
    buffer = Buffer(1 << 20, batch_size=2)
    got: list[list[bytes]] = []
    taker = threading.Thread(target=lambda: got.append(buffer.take(10.0)))
    taker.start()
    time.sleep(0.05)
    buffer.put_many([b"{a}", b"{b}"], 2 * (3 + DOC_OVERHEAD))
    taker.join(2.0)
    assert got == [[b"{a}", b"{b}"]]


def test_bytes_stay_held_until_released_and_bound_new_input() -> None:
    size = 10 + DOC_OVERHEAD
    buffer = Buffer(3 * size, batch_size=50)
    docs = [b"0123456789"] * 5
    assert buffer.put_many(docs, 5 * size) == 2
    batch = buffer.take(0.0)
    assert len(batch) == 3
    assert (len(buffer), buffer.held_documents) == (0, 3)  # taken, not yet shipped
    assert buffer.put_many(docs[:1], size) == 1  # in flight still counts
    buffer.release(3 * size, 3)
    assert buffer.held_documents == 0
    assert buffer.put_many(docs[:1], size) == 0
    assert buffer.held_documents == 1


def test_close_wakes_takers_and_refuses_input() -> None:
    buffer = Buffer(1 << 20)
    got: list[list[bytes]] = []
    taker = threading.Thread(target=lambda: got.append(buffer.take(10.0)))
    taker.start()
    time.sleep(0.05)
    buffer.close()
    taker.join(2.0)
    assert got == [[]]
    assert buffer.put_many([b"{}"], 2 + DOC_OVERHEAD) == 1


def test_prometheus_text() -> None:
    stats = Stats()
    stats.received = 10
    stats.rejected["bad_header"] += 2
    stats.add(sent=7, latency=0.03)
    stats.add(dropped=("buffer_full", 3), backend_error="HTTPCode5XX", backend_rejected={'Inv"alid': 1})
    stats.add(retried=4, latency=20.0)
    stats.buffer_bytes = lambda: 1234
    text = stats.render_prometheus()
    lines = set(text.splitlines())
    assert "k8sxray_daemon_segments_received_total 10" in lines
    assert "k8sxray_daemon_segments_sent_total 7" in lines
    assert 'k8sxray_daemon_segments_rejected_total{reason="bad_header"} 2' in lines
    assert 'k8sxray_daemon_segments_rejected_total{reason="too_large"} 0' in lines
    assert 'k8sxray_daemon_segments_dropped_total{reason="buffer_full"} 3' in lines
    assert "k8sxray_daemon_segments_retried_total 4" in lines
    assert 'k8sxray_daemon_backend_errors_total{code="HTTPCode5XX"} 1' in lines
    assert 'k8sxray_daemon_backend_rejected_total{code="Inv\\"alid"} 1' in lines
    assert "k8sxray_daemon_buffer_bytes 1234" in lines
    assert 'k8sxray_daemon_batch_seconds_bucket{le="0.05"} 1' in lines
    assert 'k8sxray_daemon_batch_seconds_bucket{le="+Inf"} 2' in lines
    assert "k8sxray_daemon_batch_seconds_count 2" in lines
    assert "# TYPE k8sxray_daemon_batch_seconds histogram" in lines
    assert text.endswith("\n")
    for line in text.splitlines():  # every sample line is "name{labels} number"
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


def test_latency_buckets_include_their_upper_bound() -> None:
    stats = Stats()
    for seconds in (0.0, 0.005, 0.0051, 10.0, 10.5):
        stats.add(latency=seconds)
    lines = set(stats.render_prometheus().splitlines())
    assert 'k8sxray_daemon_batch_seconds_bucket{le="0.005"} 2' in lines
    assert 'k8sxray_daemon_batch_seconds_bucket{le="0.01"} 3' in lines
    assert 'k8sxray_daemon_batch_seconds_bucket{le="10"} 4' in lines
    assert 'k8sxray_daemon_batch_seconds_bucket{le="+Inf"} 5' in lines


def test_telemetry_deltas() -> None:
    stats = Stats()
    stats.received = 5
    stats.rejected["empty"] += 1
    stats.add(sent=4, backend_error="Timeout", dropped=("buffer_full", 1))
    first = stats.telemetry_delta()
    assert first["segments_received"] == 5
    assert first["segments_sent"] == 4
    assert first["segments_spillover"] == 1
    assert first["segments_rejected"] == 1
    assert first["backend_errors"]["Timeout"] == 1
    assert set(first["backend_errors"]) == {
        "Timeout",
        "ConnectionRefused",
        "HTTPCode4XX",
        "HTTPCode5XX",
        "UnknownHost",
        "Other",
    }
    stats.received = 8
    stats.add(sent=2)
    second = stats.telemetry_delta()
    assert second["segments_received"] == 3
    assert second["segments_sent"] == 2
    assert second["backend_errors"]["Timeout"] == 0
