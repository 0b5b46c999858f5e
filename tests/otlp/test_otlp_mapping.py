"""Spans <-> segment documents, both ways, with spans made by the OpenTelemetry SDK itself."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.proto")

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from k8sxray.otlp import codec, segments, spans
from k8sxray.otlp.model import KIND_CLIENT, KIND_INTERNAL, KIND_SERVER, STATUS_ERROR, Event, Span
from k8sxray.otlp.semconv import xray_trace_id

RESOURCE = {
    "service.name": "checkout",
    "service.version": "1.4.2",
    "cloud.provider": "aws",
    "cloud.platform": "aws_eks",
    "k8s.cluster.name": "prod",
    "k8s.namespace.name": "shop",
    "k8s.node.name": "ip-10-0-1-5.ec2.internal",
    "k8s.pod.name": "checkout-7d9f8b6c5d-x2x9z",
    "k8s.deployment.name": "checkout",
    "container.id": "a" * 64,
    "telemetry.sdk.name": "opentelemetry",
    "telemetry.sdk.version": "1.45.2",
    "telemetry.sdk.language": "python",
}


class EpochIds(IdGenerator):
    """Trace ids whose first 8 hex digits are the epoch second, as X-Ray wants them."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        return (int(time.time()) << 96) | (self._random.generate_trace_id() & ((1 << 96) - 1))


@pytest.fixture
def tracer() -> Iterator[tuple[Any, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(RESOURCE), id_generator=EpochIds())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def through_otlp(exporter: InMemorySpanExporter) -> list[Span]:
    """The SDK's finished spans, encoded by the SDK's own OTLP encoder, decoded by ours."""
    return codec.decode_protobuf(encode_spans(exporter.get_finished_spans()).SerializeToString())


def docs_of(converted: segments.Converted) -> list[dict[str, Any]]:
    return [json.loads(d) for d in converted.documents]


def test_a_request_with_calls_becomes_one_segment_with_nested_subsegments(tracer: Any) -> None:
    t, exporter = tracer
    with t.start_as_current_span(
        "GET /orders/{id}",
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "GET",
            "url.full": "http://checkout.shop.svc:8080/orders/7",
            "http.response.status_code": 200,
            "user_agent.original": "curl/8.5",
            "client.address": "10.0.3.7",
            "tenant": "acme",
            "order.size": 3,
            "aws.xray.annotations": ["tenant", "order.size"],
        },
    ) as server:
        with t.start_as_current_span(
            "SELECT orders",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system": "postgresql",
                "db.query.text": "SELECT * FROM orders WHERE id = $1",
                "db.namespace": "orders",
                "server.address": "db.shop.svc",
                "server.port": 5432,
            },
        ):
            pass
        with t.start_as_current_span(
            "DynamoDB.GetItem",
            kind=SpanKind.CLIENT,
            attributes={
                "rpc.system": "aws-api",
                "rpc.service": "DynamoDB",
                "rpc.method": "GetItem",
                "aws.region": "eu-west-1",
                "aws.request_id": "REQ123",
                "aws.dynamodb.table_names": ["orders"],
            },
        ):
            pass
        with t.start_as_current_span("render", kind=SpanKind.INTERNAL):
            pass
        trace_id = format(server.get_span_context().trace_id, "032x")
        server_id = format(server.get_span_context().span_id, "016x")

    converted = segments.convert(through_otlp(exporter))
    assert converted.spans == 4
    assert not converted.rejected
    [doc] = docs_of(converted)
    assert doc["trace_id"] == f"1-{trace_id[:8]}-{trace_id[8:]}"
    assert doc["id"] == server_id
    assert "parent_id" not in doc
    assert doc["name"] == "checkout"
    assert doc["origin"] == "AWS::EKS::Container"
    assert doc["service"] == {"version": "1.4.2"}
    assert doc["aws"]["eks"] == {
        "pod": "checkout-7d9f8b6c5d-x2x9z",
        "cluster_name": "prod",
        "container_id": "a" * 64,
    }
    assert doc["aws"]["xray"] == {"sdk": "opentelemetry", "sdk_version": "1.45.2"}
    assert doc["metadata"]["k8s"] == {
        "namespace": "shop",
        "node": "ip-10-0-1-5.ec2.internal",
        "workload": {"kind": "Deployment", "name": "checkout", "source": "otel"},
    }
    assert doc["http"] == {
        "request": {
            "method": "GET",
            "url": "http://checkout.shop.svc:8080/orders/7",
            "user_agent": "curl/8.5",
            "client_ip": "10.0.3.7",
        },
        "response": {"status": 200},
    }
    assert doc["annotations"] == {"tenant": "acme", "order_size": 3}
    assert doc["metadata"]["otel"]["span.name"] == "GET /orders/{id}"
    assert not any(flag in doc for flag in ("fault", "error", "throttle"))
    subs = {s["name"]: s for s in doc["subsegments"]}
    assert set(subs) == {"orders@db.shop.svc", "DynamoDB", "render"}
    assert all("trace_id" not in s and "parent_id" not in s for s in subs.values())
    db = subs["orders@db.shop.svc"]
    assert db["namespace"] == "remote"
    assert db["sql"] == {
        "database_type": "postgresql",
        "sanitized_query": "SELECT * FROM orders WHERE id = $1",
        "url": "db.shop.svc:5432/orders",
    }
    dynamo = subs["DynamoDB"]
    assert dynamo["namespace"] == "aws"
    assert dynamo["aws"] == {
        "operation": "GetItem",
        "region": "eu-west-1",
        "request_id": "REQ123",
        "table_name": "orders",
    }
    assert "namespace" not in subs["render"]
    for sub in subs.values():
        assert doc["start_time"] <= sub["start_time"] <= sub["end_time"] <= doc["end_time"]


def test_exceptions_and_status_become_cause_and_flags(tracer: Any) -> None:
    t, exporter = tracer
    with t.start_as_current_span("POST /pay", kind=SpanKind.SERVER) as server:
        server.set_attribute("http.response.status_code", 500)

        def charge() -> None:
            raise ValueError("card declined")

        try:
            charge()
        except ValueError as exc:
            server.record_exception(exc)
            server.set_status(Status(StatusCode.ERROR, "card declined"))
        with t.start_as_current_span("GET", kind=SpanKind.CLIENT) as call:
            call.set_attribute("http.request.method", "GET")
            call.set_attribute("url.full", "https://rates.example.com/v1")
            call.set_attribute("http.response.status_code", 429)
            call.set_status(Status(StatusCode.ERROR))
        with t.start_as_current_span("GET", kind=SpanKind.CLIENT) as call:
            call.set_attribute("http.status_code", 404)
            call.set_attribute("http.url", "https://users.example.com/u/1")
        with t.start_as_current_span("compute", kind=SpanKind.INTERNAL) as work:
            work.set_status(Status(StatusCode.ERROR, "overflow"))
    [doc] = docs_of(segments.convert(through_otlp(exporter)))
    assert doc["fault"] is True
    assert "error" not in doc
    [exception] = doc["cause"]["exceptions"]
    assert exception["type"] == "ValueError"
    assert exception["message"] == "card declined"
    assert len(exception["id"]) == 16
    assert exception["stack"][0]["label"] == "charge"  # innermost first
    assert exception["stack"][0]["path"].endswith("test_otlp_mapping.py")
    assert isinstance(exception["stack"][0]["line"], int)
    subs = {s["http"]["request"]["url"]: s for s in doc["subsegments"] if "http" in s}
    throttled = subs["https://rates.example.com/v1"]
    assert throttled["name"] == "rates.example.com"
    assert throttled["namespace"] == "remote"
    assert throttled["error"] is True
    assert throttled["throttle"] is True
    assert "fault" not in throttled
    missing = subs["https://users.example.com/u/1"]
    assert missing["error"] is True
    assert "throttle" not in missing
    assert "fault" not in missing
    [internal] = [s for s in doc["subsegments"] if s["name"] == "compute"]
    assert internal["fault"] is True
    assert internal["cause"]["exceptions"][0]["message"] == "overflow"


def test_older_http_conventions_and_a_server_url_from_its_parts() -> None:
    span = Span(
        trace_id="5759e988bd862e3fe1be46a994272793",
        span_id="53995c3f42cd8ad8",
        name="GET",
        start_ns=1_700_000_000_000_000_000,
        end_ns=1_700_000_000_250_000_000,
        kind=KIND_SERVER,
        attributes={
            "http.method": "GET",
            "http.scheme": "https",
            "http.host": "shop.example.com",
            "http.target": "/cart?id=3",
            "http.status_code": "503",
            "http.user_agent": "Mozilla/5.0",
            "http.client_ip": "203.0.113.9",
            "net.peer.ip": "10.0.0.2",
        },
        resource={"service.name": "cart"},
    )
    [doc] = docs_of(segments.convert([span]))
    assert doc["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert doc["http"] == {
        "request": {
            "method": "GET",
            "url": "https://shop.example.com/cart?id=3",
            "user_agent": "Mozilla/5.0",
            "client_ip": "203.0.113.9",
            "x_forwarded_for": True,
        },
        "response": {"status": 503},
    }
    assert doc["fault"] is True
    assert doc["metadata"]["otel"] == {"net.peer.ip": "10.0.0.2", "span.name": "GET"}
    current = Span(
        trace_id="5759e988bd862e3fe1be46a994272793",
        span_id="53995c3f42cd8ad9",
        name="GET /cart",
        start_ns=1,
        end_ns=2,
        kind=KIND_SERVER,
        attributes={"url.scheme": "http", "server.address": "cart", "server.port": 8080, "url.path": "/cart"},
    )
    [doc] = docs_of(segments.convert([current]))
    assert doc["http"]["request"]["url"] == "http://cart:8080/cart"


def test_any_32_hex_trace_id_keeps_its_digits_in_the_x_ray_form() -> None:
    random_w3c = "4efaaf4d1e8720b39541901950019ee5"  # the first 8 digits are no recent time
    assert xray_trace_id(random_w3c) == "1-4efaaf4d-1e8720b39541901950019ee5"
    span = Span(random_w3c, "00f067aa0ba902b7", "job", 1, 2, resource={})
    [doc] = docs_of(segments.convert([span]))
    assert doc["trace_id"] == "1-4efaaf4d-1e8720b39541901950019ee5"
    assert doc["name"] == "unknown_service"


def test_subsegments_whose_parent_is_elsewhere_are_documents_of_their_own() -> None:
    trace = "5759e988bd862e3fe1be46a994272793"
    batch = [
        Span(trace, "1000000000000001", "call", 10, 20, parent_span_id="ffffffffffffffff", kind=KIND_CLIENT),
        Span(
            trace, "1000000000000002", "inner", 11, 12, parent_span_id="1000000000000001", kind=KIND_INTERNAL
        ),
        Span(
            trace, "1000000000000003", "served", 13, 19, parent_span_id="1000000000000001", kind=KIND_SERVER
        ),
    ]
    docs = {d["id"]: d for d in docs_of(segments.convert(batch))}
    assert set(docs) == {"1000000000000001", "1000000000000003"}
    call = docs["1000000000000001"]
    assert call["type"] == "subsegment"
    assert call["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert call["parent_id"] == "ffffffffffffffff"
    assert [s["id"] for s in call["subsegments"]] == ["1000000000000002"]
    served = docs["1000000000000003"]  # a server span is a segment of its own service, with its caller
    assert "type" not in served
    assert served["parent_id"] == "1000000000000001"


def test_invalid_duplicate_and_looping_spans() -> None:
    trace = "5759e988bd862e3fe1be46a994272793"
    batch = [
        Span("xyz", "1000000000000001", "a", 1, 2),
        Span("0" * 32, "1000000000000001", "a", 1, 2),
        Span(trace, "0" * 16, "a", 1, 2),
        Span(trace, "1000000000000001", "a", 1, 2),
        Span(trace, "1000000000000001", "again", 1, 2),
        Span(trace, "2000000000000001", "x", 1, 2, parent_span_id="2000000000000002", kind=KIND_INTERNAL),
        Span(trace, "2000000000000002", "y", 1, 2, parent_span_id="2000000000000001", kind=KIND_INTERNAL),
    ]
    converted = segments.convert(batch)
    assert converted.rejected == {"invalid_trace_id": 2, "invalid_span_id": 1, "duplicate_span_id": 1}
    docs = {d["id"]: d for d in docs_of(converted)}
    assert set(docs) == {"1000000000000001", "2000000000000001", "2000000000000002"}
    assert docs["2000000000000001"]["type"] == "subsegment"
    assert "subsegments" not in docs["2000000000000001"]


def test_a_document_too_large_for_x_ray_is_split_into_its_entities() -> None:
    trace = "5759e988bd862e3fe1be46a994272793"
    root = Span(
        trace, "3000000000000000", "root", 0, 10**9, kind=KIND_SERVER, resource={"service.name": "big"}
    )
    children = [
        Span(
            trace,
            f"30000000000{i:05x}",
            "step",
            1,
            2,
            parent_span_id="3000000000000000",
            attributes={"blob": "x" * 1000},
        )
        for i in range(1, 200)
    ]
    converted = segments.convert([root, *children])
    assert len(converted.documents) == 200
    assert all(len(d) <= segments.MAX_DOCUMENT for d in converted.documents)
    docs = docs_of(converted)
    assert "subsegments" not in docs[0]
    assert docs[0]["name"] == "big"
    assert {d["parent_id"] for d in docs[1:]} == {"3000000000000000"}
    assert all(
        d["type"] == "subsegment" and d["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793" for d in docs[1:]
    )


def test_annotation_keys_are_sanitised_and_metadata_namespaces_come_back() -> None:
    span = Span(
        "5759e988bd862e3fe1be46a994272793",
        "4000000000000001",
        "work",
        1,
        2,
        attributes={
            "user.tier": "gold",
            "nested": {"not": "an annotation value"},
            "aws.xray.annotations": ["user.tier", "nested", "absent"],
            "aws.xray.metadata.orders": '{"items": [1, 2]}',
        },
    )
    [doc] = docs_of(segments.convert([span]))
    assert doc["annotations"] == {"user_tier": "gold"}
    assert doc["metadata"]["orders"] == {"items": [1, 2]}
    assert doc["metadata"]["otel"]["nested"] == {"not": "an annotation value"}


def test_stack_traces_of_other_languages() -> None:
    java = (
        "java.lang.IllegalStateException: no\n"
        "\tat com.shop.Cart.add(Cart.java:42)\n"
        "\tat com.shop.Api.post(Api.java:7)"
    )
    assert segments.parse_stack(java) == [
        {"path": "Cart.java", "line": 42, "label": "com.shop.Cart.add"},
        {"path": "Api.java", "line": 7, "label": "com.shop.Api.post"},
    ]
    node = "TypeError: x is undefined\n    at add (/app/cart.js:10:5)\n    at /app/index.js:3:1"
    assert segments.parse_stack(node) == [
        {"path": "/app/cart.js", "line": 10, "label": "add"},
        {"path": "/app/index.js", "line": 3},
    ]
    assert segments.parse_stack("goroutine 1 [running]:\nmain.main()") == []


# -- segments -> spans ---------------------------------------------------------------------------

K8SXRAY_SEGMENT: dict[str, Any] = {
    "name": "orders",
    "id": "70000000000000a1",
    "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
    "parent_id": "70000000000000ff",
    "start_time": 1700000000.123456,
    "end_time": 1700000000.323457,
    "origin": "AWS::EKS::Container",
    "service": {"version": "2.0"},
    "user": "alice",
    "aws": {
        "eks": {"pod": "orders-5c9f-abcde", "cluster_name": "prod", "container_id": "b" * 64},
        "xray": {"sdk": "k8sxray", "sdk_version": "0.1.0"},
    },
    "http": {
        "request": {
            "method": "POST",
            "url": "http://orders/api",
            "client_ip": "10.0.0.9",
            "user_agent": "k6",
        },
        "response": {"status": 502, "content_length": 12},
    },
    "fault": True,
    "annotations": {"tenant": "acme", "retries": 2},
    "metadata": {
        "k8s": {
            "namespace": "shop",
            "node": "node-1",
            "pod_uid": "u-1",
            "workload": {"kind": "Deployment", "name": "orders", "source": "pod-name"},
            "labels": {"app": "orders"},
        },
        "default": {"cart": {"items": 3}},
    },
    "cause": {
        "exceptions": [
            {
                "id": "aaaaaaaaaaaaaaaa",
                "type": "TimeoutError",
                "message": "upstream",
                "stack": [{"path": "a.py", "line": 3, "label": "f"}],
            }
        ]
    },
    "subsegments": [
        {
            "name": "SQS",
            "id": "70000000000000a2",
            "start_time": 1700000000.2,
            "end_time": 1700000000.3,
            "namespace": "aws",
            "aws": {
                "operation": "SendMessage",
                "queue_url": "https://sqs/q",
                "region": "us-east-1",
                "retries": 1,
            },
        },
        {"name": "in flight", "id": "70000000000000a3", "start_time": 1700000000.2, "in_progress": True},
    ],
}


def test_a_k8sxray_segment_becomes_spans_with_resource_and_semantic_conventions() -> None:
    out = spans.convert(json.loads(json.dumps(K8SXRAY_SEGMENT)))
    assert [s.span_id for s in out] == ["70000000000000a1", "70000000000000a2"]  # in progress: none
    server, sqs = out
    assert server.trace_id == sqs.trace_id == "5759e988bd862e3fe1be46a994272793"
    assert server.parent_span_id == "70000000000000ff"
    assert sqs.parent_span_id == server.span_id
    assert server.kind == KIND_SERVER
    assert sqs.kind == KIND_CLIENT
    # the float's exact value, to the nanosecond (1700000000.123456 is 1700000000.1234560013 as a double)
    assert server.start_ns == 1_700_000_000_123_456_001
    assert server.end_ns == 1_700_000_000_323_457_003
    assert server.start_ns / 10**9 == K8SXRAY_SEGMENT["start_time"]
    assert server.resource == {
        "service.name": "orders",
        "service.version": "2.0",
        "cloud.provider": "aws",
        "cloud.platform": "aws_eks",
        "k8s.pod.name": "orders-5c9f-abcde",
        "k8s.cluster.name": "prod",
        "container.id": "b" * 64,
        "telemetry.sdk.name": "k8sxray",
        "telemetry.sdk.version": "0.1.0",
        "k8s.namespace.name": "shop",
        "k8s.node.name": "node-1",
        "k8s.pod.uid": "u-1",
        "k8s.deployment.name": "orders",
        "k8s.pod.label.app": "orders",
    }
    assert sqs.resource is server.resource
    a = server.attributes
    assert a["http.request.method"] == "POST"
    assert a["url.full"] == "http://orders/api"
    assert a["client.address"] == "10.0.0.9"
    assert a["user_agent.original"] == "k6"
    assert a["http.response.status_code"] == 502
    assert a["http.response.body.size"] == 12
    assert a["enduser.id"] == "alice"
    assert a["tenant"] == "acme"
    assert a["retries"] == 2
    assert set(a["aws.xray.annotations"]) == {"tenant", "retries"}
    assert json.loads(a["aws.xray.metadata.default"]) == {"cart": {"items": 3}}
    assert server.status_code == STATUS_ERROR
    assert server.status_message == "upstream"
    [event] = server.events
    assert event.name == "exception"
    assert event.time_ns == server.end_ns
    assert event.attributes["exception.type"] == "TimeoutError"
    assert "at f (a.py:3)" in event.attributes["exception.stacktrace"]
    assert sqs.attributes == {
        "rpc.system": "aws-api",
        "rpc.service": "SQS",
        "rpc.method": "SendMessage",
        "aws.region": "us-east-1",
        "aws.sqs.queue.url": "https://sqs/q",
        "aws.retries": 1,
    }


def test_back_again_the_segment_keeps_what_x_ray_shows() -> None:
    original = json.loads(json.dumps(K8SXRAY_SEGMENT))
    converted = spans.convert(original)
    body = codec.encode_request([(converted[0].resource, converted)])
    [doc] = docs_of(segments.convert(codec.decode_protobuf(body)))
    for key in (
        "name",
        "id",
        "trace_id",
        "parent_id",
        "start_time",
        "end_time",
        "origin",
        "service",
        "user",
        "fault",
    ):
        assert doc[key] == K8SXRAY_SEGMENT[key], key
    assert doc["http"] == K8SXRAY_SEGMENT["http"]
    assert doc["annotations"] == K8SXRAY_SEGMENT["annotations"]
    assert doc["aws"] == K8SXRAY_SEGMENT["aws"]
    assert doc["metadata"]["default"] == K8SXRAY_SEGMENT["metadata"]["default"]
    k8s = dict(
        K8SXRAY_SEGMENT["metadata"]["k8s"],
        workload={"kind": "Deployment", "name": "orders", "source": "otel"},
    )
    assert doc["metadata"]["k8s"] == k8s
    [sqs] = doc["subsegments"]
    assert sqs["aws"] == K8SXRAY_SEGMENT["subsegments"][0]["aws"]
    assert sqs["namespace"] == "aws"
    assert sqs["name"] == "SQS"


def test_a_subsegment_sent_alone_takes_its_segments_resource() -> None:
    resources = spans.Resources()
    in_progress = {k: v for k, v in K8SXRAY_SEGMENT.items() if k not in ("end_time", "subsegments")}
    assert spans.convert(dict(in_progress, in_progress=True), resources) == []
    alone = {
        "type": "subsegment",
        "trace_id": K8SXRAY_SEGMENT["trace_id"],
        "parent_id": K8SXRAY_SEGMENT["id"],
        "id": "70000000000000b1",
        "name": "payments",
        "namespace": "remote",
        "start_time": 1700000000.2,
        "end_time": 1700000000.25,
    }
    [span] = spans.convert(alone, resources)
    assert span.resource["service.name"] == "orders"
    assert span.resource["k8s.namespace.name"] == "shop"
    assert span.parent_span_id == K8SXRAY_SEGMENT["id"]
    assert span.kind == KIND_CLIENT
    assert span.attributes == {"peer.service": "payments"}
    [orphan] = spans.convert(dict(alone, parent_id="70000000000000cc"), resources)
    assert orphan.resource == {"service.name": "unknown_service"}


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ([], "not_object"),
        ({"trace_id": "1-abc", "id": "70000000000000a1"}, "bad_trace_id"),
        ({"trace_id": K8SXRAY_SEGMENT["trace_id"], "id": "XYZ"}, "bad_id"),
        (
            {"trace_id": K8SXRAY_SEGMENT["trace_id"], "id": "70000000000000a1", "parent_id": 5},
            "bad_parent_id",
        ),
        (
            {
                "trace_id": K8SXRAY_SEGMENT["trace_id"],
                "id": "70000000000000a1",
                "start_time": "x",
                "end_time": 1.0,
            },
            "bad_time",
        ),
        (
            {
                "trace_id": K8SXRAY_SEGMENT["trace_id"],
                "id": "70000000000000a1",
                "start_time": float("nan"),
                "end_time": 1.0,
            },
            "bad_time",
        ),
    ],
)
def test_documents_that_cannot_become_spans_say_why(doc: Any, reason: str) -> None:
    with pytest.raises(spans.MappingError) as caught:
        spans.convert(doc)
    assert caught.value.reason == reason


def test_exception_events_round_trip_through_stacktraces() -> None:
    stack = [
        {"path": "/app/a.py", "line": 10, "label": "inner"},
        {"path": "/app/b.py", "line": 2, "label": "outer"},
    ]
    attributes = {"exception.type": "KeyError", "exception.message": "k"}
    text = spans.format_stack(attributes, stack)
    assert segments.parse_stack(text) == stack
    span = Span("5759e988bd862e3fe1be46a994272793", "5000000000000001", "x", 1, 2)
    span.events.append(Event("exception", 2, {**attributes, "exception.stacktrace": text}))
    [doc] = docs_of(segments.convert([span]))
    assert doc["cause"]["exceptions"][0]["stack"] == stack
