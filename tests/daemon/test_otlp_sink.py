"""``--sink otlp``: the daemon ships segments as spans to a loopback OTLP endpoint that decodes them
with opentelemetry-proto; signing, limits, retries and refusals as the xray sink has them."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("opentelemetry.proto")

from daemon_helpers import AWS_ENV, DaemonProcess, free_tcp_port
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from k8sxray.daemon.settings import parse
from k8sxray.daemon.sinks import otlp as otlp_sink
from k8sxray.daemon.sinks.otlp import OtlpSink, default_endpoint
from k8sxray.otlp import encoded

Answer = Callable[[list[trace_pb2.Span]], int]
"""Given the spans of one request: the HTTP status to answer with."""


def value(v: common_pb2.AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


class FakeOtlp:
    """An OTLP/HTTP traces endpoint on loopback: decodes each request, answers as scripted."""

    def __init__(self) -> None:
        self.answer: Answer = lambda spans: 200
        self.spans: dict[str, tuple[trace_pb2.Span, dict[str, Any]]] = {}  # by span id: span, resource
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                raw = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
                request = ExportTraceServiceRequest.FromString(raw)
                received = [
                    (span, {kv.key: value(kv.value) for kv in rs.resource.attributes})
                    for rs in request.resource_spans
                    for ss in rs.scope_spans
                    for span in ss.spans
                ]
                with fake.lock:
                    fake.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "size": len(raw),
                            "spans": len(received),
                            "resources": len(request.resource_spans),
                        }
                    )
                    status = fake.answer([span for span, _ in received])
                    if status == 200:
                        for span, resource in received:
                            fake.spans[span.span_id.hex()] = (span, resource)
                data = ExportTraceServiceResponse().SerializeToString() if status == 200 else b"try later"
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.spans) < count:
            assert time.monotonic() < deadline, f"only {len(self.spans)} of {count} spans arrived"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeOtlp]:
    endpoint = FakeOtlp()
    yield endpoint
    endpoint.close()


TRACE = "1-5759e988-bd862e3fe1be46a994272793"
SEGMENT = {
    "name": "orders",
    "id": "70000000000000a1",
    "trace_id": TRACE,
    "start_time": 1700000000.123456,
    "end_time": 1700000000.323456,
    "origin": "AWS::EKS::Container",
    "aws": {"eks": {"pod": "orders-5c9f-abcde", "cluster_name": "prod", "container_id": "c" * 64}},
    "http": {"request": {"method": "GET", "url": "http://orders/o/1"}, "response": {"status": 404}},
    "error": True,
    "annotations": {"tenant": "acme"},
    "metadata": {"k8s": {"namespace": "shop", "node": "node-1"}, "debug": {"cache": "miss"}},
    "subsegments": [
        {
            "name": "DynamoDB",
            "id": "70000000000000a2",
            "start_time": 1700000000.15,
            "end_time": 1700000000.2,
            "namespace": "aws",
            "aws": {"operation": "GetItem", "table_name": "orders", "region": "eu-west-1"},
        }
    ],
}
ALONE = {
    "type": "subsegment",
    "trace_id": TRACE,
    "parent_id": "70000000000000a1",
    "id": "70000000000000a3",
    "name": "payments",
    "namespace": "remote",
    "start_time": 1700000000.25,
    "end_time": 1700000000.3,
    "fault": True,
    "cause": {"exceptions": [{"id": "bbbbbbbbbbbbbbbb", "type": "ConnectionError", "message": "refused"}]},
}


def send(daemon: DaemonProcess, *docs: dict[str, Any]) -> None:
    daemon.send_docs([json.dumps(d).encode() for d in docs])


@pytest.mark.parametrize("native", ["true", "false"])
def test_segments_arrive_as_spans_signed_for_x_ray(
    start_daemon: Callable[..., DaemonProcess], fake: FakeOtlp, native: str
) -> None:
    """The same spans whether documents are encoded in C (when built) or in Python."""
    daemon = start_daemon(
        [
            "--sink",
            "otlp",
            "--otlp-endpoint",
            fake.url,
            "--otlp-sigv4",
            "-n",
            "eu-west-1",
            "--flush-interval",
            "0.05",
        ],
        {**AWS_ENV, "K8SXRAY_NATIVE": native},
    )
    assert "SigV4-signed for xray in eu-west-1" in daemon.log
    send(daemon, SEGMENT, ALONE)
    fake.wait_for(3)
    for request in fake.requests:
        headers = request["headers"]
        assert request["path"] == "/v1/traces"
        assert headers["Content-Type"] == "application/x-protobuf"
        assert headers["Content-Encoding"] == "gzip"
        credential = re.search(r"Credential=([^,]+)", headers["Authorization"])
        assert credential is not None
        assert credential.group(1).startswith("AKIDTESTING/")
        assert credential.group(1).endswith("/eu-west-1/xray/aws4_request")
    segment, resource = fake.spans["70000000000000a1"]
    dynamo, dynamo_resource = fake.spans["70000000000000a2"]
    alone, alone_resource = fake.spans["70000000000000a3"]
    assert {s.trace_id.hex() for s in (segment, dynamo, alone)} == {"5759e988bd862e3fe1be46a994272793"}
    assert segment.parent_span_id == b""
    assert dynamo.parent_span_id.hex() == alone.parent_span_id.hex() == "70000000000000a1"
    assert (segment.name, dynamo.name, alone.name) == ("orders", "DynamoDB", "payments")
    assert segment.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert dynamo.kind == alone.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    assert segment.start_time_unix_nano == 1_700_000_000_123_456_001
    assert resource == {
        "service.name": "orders",
        "cloud.provider": "aws",
        "cloud.platform": "aws_eks",
        "k8s.pod.name": "orders-5c9f-abcde",
        "k8s.cluster.name": "prod",
        "container.id": "c" * 64,
        "k8s.namespace.name": "shop",
        "k8s.node.name": "node-1",
    }
    assert dynamo_resource == resource
    assert alone_resource == resource
    attributes = {kv.key: value(kv.value) for kv in segment.attributes}
    assert attributes == {
        "http.request.method": "GET",
        "url.full": "http://orders/o/1",
        "http.response.status_code": 404,
        "tenant": "acme",
        "aws.xray.annotations": ["tenant"],
        "aws.xray.metadata.debug": '{"cache":"miss"}',
    }
    assert segment.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert {kv.key: value(kv.value) for kv in dynamo.attributes} == {
        "rpc.system": "aws-api",
        "rpc.service": "DynamoDB",
        "rpc.method": "GetItem",
        "aws.region": "eu-west-1",
        "aws.dynamodb.table_names": ["orders"],
    }
    assert dynamo.status.code == trace_pb2.Status.STATUS_CODE_UNSET
    assert alone.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert alone.status.message == "refused"
    [event] = alone.events
    assert event.name == "exception"
    assert {kv.key: value(kv.value) for kv in event.attributes} == {
        "exception.type": "ConnectionError",
        "exception.message": "refused",
    }
    assert daemon.stop() == 0
    assert daemon.summary() == {"received": 2, "sent": 2, "rejected": 0, "dropped": 0, "refused": 0}
    # the segment in C when it is built and wanted; the subsegment sent on its own always in Python
    # (its resource, remembered encoded by the C path, decoded for it)
    fast = native == "true" and encoded.BUILT
    assert f"documents encoded as spans: {int(fast)} in C, {2 - int(fast)} in Python" in daemon.log


def test_another_endpoint_is_unsigned_and_sampling_is_answered_here(
    start_daemon: Callable[..., DaemonProcess], fake: FakeOtlp
) -> None:
    tcp = free_tcp_port()
    daemon = start_daemon(["--sink", "otlp", "--otlp-endpoint", fake.url, "-t", f"127.0.0.1:{tcp}"])
    assert "unsigned; sampling answered here" in daemon.log
    send(daemon, SEGMENT)
    fake.wait_for(2)
    assert all("Authorization" not in r["headers"] for r in fake.requests)
    call = urllib.request.Request(f"http://127.0.0.1:{tcp}/GetSamplingRules", b"{}", method="POST")
    with urllib.request.urlopen(call, timeout=5) as answer:
        rules = json.loads(answer.read())["SamplingRuleRecords"]
    assert rules[0]["SamplingRule"]["RuleName"] == "Default"


def test_429_and_503_for_a_few_seconds_lose_nothing(
    start_daemon: Callable[..., DaemonProcess], fake: FakeOtlp
) -> None:
    started = time.monotonic()

    def flaky(spans: list[trace_pb2.Span]) -> int:
        elapsed = time.monotonic() - started
        return 503 if elapsed < 2.0 else 429 if elapsed < 3.5 else 200

    fake.answer = flaky
    daemon = start_daemon(["--sink", "otlp", "--otlp-endpoint", fake.url, "--flush-interval", "0.02"])
    docs = [dict(SEGMENT, id=f"{i:016x}", subsegments=[]) for i in range(1, 301)]
    for n in range(0, 300, 50):
        send(daemon, *docs[n : n + 50])
        time.sleep(0.4)
    fake.wait_for(300, timeout=30)
    assert set(fake.spans) == {d["id"] for d in docs}
    assert daemon.stop() == 0
    summary = daemon.summary()
    assert summary == {"received": 300, "sent": 300, "rejected": 0, "dropped": 0, "refused": 0}
    assert "HTTP 503" in daemon.log or "HTTP 429" in daemon.log


def test_a_refused_document_is_isolated_and_counted(
    start_daemon: Callable[..., DaemonProcess], fake: FakeOtlp
) -> None:
    fake.answer = lambda spans: 400 if any(s.name == "poison" for s in spans) else 200
    daemon = start_daemon(["--sink", "otlp", "--otlp-endpoint", fake.url, "--flush-interval", "0.5"])
    docs = [dict(SEGMENT, id=f"{i:016x}", subsegments=[]) for i in range(1, 21)]
    docs[7]["name"] = "poison"
    send(daemon, *docs, {"not": "a segment"})
    fake.wait_for(19)
    time.sleep(0.3)
    assert set(fake.spans) == {d["id"] for d in docs if d["name"] != "poison"}
    assert daemon.stop() == 0
    assert daemon.summary() == {"received": 21, "sent": 19, "rejected": 0, "dropped": 0, "refused": 2}


def test_a_batch_is_split_within_the_endpoints_limits(
    fake: FakeOtlp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otlp_sink, "MAX_REQUEST_SPANS", 120)
    sink = OtlpSink(fake.url)
    subsegments = [
        {"name": "step", "id": f"7{i:015x}", "start_time": 1700000000.2, "end_time": 1700000000.3}
        for i in range(1, 50)
    ]
    batch = [
        json.dumps(
            dict(
                SEGMENT,
                id=f"{n:016x}",
                subsegments=[dict(s, id=f"{n:02x}{s['id'][2:]}") for s in subsegments],
            )
        ).encode()
        for n in range(1, 11)
    ]
    result = sink.send(batch)
    sink.close()
    assert result.retry == ()
    assert result.rejected == {}
    assert len(fake.spans) == 500
    assert [r["spans"] for r in fake.requests] == [100] * 5  # two documents (100 spans) a request
    assert all(r["resources"] == 1 for r in fake.requests)  # one service: one resource per request


def test_in_progress_documents_send_nothing_and_are_not_retried(fake: FakeOtlp) -> None:
    sink = OtlpSink(fake.url)
    in_progress = {k: v for k, v in SEGMENT.items() if k not in ("end_time", "subsegments")}
    result = sink.send([json.dumps(dict(in_progress, in_progress=True)).encode(), b"[1]", b"{oops"])
    sink.close()
    assert result.retry == ()
    assert result.rejected == {"InvalidDocument: not_object": 1, "InvalidDocument: not_json": 1}
    assert fake.requests == []


def test_flags_and_the_default_endpoint() -> None:
    settings = parse(
        [
            "--sink",
            "otlp",
            "--otlp",
            "0.0.0.0:4318",
            "--otlp-endpoint",
            "http://collector:4318/v1/traces",
            "--otlp-sigv4",
        ],
        {},
    )
    assert settings.sink == "otlp"
    assert settings.otlp == ("0.0.0.0", 4318)
    assert settings.otlp_endpoint == "http://collector:4318/v1/traces"
    assert settings.otlp_sigv4 is True
    assert parse([], {}).otlp is None
    assert default_endpoint("eu-west-1") == "https://xray.eu-west-1.amazonaws.com/v1/traces"
    assert default_endpoint("cn-north-1") == "https://xray.cn-north-1.amazonaws.com.cn/v1/traces"


def test_x_rays_endpoint_needs_a_region() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    argv = [sys.executable, "-m", "k8sxray.daemon", "-b", "127.0.0.1:0", "-t", "off", "--http", "off"]
    done = subprocess.run(
        [*argv, "--sink", "otlp", "-o"],
        capture_output=True,
        text=True,
        env={**env, **AWS_ENV},
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "no AWS region to sign OTLP requests" in done.stderr


def test_a_request_carries_up_to_500_documents(
    start_daemon: Callable[..., DaemonProcess], fake: FakeOtlp
) -> None:
    daemon = start_daemon(["--sink", "otlp", "--otlp-endpoint", fake.url, "--flush-interval", "1"])
    send(daemon, *[dict(SEGMENT, id=f"{i:016x}", subsegments=[]) for i in range(1, 401)])
    fake.wait_for(400)
    assert [r["spans"] for r in fake.requests] == [400]  # the xray sink would have made 8 calls
