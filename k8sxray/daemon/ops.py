"""The daemon's operations endpoint (``/healthz``, ``/metrics``) and a Prometheus text renderer.

``OpsServer`` answers ``GET``/``HEAD /healthz`` (200 ``ok`` once ``ready()`` is true, else 503) and
``GET``/``HEAD /metrics`` (the Prometheus text exposition format 0.0.4, from ``metrics()``); every other
request goes to ``app`` when one is mounted (the local console: X-Ray's API and the viewer), else
it is a 404. ``render()`` turns counters, gauges, histograms and summaries into that text, escaping
help text and label values as the format requires.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ._served import QuietHandler, QuietServer, Served

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text format's content type."""

Kind = Literal["counter", "gauge", "histogram", "summary", "untyped"]


class Answer(Protocol):
    """What a mounted app answers: status, content type, body and extra headers."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]


App = Callable[[str, str, Mapping[str, str], bytes], Answer]
"""``app(method, target, headers, body)``: answers every request the ops endpoint does not."""
_MAX_BODY = 16 * 1024 * 1024

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


@dataclass(frozen=True)
class Sample:
    """One line of a metric: ``<name><suffix>{labels} value``."""

    value: float
    labels: tuple[tuple[str, str], ...] = ()
    suffix: str = ""


@dataclass(frozen=True)
class Metric:
    """A metric family: its ``# HELP`` and ``# TYPE`` lines and its samples."""

    name: str
    help: str
    kind: Kind
    samples: tuple[Sample, ...]

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")
        for sample in self.samples:
            for label, _ in sample.labels:
                if not _LABEL.match(label) or label.startswith("__"):
                    raise ValueError(f"invalid label name {label!r} on {self.name}")


def _labelled(
    name: str, help: str, kind: Kind, value: float | Mapping[Any, float], label: str | Sequence[str] | None
) -> Metric:
    if not isinstance(value, Mapping):
        return Metric(name, help, kind, (Sample(float(value)),))
    if label is None:
        raise ValueError(f"{name}: labelled values need a label name")
    names = (label,) if isinstance(label, str) else tuple(label)
    samples = []
    for key, v in value.items():
        values = (key,) if isinstance(label, str) else tuple(key)
        if len(values) != len(names):
            raise ValueError(f"{name}: label values {key!r} do not match label names {names!r}")
        samples.append(Sample(float(v), tuple(zip(names, (str(x) for x in values), strict=True))))
    return Metric(name, help, kind, tuple(samples))


def counter(
    name: str, help: str, value: float | Mapping[Any, float], label: str | Sequence[str] | None = None
) -> Metric:
    """A counter; ``value`` is a number, or a mapping from label value(s) to numbers with ``label`` naming
    the label (one name, or a sequence of names with tuple keys)."""
    return _labelled(name, help, "counter", value, label)


def gauge(
    name: str, help: str, value: float | Mapping[Any, float], label: str | Sequence[str] | None = None
) -> Metric:
    """A gauge, with the same ``value``/``label`` forms as ``counter``."""
    return _labelled(name, help, "gauge", value, label)


def histogram(name: str, help: str, buckets: Iterable[tuple[float, int]], total: float, count: int) -> Metric:
    """A histogram from ``(upper bound, cumulative count)`` pairs; the ``+Inf`` bucket is added if absent."""
    pairs = sorted((float(le), int(n)) for le, n in buckets)
    if any(b[1] < a[1] for a, b in itertools.pairwise(pairs)):
        raise ValueError(f"{name}: bucket counts must be cumulative (non-decreasing)")
    if not pairs or pairs[-1][0] != math.inf:
        pairs.append((math.inf, int(count)))
    samples = [Sample(float(n), (("le", _number(le)),), "_bucket") for le, n in pairs]
    samples += [Sample(float(total), (), "_sum"), Sample(float(count), (), "_count")]
    return Metric(name, help, "histogram", tuple(samples))


def summary(name: str, help: str, quantiles: Mapping[float, float], total: float, count: int) -> Metric:
    """A summary from ``{quantile: value}`` (quantiles between 0 and 1), a sum and a count."""
    samples = [Sample(float(v), (("quantile", _number(q)),)) for q, v in sorted(quantiles.items())]
    samples += [Sample(float(total), (), "_sum"), Sample(float(count), (), "_count")]
    return Metric(name, help, "summary", tuple(samples))


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(metrics: Iterable[Metric]) -> str:
    """The Prometheus text exposition (format 0.0.4) of ``metrics``, ending with a newline."""
    lines: list[str] = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for sample in metric.samples:
            labels = ""
            if sample.labels:
                labels = "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels) + "}"
            lines.append(f"{metric.name}{sample.suffix}{labels} {_number(sample.value)}")
    return "\n".join(lines) + "\n" if lines else ""


class OpsServer(Served):
    """Serves ``/healthz`` and ``/metrics`` on ``bind`` in a background thread."""

    def __init__(
        self,
        bind: tuple[str, int],
        ready: Callable[[], bool],
        metrics: Callable[[], str],
        app: App | None = None,
    ) -> None:
        super().__init__()
        self._bind = bind
        self.ready = ready
        self.metrics = metrics
        self.app = app
        self._warned = False

    def start(self) -> None:
        """Binds and serves in a daemon thread; raises OSError if the address is taken."""
        if self._server is not None:
            return
        self._serve(_Server(self._bind, self), "k8sxray-ops")
        log.info("health and metrics on http://%s:%d/healthz and /metrics", *self.address)

    def close(self) -> None:
        """Stops serving and closes the socket."""
        self._stop()

    def answer(self, path: str) -> tuple[int, str, str]:
        """Status, content type and body for a GET of ``path``; never raises."""
        path = path.split("?", 1)[0]
        if path == "/healthz":
            try:
                ok = bool(self.ready())
            except Exception as exc:
                self._warn_once("ops: the readiness check raised; answering 503", exc)
                ok = False
            return (
                (200, "text/plain; charset=utf-8", "ok\n")
                if ok
                else (503, "text/plain; charset=utf-8", "not ready\n")
            )
        if path == "/metrics":
            try:
                return 200, CONTENT_TYPE, self.metrics()
            except Exception as exc:
                self._warn_once("ops: rendering metrics failed; answering 500", exc)
                return 500, "text/plain; charset=utf-8", "metrics unavailable\n"
        return 404, "text/plain; charset=utf-8", "not found: try /healthz or /metrics\n"

    def _warn_once(self, message: str, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            log.warning(message, exc_info=exc)
        else:
            log.debug(message, exc_info=exc)


class _Server(QuietServer):
    label = "ops"

    def __init__(self, bind: tuple[str, int], ops: OpsServer) -> None:
        self.ops = ops
        super().__init__(bind, _Handler)


class _Handler(QuietHandler):
    server: _Server
    timeout = 15.0

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "HTTP/0.9 is not supported")
            return False
        return True

    def _reply(
        self,
        status: int,
        content_type: str,
        body: str | bytes,
        close: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        data = body.encode("utf-8", "replace") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:
        ops = self.server.ops
        if ops.app is not None and self.path.split("?", 1)[0] not in ("/healthz", "/metrics"):
            self._to_app(b"")
            return
        self._reply(*ops.answer(self.path))

    do_HEAD = do_GET

    def do_POST(self) -> None:
        if self.server.ops.app is None:
            self._not_allowed()
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self._reply(413 if length > 0 else 400, "text/plain; charset=utf-8", "bad Content-Length\n", True)
            return
        self._to_app(self.rfile.read(length))

    def _to_app(self, body: bytes) -> None:
        app = self.server.ops.app
        assert app is not None
        answer = app(self.command, self.path, dict(self.headers.items()), body)
        self._reply(answer.status, answer.content_type, answer.body, headers=answer.headers)

    def _not_allowed(self) -> None:
        self._reply(405, "text/plain; charset=utf-8", "only GET and HEAD\n", close=True)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        self.log_error("code %d, message %s", code, message)
        self._reply(code, "text/plain; charset=utf-8", f"{message or 'bad request'}\n", close=True)


__all__ = [
    "CONTENT_TYPE",
    "Metric",
    "OpsServer",
    "Sample",
    "counter",
    "gauge",
    "histogram",
    "render",
    "summary",
]
