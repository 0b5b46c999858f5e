"""The daemon's counters, rendered as Prometheus text and as telemetry deltas.

Counters that the receiving thread bumps per datagram are plain attributes (one writer each);
everything touched by several sender threads goes through :meth:`Stats.add` under a lock, once
per batch, so the hot path stays free of locks.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from typing import Any

BACKEND_ERROR_KINDS = ("Timeout", "ConnectionRefused", "HTTPCode4XX", "HTTPCode5XX", "UnknownHost", "Other")
"""The official daemon's names for failed calls to X-Ray, used by telemetry and /metrics."""

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Stats:
    """Everything the daemon counts. Thread-safe for the uses described in the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # written by the receiving thread only
        self.received = 0
        self.rejected: Counter[str] = Counter()
        # written under the lock
        self.sent = 0
        self.retried = 0
        self.dropped: Counter[str] = Counter()
        self.backend_errors: Counter[str] = Counter()
        self.backend_rejected: Counter[str] = Counter()
        self._latency_counts = [0] * (len(_LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._latency_n = 0
        self.otlp_spans = 0
        self.otlp_documents = 0
        self.otlp_rejected_spans: Counter[str] = Counter()
        self.otlp_refused: Counter[str] = Counter()
        self.buffer_bytes: Callable[[], int] = lambda: 0
        self.buffer_docs: Callable[[], int] = lambda: 0
        self._last: dict[str, Any] = {}

    def add(
        self,
        *,
        sent: int = 0,
        retried: int = 0,
        dropped: tuple[str, int] | None = None,
        backend_error: str | None = None,
        backend_rejected: dict[str, int] | None = None,
        latency: float | None = None,
    ) -> None:
        """Record the outcome of one batch (or one drop) atomically."""
        with self._lock:
            self.sent += sent
            self.retried += retried
            if dropped is not None and dropped[1]:
                self.dropped[dropped[0]] += dropped[1]
            if backend_error is not None:
                self.backend_errors[backend_error] += 1
            if backend_rejected:
                self.backend_rejected.update(backend_rejected)
            if latency is not None:
                self._observe(latency)

    def add_otlp(
        self,
        *,
        spans: int = 0,
        documents: int = 0,
        rejected_spans: dict[str, int] | None = None,
        refused: tuple[str, int] | None = None,
    ) -> None:
        """Record one OTLP request: spans converted, documents buffered, spans and requests refused."""
        with self._lock:
            self.otlp_spans += spans
            self.otlp_documents += documents
            if rejected_spans:
                self.otlp_rejected_spans.update(rejected_spans)
            if refused is not None:
                self.otlp_refused[refused[0]] += refused[1]

    def _observe(self, seconds: float) -> None:
        self._latency_counts[bisect_left(_LATENCY_BUCKETS, seconds)] += 1  # first bound >= seconds
        self._latency_sum += seconds
        self._latency_n += 1

    def telemetry_delta(self) -> dict[str, Any]:
        """Counts since the previous call, in the shape of the official daemon's telemetry record."""
        with self._lock:
            now = {
                "segments_received": self.received + self.otlp_documents,
                "segments_sent": self.sent,
                "segments_spillover": sum(self.dropped.values()),
                "segments_rejected": sum(self.rejected.values()) + sum(self.backend_rejected.values()),
                "backend_errors": {kind: self.backend_errors[kind] for kind in BACKEND_ERROR_KINDS},
            }
            last, self._last = self._last, now
        if not last:
            return now
        delta: dict[str, Any] = {}
        for key, value in now.items():
            if isinstance(value, dict):
                delta[key] = {k: v - last[key][k] for k, v in value.items()}
            else:
                delta[key] = value - last[key]
        return delta

    def render_prometheus(self) -> str:
        """The counters in the Prometheus text exposition format (version 0.0.4)."""
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP k8sxray_daemon_{name} {help_text}")
            out.append(f"# TYPE k8sxray_daemon_{name} {kind}")
            out.extend(f"k8sxray_daemon_{name}{labels} {_number(value)}" for labels, value in samples)

        with self._lock:
            metric(
                "segments_received_total",
                "counter",
                "Datagrams with a valid segment document.",
                [("", self.received)],
            )
            metric("segments_sent_total", "counter", "Documents accepted by the sink.", [("", self.sent)])
            metric(
                "segments_rejected_total",
                "counter",
                "Datagrams refused on receipt, by reason.",
                _labelled("reason", self.rejected, ("bad_header", "empty", "not_json", "too_large")),
            )
            metric(
                "segments_dropped_total",
                "counter",
                "Documents dropped before shipping, by reason.",
                _labelled("reason", self.dropped, ("buffer_full", "shutdown", "sink_closed")),
            )
            metric(
                "segments_retried_total",
                "counter",
                "Documents sent again after a failure.",
                [("", self.retried)],
            )
            metric(
                "backend_errors_total",
                "counter",
                "Failed calls to the sink, by kind.",
                _labelled("code", self.backend_errors, BACKEND_ERROR_KINDS),
            )
            metric(
                "backend_rejected_total",
                "counter",
                "Documents the sink refused, by error code.",
                _labelled("code", self.backend_rejected, ()),
            )
            metric(
                "buffer_bytes",
                "gauge",
                "Bytes of documents held (buffered or in flight).",
                [("", self.buffer_bytes())],
            )
            metric(
                "buffer_documents",
                "gauge",
                "Documents not yet shipped (buffered, in flight or waiting for a retry).",
                [("", self.buffer_docs())],
            )
            metric(
                "otlp_spans_received_total",
                "counter",
                "Spans received over OTLP and converted to segment documents.",
                [("", self.otlp_spans)],
            )
            metric(
                "otlp_documents_total",
                "counter",
                "Segment documents made from OTLP spans and buffered.",
                [("", self.otlp_documents)],
            )
            metric(
                "otlp_spans_rejected_total",
                "counter",
                "OTLP spans refused in accepted requests, by reason.",
                _labelled("reason", self.otlp_rejected_spans, ()),
            )
            metric(
                "otlp_requests_rejected_total",
                "counter",
                "OTLP requests refused, by reason.",
                _labelled("reason", self.otlp_refused, ("bad_payload", "bad_gzip", "too_large")),
            )
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip((*_LATENCY_BUCKETS, float("inf")), self._latency_counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else _number(bound)
                buckets.append((f'_bucket{{le="{le}"}}', cumulative))
            buckets += [("_sum", self._latency_sum), ("_count", self._latency_n)]
            out.append("# HELP k8sxray_daemon_batch_seconds Time to send one batch to the sink.")
            out.append("# TYPE k8sxray_daemon_batch_seconds histogram")
            out.extend(f"k8sxray_daemon_batch_seconds{suffix} {_number(v)}" for suffix, v in buckets)
        return "\n".join(out) + "\n"


def _labelled(label: str, counts: Counter[str], always: tuple[str, ...]) -> list[tuple[str, float]]:
    keys = sorted(set(always) | set(counts))
    return [(f'{{{label}="{_escape(key)}"}}', counts[key]) for key in keys]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))
