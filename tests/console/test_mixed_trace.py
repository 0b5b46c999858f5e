"""A fleet half on OpenTelemetry, half on k8sxray, in one local console.

Service A (OpenTelemetry: WSGI middleware, requests instrumentation, ``AwsXRayIdGenerator``, the SDK's
own OTLP/HTTP exporter) calls service B (k8sxray, its own process, segments over UDP), which calls
service C (OpenTelemetry again). One daemon takes both: OTLP on ``--otlp``, segments on UDP, and keeps
them with ``--sink local``. Only W3C ``traceparent`` crosses between the services. The console then
holds one trace whose parents run A → A's call → B → B's call → C.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("opentelemetry.sdk.extension.aws")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # after the skips
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from werkzeug.serving import make_server

from ._daemon import LocalDaemon, free_port

SERVICE_B = textwrap.dedent(
    """
    import os
    import requests
    from werkzeug.serving import make_server
    import k8sxray

    k8sxray.configure(service_name="service-b", daemon_address=os.environ["TEST_DAEMON"],
                      sampling_rate=0.0, plugins=(), disabled_integrations=["botocore", "httpx", "xray_sdk"])

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


class Served:
    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[LocalDaemon, int]]:
    otlp = free_port(socket.SOCK_STREAM)
    daemon = LocalDaemon(tmp_path, "--sink", "local", "--otlp", f"127.0.0.1:{otlp}")
    yield daemon, otlp
    daemon.stop()


def provider_for(name: str, otlp: int) -> TracerProvider:
    provider = TracerProvider(
        id_generator=AwsXRayIdGenerator(), resource=Resource.create({"service.name": name})
    )
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{otlp}/v1/traces")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def wait_for_services(daemon: LocalDaemon, names: set[str], timeout: float = 15.0) -> dict[str, Any]:
    """The segments, by name, of the console's one trace, once it holds all of ``names``."""
    client = daemon.client()
    found: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.time()
        summaries = client.get_trace_summaries(StartTime=now - 600, EndTime=now + 60)["TraceSummaries"]
        if len(summaries) == 1:
            (trace,) = client.batch_get_traces(TraceIds=[summaries[0]["Id"]])["Traces"]
            documents = [json.loads(s["Document"]) for s in trace["Segments"]]
            found = {d["name"]: d for d in documents}
            if names <= found.keys():
                break
        time.sleep(0.2)
    return found


def test_opentelemetry_and_k8sxray_services_are_one_trace_in_the_console(
    console: tuple[LocalDaemon, int], tmp_path: Path
) -> None:
    daemon, otlp = console
    provider_a, provider_c = provider_for("service-a", otlp), provider_for("service-c", otlp)
    RequestsInstrumentor().instrument(tracer_provider=provider_a)
    service_b: dict[str, str] = {}

    def service_a(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        answer = requests.get(service_b["url"] + "/middle", timeout=10).text
        body = ("a, then " + answer).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    def service_c(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "1")])
        return [b"c"]

    a = Served(OpenTelemetryMiddleware(service_a, tracer_provider=provider_a))
    c = Served(OpenTelemetryMiddleware(service_c, tracer_provider=provider_c))
    (tmp_path / "service_b.py").write_text(SERVICE_B)
    env = {
        **os.environ,
        "TEST_DAEMON": f"127.0.0.1:{daemon.udp}",
        "SERVICE_C": c.url,
        "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
    }
    b = subprocess.Popen(
        [sys.executable, str(tmp_path / "service_b.py")], env=env, stdout=subprocess.PIPE, text=True
    )
    found: dict[str, Any] = {}
    try:
        assert b.stdout is not None
        service_b["url"] = f"http://127.0.0.1:{b.stdout.readline().strip()}"
        # a plain client (not instrumented): A's server span is the root
        with socket.create_connection(("127.0.0.1", a.server.server_port), timeout=10) as conn:
            conn.sendall(b"GET /start HTTP/1.0\r\nHost: a\r\n\r\n")
            answer = b"".join(iter(lambda: conn.recv(65536), b""))
        assert answer.endswith(b"a, then b, then c")
        found = wait_for_services(daemon, {"service-a", "service-b", "service-c"})
    finally:
        RequestsInstrumentor().uninstrument()
        b.terminate()
        b.wait(10)
        b.stdout.close()  # type: ignore[union-attr]
        a.close()
        c.close()
        provider_a.shutdown()
        provider_c.shutdown()
    assert {"service-a", "service-b", "service-c"} <= found.keys(), (found, daemon.log)
    seg_a, seg_b, seg_c = found["service-a"], found["service-b"], found["service-c"]
    assert seg_a["trace_id"] == seg_b["trace_id"] == seg_c["trace_id"]
    assert "parent_id" not in seg_a  # the root
    a_calls = {s["id"] for s in seg_a.get("subsegments", [])}
    assert seg_b["parent_id"] in a_calls  # B under A's call (an OpenTelemetry client span)
    (b_call,) = seg_b["subsegments"]
    assert seg_c["parent_id"] == b_call["id"]  # C under B's call (a k8sxray subsegment)
    # the daemon's last line counts what came over OTLP beside the UDP segments
    assert daemon.stop() == 0
    assert "received 1 (and 3 from OTLP), sent 4, rejected 0" in daemon.log, daemon.log
