"""An OpenTelemetry service and a k8sxray service calling each other through ``requests`` form
one trace.

Service A (OpenTelemetry: WSGI middleware, requests instrumentation, ``AwsXRayIdGenerator``)
calls service B (k8sxray, its own process) which calls service C (OpenTelemetry again). A and C
run in the test's process and export their spans to memory; B sends its segments to a real UDP
socket. Only W3C ``traceparent`` crosses between them (OpenTelemetry's default propagators).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
import requests

pytest.importorskip("opentelemetry.sdk.extension.aws")

from opentelemetry.instrumentation.requests import RequestsInstrumentor  # after the skip
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

SERVICE_B = textwrap.dedent(
    """
    import os, sys
    import requests
    from werkzeug.serving import make_server
    import k8sxray

    k8sxray.configure(service_name="b", daemon_address=os.environ["TEST_DAEMON"], sampling_rate=0.0,
                      plugins=(), disabled_integrations=["botocore", "httpx", "xray_sdk"])

    def middle(environ, start_response):
        answer = requests.get(os.environ["SERVICE_C"] + "/end", timeout=10).text
        body = ("b, then " + answer).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    server = make_server("127.0.0.1", 0, k8sxray.instrument(middle))
    print(server.server_port, flush=True)
    server.serve_forever()
    """
)


@pytest.fixture
def otel() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=AwsXRayIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    RequestsInstrumentor().instrument(tracer_provider=provider)
    yield provider, exporter
    RequestsInstrumentor().uninstrument()
    provider.shutdown()


def xray_trace_id(trace_id: int) -> str:
    digits = f"{trace_id:032x}"
    return f"1-{digits[:8]}-{digits[8:]}"


def test_opentelemetry_and_k8sxray_services_form_one_trace(
    daemon: Any, serve_wsgi: Any, http: Any, tmp_path: Any, otel: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = otel
    service_b: dict[str, str] = {}

    def service_a(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        answer = requests.get(service_b["url"] + "/middle", timeout=10).text  # OpenTelemetry's requests
        body = ("a, then " + answer).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    def service_c(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "1")])
        return [b"c"]

    (tmp_path / "service_b.py").write_text(SERVICE_B)
    with (
        serve_wsgi(OpenTelemetryMiddleware(service_a, tracer_provider=provider)) as url_a,
        serve_wsgi(OpenTelemetryMiddleware(service_c, tracer_provider=provider)) as url_c,
    ):
        env = {
            **os.environ,
            "TEST_DAEMON": daemon.address,
            "SERVICE_C": url_c,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd(), os.environ.get("PYTHONPATH", "")]),
        }
        b = subprocess.Popen(
            [sys.executable, str(tmp_path / "service_b.py")], env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            assert b.stdout is not None
            service_b["url"] = f"http://127.0.0.1:{b.stdout.readline().strip()}"
            answer = http(url_a, "/start")  # http.client: not instrumented, A's span is the root
            (segment,) = daemon.segments(1, timeout=10)
        finally:
            b.terminate()
            b.wait(10)
            b.stdout.close()  # type: ignore[union-attr]
    assert answer.body == b"a, then b, then c"
    spans: list[ReadableSpan] = list(exporter.get_finished_spans())
    assert len(spans) == 3, [span.name for span in spans]
    servers = sorted((s for s in spans if s.kind is SpanKind.SERVER), key=lambda s: s.start_time or 0)
    (client,) = [s for s in spans if s.kind is SpanKind.CLIENT]
    a_server, c_server = servers
    trace_id = a_server.context.trace_id  # type: ignore[union-attr]
    assert a_server.parent is None  # the root
    assert client.parent is not None
    assert client.parent.span_id == a_server.context.span_id  # type: ignore[union-attr]

    # B (k8sxray) continues A's trace, under A's client span
    assert segment["name"] == "b"
    assert segment["trace_id"] == xray_trace_id(trace_id)
    assert segment["parent_id"] == f"{client.context.span_id:016x}"  # type: ignore[union-attr]
    (call,) = segment["subsegments"]
    assert call["http"]["request"]["url"] == url_c + "/end"

    # C (OpenTelemetry) continues it under B's subsegment for the call
    assert c_server.context.trace_id == trace_id  # type: ignore[union-attr]
    assert c_server.parent is not None
    assert c_server.parent.is_remote
    assert f"{c_server.parent.span_id:016x}" == call["id"]
    assert c_server.context.trace_flags.sampled  # type: ignore[union-attr]
