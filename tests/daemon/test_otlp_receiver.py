"""``--otlp``: the OpenTelemetry SDK's own OTLP/HTTP exporter sends to the real daemon, whose local
console then serves the spans as X-Ray segments; bad requests get clear refusals, counted."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

import boto3
from botocore.config import Config
from daemon_helpers import DaemonProcess, free_tcp_port
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from k8sxray.daemon.buffer import Buffer
from k8sxray.daemon.otlp_receiver import OtlpReceiver
from k8sxray.daemon.stats import Stats

PROTOBUF = "application/x-protobuf"


class EpochIds(IdGenerator):
    """X-Ray-compatible trace ids: the epoch second in the first 8 hex digits."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        return (int(time.time()) << 96) | (self._random.generate_trace_id() & ((1 << 96) - 1))


class Running:
    def __init__(self, daemon: DaemonProcess, otlp: int, http: int) -> None:
        self.daemon = daemon
        self.url = f"http://127.0.0.1:{otlp}/v1/traces"
        self.http = http

    def post(
        self, body: bytes, content_type: str = PROTOBUF, encoding: str | None = None, path: str = "/v1/traces"
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": content_type}
        if encoding:
            headers["Content-Encoding"] = encoding
        request = urllib.request.Request(self.url.replace("/v1/traces", path), body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, dict(exc.headers), exc.read()

    def metric(self, name: str, labels: str = "") -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        match = re.search(rf"^k8sxray_daemon_{name}{re.escape(labels)} (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def traces(self, trace_ids: list[str], timeout: float = 15.0) -> dict[str, list[dict[str, Any]]]:
        """Each trace's documents, once the console has every one of them."""
        client = boto3.client(
            "xray",
            endpoint_url=f"http://127.0.0.1:{self.http}",
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 1}),
        )
        deadline = time.monotonic() + timeout
        while True:
            found = client.batch_get_traces(TraceIds=trace_ids)["Traces"]
            if len(found) == len(trace_ids) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(found) == len(trace_ids), self.daemon.log
        return {t["Id"]: [json.loads(s["Document"]) for s in t["Segments"]] for t in found}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    otlp, http = free_tcp_port(), free_tcp_port()
    store = tmp_path_factory.mktemp("otlp") / "traces.db"
    daemon = DaemonProcess(
        [
            "--sink",
            "local",
            "--store",
            str(store),
            "--http",
            f"127.0.0.1:{http}",
            "--otlp",
            f"127.0.0.1:{otlp}",
        ]
    )
    daemon.wait_log("receiving OTLP traces on http://127.0.0.1:")
    yield Running(daemon, otlp, http)
    assert daemon.stop() == 0
    assert "everything buffered was shipped" in daemon.log


def provider_for(exporter: Any, service: str) -> TracerProvider:
    resource = Resource.create(
        {"service.name": service, "k8s.pod.name": f"{service}-7d9f8-x2x9z", "k8s.namespace.name": "shop"}
    )
    provider = TracerProvider(resource=resource, id_generator=EpochIds())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def record_checkout(provider: TracerProvider) -> str:
    """A request with an outgoing HTTP call (which fails with 503) and an exception; its trace id."""
    tracer = provider.get_tracer("shop")
    with tracer.start_as_current_span(
        "POST /checkout",
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "POST",
            "url.full": "http://checkout.shop.svc/checkout",
            "http.response.status_code": 500,
            "customer": "c-42",
            "aws.xray.annotations": ["customer"],
        },
    ) as server:
        with tracer.start_as_current_span(
            "POST",
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": "POST",
                "url.full": "http://payments.shop.svc/charge",
                "http.response.status_code": 503,
            },
        ) as call:
            call.set_status(Status(StatusCode.ERROR))
        try:
            raise RuntimeError("payment failed")
        except RuntimeError as exc:
            server.record_exception(exc)
            server.set_status(Status(StatusCode.ERROR, "payment failed"))
        return format(server.get_span_context().trace_id, "032x")


def xray(trace_id: str) -> str:
    return f"1-{trace_id[:8]}-{trace_id[8:]}"


def check_checkout(doc: dict[str, Any], service: str) -> None:
    assert doc["name"] == service
    assert doc["origin"] == "AWS::EKS::Container"
    assert doc["aws"]["eks"]["pod"] == f"{service}-7d9f8-x2x9z"
    assert doc["metadata"]["k8s"]["namespace"] == "shop"
    assert doc["http"] == {
        "request": {"method": "POST", "url": "http://checkout.shop.svc/checkout"},
        "response": {"status": 500},
    }
    assert doc["fault"] is True
    assert doc["annotations"] == {"customer": "c-42"}
    [exception] = doc["cause"]["exceptions"]
    assert exception["type"] == "RuntimeError"
    assert exception["message"] == "payment failed"
    assert exception["stack"][0]["label"] == "record_checkout"
    [call] = doc["subsegments"]
    assert call["name"] == "payments.shop.svc"
    assert call["namespace"] == "remote"
    assert call["http"]["response"]["status"] == 503
    assert call["fault"] is True


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_sdks_exporter_sends_spans_that_come_out_as_segments(running: Running, compression: Any) -> None:
    service = f"checkout-{compression.value}"
    provider = provider_for(OTLPSpanExporter(endpoint=running.url, compression=compression), service)
    trace_id = record_checkout(provider)
    provider.shutdown()
    [doc] = running.traces([xray(trace_id)])[xray(trace_id)]
    assert doc["trace_id"] == xray(trace_id)
    check_checkout(doc, service)
    [sub] = doc["subsegments"]
    assert "parent_id" not in sub  # nested in its segment


def test_otlp_json_gives_the_same_segments(running: Running) -> None:
    memory = InMemorySpanExporter()
    provider = provider_for(memory, "checkout-json")
    trace_id = record_checkout(provider)
    finished: list[ReadableSpan] = list(memory.get_finished_spans())
    provider.shutdown()
    data: Any = json_format.MessageToDict(encode_spans(finished))
    for rs in data["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:  # OTLP/JSON: ids in hex, enums as numbers
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
                span["kind"] = {"SPAN_KIND_SERVER": 2, "SPAN_KIND_CLIENT": 3}[span["kind"]]
                span["status"]["code"] = 2
    status, headers, body = running.post(gzip.compress(json.dumps(data).encode()), "application/json", "gzip")
    assert (status, body) == (200, b"{}")
    assert headers["Content-Type"] == "application/json"
    [doc] = running.traces([xray(trace_id)])[xray(trace_id)]
    check_checkout(doc, "checkout-json")


def test_spans_of_one_trace_sent_in_separate_requests_join_in_the_console(running: Running) -> None:
    memory = InMemorySpanExporter()
    provider = provider_for(memory, "split")
    trace_id = record_checkout(provider)
    server, client = sorted(memory.get_finished_spans(), key=lambda s: s.kind != SpanKind.SERVER)
    provider.shutdown()
    for span in (client, server):  # the child first, on its own: a subsegment document
        status, _, body = running.post(encode_spans([span]).SerializeToString())
        assert status == 200
        assert ExportTraceServiceResponse.FromString(body) == ExportTraceServiceResponse()
    [doc] = running.traces([xray(trace_id)])[xray(trace_id)]
    assert [s["id"] for s in doc["subsegments"]] == [format(client.context.span_id, "016x")]


def refused(body: bytes) -> tuple[int, str]:
    status = status_pb2.Status.FromString(body)
    return status.code, status.message


def test_bad_requests_are_refused_with_reasons_and_counted(running: Running) -> None:
    before = {
        r: running.metric("otlp_requests_rejected_total", f'{{reason="{r}"}}')
        for r in ("bad_payload", "bad_gzip", "too_large", "unsupported_media_type")
    }
    status, _, body = running.post(b"\x0a\xff\xff\xff\xff\x0f not protobuf")
    assert status == 400
    assert refused(body)[0] == 3
    assert "protobuf" in refused(body)[1]
    status, _, body = running.post(b'{"resourceSpans": 3}', "application/json")
    assert status == 400
    assert "must be a list" in json.loads(body)["message"]
    status, _, body = running.post(b"\x1f\x8b not gzip", encoding="gzip")
    assert status == 400
    assert "gzip" in refused(body)[1]
    status, _, body = running.post(b"hello", "text/plain")
    assert status == 415
    assert b"application/x-protobuf" in body
    status, _, body = running.post(b"x" * (5 * 1024 * 1024 + 1))
    assert status == 413
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    payload = bomb.compress(b"\0" * (64 * 1024 * 1024)) + bomb.flush()  # 64 MB in about 64 KB
    started = time.monotonic()
    status, _, body = running.post(payload, encoding="gzip")
    assert status == 413
    assert "uncompressed" in refused(body)[1]
    assert time.monotonic() - started < 2.0
    status, _, _ = running.post(b"", path="/v1/metrics")
    assert status == 404
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(running.url, timeout=5)
    assert caught.value.code == 405
    caught.value.close()
    after = {r: running.metric("otlp_requests_rejected_total", f'{{reason="{r}"}}') for r in before}
    assert {r: after[r] - before[r] for r in before} == {
        "bad_payload": 2,
        "bad_gzip": 1,
        "too_large": 2,
        "unsupported_media_type": 1,
    }
    assert running.daemon.proc.poll() is None


def test_spans_with_invalid_ids_are_refused_alone(running: Running) -> None:
    memory = InMemorySpanExporter()
    provider = provider_for(memory, "partial")
    trace_id = record_checkout(provider)
    request = encode_spans(memory.get_finished_spans())
    provider.shutdown()
    spans = request.resource_spans[0].scope_spans[0].spans
    bad = spans.add()
    bad.CopyFrom(spans[0])
    bad.span_id = b"\0" * 8
    before = running.metric("otlp_spans_rejected_total", '{reason="invalid_span_id"}')
    status, _, body = running.post(request.SerializeToString())
    assert status == 200
    partial = ExportTraceServiceResponse.FromString(body).partial_success
    assert partial.rejected_spans == 1
    assert "invalid_span_id" in partial.error_message
    assert running.metric("otlp_spans_rejected_total", '{reason="invalid_span_id"}') == before + 1
    assert len(running.traces([xray(trace_id)])[xray(trace_id)]) == 1


def test_a_full_buffer_answers_503_so_that_the_client_retries() -> None:
    buffer = Buffer(2000)
    stats = Stats()
    receiver = OtlpReceiver(("127.0.0.1", 0), buffer, stats)
    receiver.start()
    try:
        memory = InMemorySpanExporter()
        provider = provider_for(memory, "full")
        for _ in range(10):
            record_checkout(provider)
        body = encode_spans(memory.get_finished_spans()).SerializeToString()
        provider.shutdown()
        url = "http://{}:{}/v1/traces".format(*receiver.address)
        request = urllib.request.Request(url, body, {"Content-Type": PROTOBUF}, method="POST")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 503
        assert caught.value.headers["Retry-After"] == "1"
        with caught.value as answer:
            assert refused(answer.read())[0] == 14  # UNAVAILABLE
        assert buffer.held_documents == 0
        assert stats.otlp_refused["buffer_full"] == 1
    finally:
        receiver.close()


def test_without_the_extra_the_daemon_says_what_to_install(tmp_path: Path) -> None:
    shadow = tmp_path / "opentelemetry"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    argv = [sys.executable, "-m", "k8sxray.daemon", "-b", "127.0.0.1:0", "-t", "off", "--http", "off"]
    done = subprocess.run(
        [*argv, "--sink", "stdout", "--otlp", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "--otlp: OTLP support needs opentelemetry-proto: pip install 'k8sxray[otlp]'" in done.stderr
