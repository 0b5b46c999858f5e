"""The OTLP sink's C path (``k8sxray.otlp._fast``) against the Python path it stands in for.

Whenever the C module answers, its bytes are the Python path's bytes (``json.loads`` +
``spans.convert`` + ``codec.encode_span``); when it is not sure it answers None. Documents from
the official X-Ray SDK, from k8sxray's recorder and from the benchmark must all take the C path.
The Python-path tests at the end run whether or not the module is built.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8sxray.otlp import codec, encoded
from k8sxray.otlp.spans import MappingError, Resources, to_nanos

ROOT = Path(__file__).resolve().parents[2]
needs_c = pytest.mark.skipif(not encoded.BUILT, reason="k8sxray.otlp._fast is not built")
_fast: Any = getattr(encoded, "_fast", None)

TRACE = "1-5f000000-0123456789abcdef01234567"


def python_answer(raw: bytes) -> tuple[bytes, bytes, int] | Exception | None:
    try:
        return encoded.encode_python(raw)
    except Exception as exc:  # whatever Python refuses, C must leave to Python
        return exc


def check(raw: bytes) -> bool:
    """C answers what Python answers, or None; whether C answered."""
    fast = _fast.encode(raw)
    if fast is None:
        return False
    slow = python_answer(raw)
    assert not isinstance(slow, Exception), (raw, slow)
    assert slow is not None, raw
    assert fast[:3] == slow, raw
    doc = json.loads(raw)
    assert fast[3] == doc["trace_id"][2:10] + doc["trace_id"][11:]
    assert fast[4] == doc["id"]
    return True


# -- documents as the recorders send them ----------------------------------------------------------


def bench_document(i: int) -> bytes:
    """benchmarks/bench_daemon.py's segment (its sender's datagram without the header)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_daemon
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    datagram: bytes = bench_daemon.make_datagram(i)
    return datagram.split(b"\n", 1)[1]


def sdk_documents() -> list[bytes]:
    """Documents of the official aws-xray-sdk's recorder: a segment with HTTP fields, annotations,
    metadata, a remote call, an AWS SDK call and an exception, as its emitter serialises them."""
    from aws_xray_sdk.core.recorder import AWSXRayRecorder

    class Memory:  # the emitter's interface, without the UDP socket
        def __init__(self) -> None:
            self.sent: list[bytes] = []

        def send_entity(self, entity: Any) -> None:
            self.sent.append(entity.serialize().encode())

        def set_daemon_address(self, address: str) -> None:
            pass

    emitter = Memory()
    recorder = AWSXRayRecorder()
    recorder.emitter._socket.close()  # the UDP emitter a new recorder opens, replaced below
    recorder.configure(emitter=emitter, sampling=False, context_missing="LOG_ERROR", service="sdk-svc")
    for failing in (False, True):
        segment = recorder.begin_segment("sdk-svc")
        segment.put_http_meta("method", "GET")
        segment.put_http_meta("url", "http://cart.shop.svc/items?id=1")
        segment.put_http_meta("user_agent", "curl/8.0")
        segment.put_http_meta("client_ip", "10.0.0.7")
        segment.put_http_meta("status", 500 if failing else 200)
        segment.put_annotation("tenant", "acme")
        segment.put_annotation("items", 3)
        segment.put_annotation("vip", True)
        segment.put_metadata("order", {"lines": [1, 2.5, None, "é"]}, "shop")
        segment.set_aws({"eks": {"pod": "cart-1", "cluster_name": "prod", "container_id": "abc"}})
        segment.set_user("alice")
        remote = recorder.begin_subsegment("inventory", "remote")
        remote.put_http_meta("method", "POST")
        remote.put_http_meta("status", 201)
        recorder.end_subsegment()
        query = recorder.begin_subsegment("orders@db", "remote")
        query.set_sql({"url": "postgresql://db/orders", "database_type": "PostgreSQL", "user": "app"})
        recorder.end_subsegment()
        call = recorder.begin_subsegment("DynamoDB", "aws")
        call.set_aws(
            {
                "operation": "GetItem",
                "region": "us-east-1",
                "request_id": "R1",
                "retries": 0,
                "table_name": "t",
            }
        )
        recorder.end_subsegment()
        if failing:
            local = recorder.begin_subsegment("work")
            try:
                raise KeyError("missing")
            except KeyError as exc:
                local.add_exception(exc, traceback.extract_stack())
            recorder.end_subsegment()
        recorder.end_segment()
    return emitter.sent


def k8sxray_documents() -> list[bytes]:
    """Documents of k8sxray's recorder: a Flask app's requests (annotations, metadata, a local
    subsegment, an exception), as its emitter gets them."""
    from flask import Flask

    import k8sxray
    from k8sxray import _recorder
    from k8sxray.testing import InMemoryEmitter, capture_segments

    k8sxray.configure(service_name="shop", plugins=())
    app = Flask(__name__)

    @app.route("/ok")
    def ok() -> str:
        k8sxray.annotate("tenant", "acme")
        k8sxray.put_metadata("order", {"lines": [1, 2]})
        with k8sxray.subsegment("work"):
            pass
        return "ok"

    @app.route("/boom")
    def boom() -> str:
        raise ValueError("boom ✓")

    wsgi = k8sxray.instrument(app)
    emitter = InMemoryEmitter()
    try:
        with capture_segments():
            previous = _recorder.set_emitter(emitter)
            client = wsgi.test_client()
            client.get("/ok", headers={"User-Agent": "tests"})
            assert client.get("/boom").status_code == 500
            _recorder.set_emitter(previous)
    finally:
        k8sxray.uninstrument(app)
    return list(emitter.documents)


@needs_c
def test_the_benchmarks_documents_take_the_c_path() -> None:
    for i in range(1, 50):
        assert check(bench_document(i))


@needs_c
def test_the_official_sdks_documents_take_the_c_path() -> None:
    documents = sdk_documents()
    assert len(documents) == 2
    for raw in documents:
        assert check(raw), raw
    spans = [span for raw in documents for span in decoded(raw)]
    assert {s.name for s in spans} == {"sdk-svc", "inventory", "orders@db", "DynamoDB", "work"}


@needs_c
def test_k8sxrays_documents_take_the_c_path() -> None:
    documents = k8sxray_documents()
    assert len(documents) == 2
    for raw in documents:
        assert check(raw), raw


def bridge_documents() -> list[bytes]:
    """Documents the daemon's OTLP receiver makes from an OpenTelemetry SDK's spans (a server span
    with a database client span, resource attributes of a Pod): OTLP in, the OTLP sink out."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from k8sxray.otlp import segments

    exporter = InMemorySpanExporter()
    resource = Resource.create(
        {"service.name": "checkout", "k8s.pod.name": "checkout-1", "cloud.platform": "aws_eks"}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    server = {
        "http.request.method": "GET",
        "url.full": "http://checkout/o/1",
        "http.response.status_code": 200,
    }
    with tracer.start_as_current_span("GET /o/{id}", kind=SpanKind.SERVER, attributes=server):
        client = {
            "db.system": "postgresql",
            "db.query.text": "SELECT 1",
            "server.address": "db",
            "tags": ["a", "b"],
        }
        with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes=client):
            pass
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    provider.shutdown()
    return segments.convert(codec.decode_protobuf(body)).documents


@needs_c
def test_the_otlp_receivers_documents_take_the_c_path() -> None:
    documents = bridge_documents()
    assert documents
    for raw in documents:
        assert b'"otel"' in raw  # span names and attributes X-Ray has no field for
        assert check(raw), raw


def decoded(raw: bytes) -> list[Any]:
    """The C path's spans for ``raw``, read back by opentelemetry-proto."""
    pytest.importorskip("opentelemetry.proto")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    resource, spans, count, _, _ = _fast.encode(raw)
    request = ExportTraceServiceRequest.FromString(codec.resource_spans_field(resource, [spans]))
    [resource_spans] = request.resource_spans
    [scope_spans] = resource_spans.scope_spans
    assert len(scope_spans.spans) == count
    return list(scope_spans.spans)


@needs_c
def test_what_c_writes_is_read_by_opentelemetry_proto() -> None:
    pytest.importorskip("opentelemetry.proto")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    raw = bench_document(7)
    resource, spans, _, _, _ = _fast.encode(raw)
    request = ExportTraceServiceRequest.FromString(codec.resource_spans_field(resource, [spans], "k8sxray"))
    attributes = {kv.key: kv.value.string_value for kv in request.resource_spans[0].resource.attributes}
    assert attributes["service.name"] == "checkout"
    assert attributes["k8s.pod.name"] == "checkout-7d9f8b6c5d-x2x9z"
    assert attributes["cloud.platform"] == "aws_eks"
    [span] = request.resource_spans[0].scope_spans[0].spans
    assert span.span_id.hex() == f"{7:016x}"
    assert span.start_time_unix_nano == to_nanos(1700000000.123456)  # the double's nearest nanosecond
    assert codec.decode_resource(resource) == attributes


# -- generated documents -----------------------------------------------------------------------


def mostly(good: Any, odd: Any) -> Any:
    """``good`` nine times in ten, else ``odd`` (which the C path may leave to Python)."""
    return st.integers(0, 9).flatmap(lambda n: good if n < 9 else odd)


_texts = st.one_of(
    st.sampled_from(["", "GET", "checkout", "a\\b", 'q"uote', "tab\there", "é✓", "\u2028", "\x7f", "x.y"]),
    st.sampled_from(["line\nbreak", "cr\r", "\x08\x0c\x00\x1f", "😀", "/"]),
    st.text(max_size=12),
)
_hex16 = mostly(
    st.integers(1, 2**64 - 1).map(lambda n: f"{n:016x}"),
    st.sampled_from(["0000000000000000", "ABCDEF0123456789", "123", "zzzzzzzzzzzzzzzz"]),
)
_times = mostly(
    st.one_of(st.floats(1.5e9, 2e9), st.floats(0, 1e10, exclude_max=True), st.integers(0, 2 * 10**9)),
    st.one_of(
        st.floats(0, 1e11, allow_nan=False),
        st.integers(0, 2 * 10**10),
        st.sampled_from([1700000000.123456, 1e9, 0.5, -1.0, 1e20, "x", None]),
    ),
)
_scalars = st.one_of(
    _texts,
    st.booleans(),
    mostly(st.integers(-(2**60), 2**60), st.integers(-(2**70), 2**70)),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_texts, inner, max_size=3)),
    max_leaves=8,
)


def _maybe(strategy: Any) -> Any:
    return st.one_of(st.just(None), strategy)


@st.composite
def entities(draw: Any, depth: int = 0, segment: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": draw(mostly(_texts, st.one_of(st.none(), st.integers()))),
        "id": draw(_hex16),
    }
    doc["start_time"] = draw(_times)
    if draw(st.booleans()):
        doc["end_time"] = draw(_times)
    optional: dict[str, Any] = {
        "namespace": mostly(st.sampled_from(["aws", "remote", "local"]), st.one_of(_texts, st.integers())),
        "http": st.fixed_dictionaries(
            {},
            optional={
                "request": st.fixed_dictionaries(
                    {},
                    optional={
                        "method": _scalars,
                        "url": _texts,
                        "user_agent": _texts,
                        "client_ip": _maybe(_texts),
                        "x_forwarded_for": mostly(st.booleans(), st.integers(0, 1)),
                    },
                ),
                "response": st.fixed_dictionaries(
                    {}, optional={"status": _scalars, "content_length": st.integers(-5, 10**20)}
                ),
            },
        ),
        "aws": st.fixed_dictionaries(
            {},
            optional={
                "operation": _scalars,
                "region": _texts,
                "request_id": _texts,
                "retries": st.integers(0, 3),
                "table_name": _scalars,
                "table_names": mostly(st.lists(_texts, max_size=2), st.lists(_scalars, max_size=2)),
                "eks": st.dictionaries(
                    st.sampled_from(["pod", "cluster_name", "container_id", "x"]), _scalars
                ),
                "ec2": st.dictionaries(
                    st.sampled_from(["instance_id", "availability_zone", "ami_id"]), _scalars
                ),
                "xray": st.dictionaries(st.sampled_from(["sdk", "sdk_version"]), _scalars),
                "ecs": st.dictionaries(st.sampled_from(["container_id"]), _scalars),
                "account_id": _scalars,
                "odd.key": _scalars,
            },
        ),
        "annotations": st.dictionaries(
            mostly(st.sampled_from(["tenant", "n", "vip", "", "é"]), _texts), _json, max_size=4
        ),
        "metadata": st.dictionaries(
            st.sampled_from(["default", "shop", "k8s", "é", "otel", "otel.resource"]),
            st.one_of(
                _json,
                st.fixed_dictionaries(  # the otel namespace, as the OTLP receiver writes it
                    {},
                    optional={
                        "span.name": mostly(_texts, _scalars),
                        "span.kind": st.sampled_from(["SERVER", "CLIENT", "UNSPECIFIED", "PRODUCER", "x", 2]),
                        "events": mostly(
                            _scalars, st.lists(st.fixed_dictionaries({"name": _texts}), max_size=1)
                        ),
                        "server.address": _scalars,
                        "messaging.batch": st.lists(mostly(_scalars, _json), max_size=3),
                        "service.name": _scalars,
                        "http.request.method": _scalars,
                    },
                ),
                st.fixed_dictionaries(
                    {},
                    optional={
                        "namespace": _scalars,
                        "node": _scalars,
                        "pod_uid": _scalars,
                        "workload": st.fixed_dictionaries(
                            {},
                            optional={
                                "kind": st.sampled_from(["Deployment", "StatefulSet", "Pod", "job"]),
                                "name": _scalars,
                            },
                        ),
                        "labels": st.dictionaries(_texts, _scalars, max_size=3),
                    },
                ),
            ),
            max_size=3,
        ),
        "fault": mostly(st.booleans(), st.integers(0, 1)),
        "error": st.booleans(),
        "throttle": st.booleans(),
        "user": _scalars,
        "origin": st.sampled_from(["AWS::EKS::Container", "AWS::EC2::Instance", "AWS::ECS::Container", "x"]),
        "service": st.one_of(st.fixed_dictionaries({}, optional={"version": _scalars}), _scalars),
        "in_progress": st.one_of(st.booleans(), st.just(None)),
        "parent_id": st.one_of(_hex16, st.none()),
        "type": st.sampled_from(["subsegment", "segment"]),
        "sql": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "url": _texts,
                    "sanitized_query": _texts,
                    "database_type": _texts,
                    "user": _scalars,
                    "database_version": _scalars,
                    "preparation": st.sampled_from(["call", "statement"]),
                    "odd": _json,
                },
            ),
            _scalars,
        ),
        "cause": st.one_of(
            _texts,
            st.fixed_dictionaries(
                {"working_directory": _texts},
                optional={
                    "exceptions": st.lists(
                        st.fixed_dictionaries(
                            {"id": _hex16},
                            optional={
                                "type": _maybe(_texts),
                                "message": mostly(st.one_of(_texts, st.none()), st.integers()),
                                "remote": st.booleans(),
                                "stack": st.lists(
                                    st.fixed_dictionaries(
                                        {},
                                        optional={
                                            "path": st.one_of(_texts, st.none()),
                                            "line": st.one_of(st.integers(-1, 10**6), st.none()),
                                            "label": _maybe(_texts),
                                        },
                                    ),
                                    max_size=3,
                                ),
                            },
                        ),
                        max_size=2,
                    )
                },
            ),
        ),
        "precursor_ids": st.lists(_hex16, max_size=2),
    }
    # mostly the usual shapes, now and then the unusual ones
    for key, strategy in optional.items():
        if draw(st.integers(0, 19)) < (1 if key in ("in_progress", "type", "parent_id") else 7):
            doc[key] = draw(strategy)
    if depth < 2 and draw(st.booleans()):
        doc["subsegments"] = draw(st.lists(entities(depth + 1, False), max_size=3))  # type: ignore[call-arg]
    if segment:
        doc["trace_id"] = draw(mostly(st.just(TRACE), st.sampled_from(["1-5f000000-0", TRACE.upper(), 5])))
    return doc


@st.composite
def serialised(draw: Any) -> bytes:
    doc = draw(entities())
    items = list(doc.items())
    random.Random(draw(st.integers(0, 2**16))).shuffle(items)
    text = json.dumps(
        dict(items),
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
        indent=draw(st.sampled_from([None, None, 2])),
    )
    if draw(st.integers(0, 9)) == 0:  # a key twice: json.loads keeps the last value
        key = draw(
            st.sampled_from(
                [
                    '"name"',
                    '"id"',
                    '"tenant"',
                    '"method"',
                    '"default"',
                    '"start_time"',
                    '"retries"',
                    '"pod"',
                    '"url"',
                ]
            )
        )
        text = text.replace(key + ":", f"{key}: 1, {key}:", 1)
    return text.encode()


@needs_c
def test_generated_documents_give_the_same_bytes_or_none() -> None:
    answered: list[bool] = []

    @settings(max_examples=1000)
    @given(serialised())
    def compare(raw: bytes) -> None:
        answered.append(check(raw))

    compare()
    # the generator is not all bail-outs: a good share of the comparisons are of real answers
    assert sum(answered) > len(answered) // 10, (sum(answered), len(answered))


# -- malformed input -----------------------------------------------------------------------------


@needs_c
@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b"{}",
        b"\xef\xbb\xbf" + bench_document(3),  # a UTF-8 byte order mark
        bench_document(3) + b"x",  # extra data
        bench_document(3)[:-1],
        bench_document(3).replace(b'"checkout"', b'"\xff"', 1),  # invalid UTF-8
        bench_document(3).replace(b'"checkout"', b'"\xed\xa0\x80"', 1),  # an encoded surrogate
        bench_document(3).replace(b'"checkout"', b'"\\ud800"', 1),  # a lone surrogate
        bench_document(3).replace(b'"checkout"', b'"\\udc00x"', 1),
        bench_document(3).replace(b'"checkout"', b'"\\ud83d\\ude00"', 1),  # a pair: fine
        bench_document(3).replace(b'"checkout"', b'"a\x01"', 1),  # a raw control character
        bench_document(3).replace(b"1700000000.123456", b"1e999", 1),
        bench_document(3).replace(b"1700000000.123456", b"NaN", 1),
        bench_document(3).replace(b"1700000000.123456", b"17000000001234567891234567.5", 1),
        bench_document(3).replace(b'"acme"', b"123456789012345678901234567890", 1),
        bench_document(3).replace(b'"acme"', b"-0", 1),
        bench_document(3).replace(b'"acme"', b"01", 1),
        bench_document(3).replace(b'"acme"', b"1.", 1),
        bench_document(3).replace(b'"acme"', b"[" * 5000 + b"]" * 5000, 1),
        bench_document(3).replace(b'"acme"', b"[" * 70 + b"]" * 70, 1),
        bench_document(3).replace(b'"tenant":"acme"', b'"tenant":"acme","tenant":"x"', 1),
        # an AWS SDK call's other fields, one of them twice (Python iterates the dict: once)
        bench_document(3).replace(
            b'"annotations"',
            b'"subsegments":[{"name":"S3","id":"00000000000000b1","start_time":1.5,"namespace":"aws",'
            b'"aws":{"retries":1,"x":2,"retries":3}}],"annotations"',
            1,
        ),
    ],
)
def test_malformed_documents_are_left_to_python_or_answered_right(raw: bytes) -> None:
    check(raw)


@needs_c
def test_every_field_the_c_path_knows_in_one_document() -> None:
    doc = {
        "name": "cart",
        "id": "00000000000000a1",
        "trace_id": TRACE,
        "parent_id": "00000000000000a0",
        "start_time": 1700000000.5,
        "end_time": 1700000001,
        "origin": "AWS::EC2::Instance",
        "service": {"version": "1.2.3", "runtime": "CPython"},
        "user": "alice",
        "aws": {
            "account_id": "123456789012",
            "ec2": {
                "instance_id": "i-1",
                "availability_zone": "eu-west-1a",
                "instance_type": "m5",
                "ami_id": "a",
            },
            "xray": {"sdk": "X-Ray for Python", "sdk_version": "2.15.0"},
        },
        "metadata": {
            "k8s": {
                "namespace": "shop",
                "node": "n1",
                "pod_uid": "u",
                "container_name": "c",
                "workload": {"kind": "StatefulSet", "name": "cart"},
                "labels": {"app": "cart", "tier": "web"},
            },
            "otel.resource": {"host.id": "already set", "service.instance.id": "i-1", "zones": ["a", None]},
            "escapes": {'q"uote': "\\ \b\f\n\r\t \u0001 é 😀 \u2028", "n": [-0, 1.5e300, 1e-7, 10**17, True]},
        },
        "http": {
            "request": {
                "method": "POST",
                "url": "http://cart/",
                "client_ip": "10.0.0.1",
                "x_forwarded_for": True,
            },
            "response": {"status": 201, "content_length": 12},
        },
        "error": True,
        "throttle": True,
        "annotations": {"tenant": "acme", "n": -3, "f": 0.25, "ok": False, "skipped": None},
        "cause": {
            "exceptions": [
                {
                    "type": "E",
                    "message": "",
                    "stack": [{"path": "a.py", "line": 3, "label": "f"}, {"line": 4}],
                },
                {"message": "second", "stack": []},
            ]
        },
        "subsegments": [
            {
                "name": "DynamoDB",
                "id": "00000000000000a2",
                "start_time": 1700000000.6,
                "end_time": 1700000000.7,
                "namespace": "aws",
                "aws": {"operation": "BatchGetItem", "table_names": ["a", "b"], "retries": 2, "ok": True},
                "metadata": {
                    "k8s": {"x": 1},
                    "otel.resource": {"ignored": "here"},
                    "otel": {
                        "span.name": "renamed",
                        "span.kind": "PRODUCER",
                        "tags": ["a", None, 1, True, 2.5],
                    },
                },
                "sql": {"sanitized_query": "SELECT 1", "driver_version": "3", "url": "pg://x", "n": [1]},
                "subsegments": [{"name": "", "id": "00000000000000a3", "start_time": 1700000000.65}],
            }
        ],
    }
    raw = json.dumps(doc, ensure_ascii=False).encode()
    assert check(raw)
    spans = decoded(raw)
    assert [s.name for s in spans] == ["cart", "renamed", ""]
    assert spans[1].kind == 4  # PRODUCER, from the otel namespace
    assert spans[0].status.message == "second"


@needs_c
def test_equal_values_of_other_types_in_a_resource_stay_apart() -> None:
    """0, False and 0.0 are equal (and hash alike) in Python, and are three encodings."""
    for value in ("0", "false", "0.0", "0", "true", "1", "1.0"):
        raw = bench_document(3).replace(b'"cluster_name":"prod"', b'"cluster_name":' + value.encode())
        assert check(raw), raw


@needs_c
def test_a_large_document_and_one_after_it() -> None:
    """A document of several MB (buffers grown past what is kept between calls), then a small one."""
    doc = json.loads(bench_document(3))
    doc["metadata"] = {"big": {"items": ["x" * 1000] * 5000}}
    doc["subsegments"] = [
        {"name": f"s{i}", "id": f"{i + 1:016x}", "start_time": 1.5, "end_time": 2.5, "namespace": "remote"}
        for i in range(2000)
    ]
    assert check(json.dumps(doc).encode())
    assert check(bench_document(4))


@needs_c
def test_random_bytes_and_mutations_never_crash() -> None:
    rng = random.Random(18)
    seeds = [bench_document(5), *sdk_documents()]
    for _ in range(4000):
        raw = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(raw) + 1)
            action = rng.randrange(4)
            if action == 0:
                raw[at : at + 1] = bytes([rng.randrange(256)])
            elif action == 1:
                del raw[at:]
            elif action == 2:
                raw[at:at] = rng.choice([b"\\", b'"', b"{", b"]", b",", b"\\u12", b"\xc3", b"0", b"-"])
            else:
                del raw[at : at + rng.randint(1, 8)]
        check(bytes(raw))
    for _ in range(500):
        _fast.encode(bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))))


@needs_c
def test_encode_takes_bytes_only() -> None:
    with pytest.raises(TypeError):
        _fast.encode("{}")


# -- choosing the path ---------------------------------------------------------------------------


def test_the_python_path_works_whether_or_not_c_is_built() -> None:
    encoder = encoded.Encoder(native=False)
    resource, _, count = encoder.encode(bench_document(4)) or (b"", b"", 0)
    assert count == 1
    assert codec.decode_resource(resource)["service.name"] == "checkout"
    assert (encoder.fast, encoder.slow) == (0, 1)
    in_progress = json.dumps(
        {"name": "a", "id": "1" * 16, "trace_id": TRACE, "start_time": 1.5, "in_progress": True}
    )
    assert encoder.encode(in_progress.encode()) is None
    with pytest.raises(MappingError):
        encoder.encode(b'{"name": "a", "id": "x", "trace_id": "1-5f000000-0123456789abcdef01234567"}')
    with pytest.raises(json.JSONDecodeError):
        encoder.encode(b"{")


@needs_c
def test_the_encoder_counts_both_paths() -> None:
    encoder = encoded.Encoder(native=True)
    encoder.encode(bench_document(4))
    encoder.encode(
        json.dumps(
            {"name": "a", "id": "1" * 16, "trace_id": TRACE, "start_time": 1.5, "in_progress": True}
        ).encode()
    )
    assert (encoder.fast, encoder.slow) == (1, 1)


def test_k8sxray_native_false_turns_the_c_path_off() -> None:
    assert encoded.native_wanted({"K8SXRAY_NATIVE": "false"}) is False
    assert encoded.native_wanted({"K8SXRAY_NATIVE": "0"}) is False
    assert encoded.native_wanted({"K8SXRAY_NATIVE": "true"}) is True
    assert encoded.native_wanted({}) is True
    code = "from k8sxray.otlp import encoded; print(encoded.Encoder().native)"
    for value, expected in (("false", "False"), ("true", str(encoded.BUILT))):
        env = {**os.environ, "K8SXRAY_NATIVE": value, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == expected


def test_a_subsegment_sent_on_its_own_finds_a_resource_remembered_encoded() -> None:
    """The C path remembers a segment's resource encoded; Python decodes it for a subsegment."""
    resources = Resources()
    first = encoded.encode_python(bench_document(9), resources)
    assert first is not None
    resources_c = Resources()
    resources_c.remember(TRACE[2:10] + TRACE[11:], "00000000000000aa", first[0])
    sub = {
        "type": "subsegment",
        "name": "work",
        "id": "00000000000000bb",
        "parent_id": "00000000000000aa",
        "trace_id": TRACE,
        "start_time": 1.5,
        "end_time": 2.5,
    }
    answer = encoded.encode_python(json.dumps(sub).encode(), resources_c)
    assert answer is not None
    assert answer[0] == first[0]  # grouped with its segment's spans


@pytest.mark.parametrize(
    "resource",
    [
        {"service.name": "a"},
        {"service.name": "é", "n": -3, "big": 2**62, "f": 0.25, "ok": True, "no": False},
        {"service.name": "b", "none": None, "list": ["x", 1, None, True, 0.5], "empty": []},
    ],
)
def test_decode_resource_reads_what_encode_resource_writes(resource: dict[str, Any]) -> None:
    assert codec.decode_resource(codec.encode_resource(resource)) == resource
