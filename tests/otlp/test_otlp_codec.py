"""OTLP payloads: protobuf and OTLP/JSON read into the same spans; what we write, read by the proto."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

pytest.importorskip("opentelemetry.proto")

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1 import trace_pb2

from k8sxray.otlp import codec
from k8sxray.otlp.model import Event, Span


def sample_request() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "cart"
    ss = rs.scope_spans.add()
    ss.scope.name = "manual"
    span = ss.spans.add(
        trace_id=bytes.fromhex("5759e988bd862e3fe1be46a994272793"),
        span_id=bytes.fromhex("53995c3f42cd8ad8"),
        parent_span_id=bytes.fromhex("00f067aa0ba902b7"),
        name="GET /cart",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_700_000_000_000_000_001,
        end_time_unix_nano=1_700_000_000_500_000_000,
    )
    span.attributes.add(key="http.response.status_code").value.int_value = 2**40
    span.attributes.add(key="ratio").value.double_value = 0.5
    span.attributes.add(key="ok").value.bool_value = True
    span.attributes.add(key="blob").value.bytes_value = b"\x00\x01"
    span.attributes.add(key="tags").value.array_value.values.add().string_value = "a"
    span.attributes.add(key="obj").value.kvlist_value.values.add(key="k").value.string_value = "v"
    event = span.events.add(name="exception", time_unix_nano=1_700_000_000_400_000_000)
    event.attributes.add(key="exception.type").value.string_value = "KeyError"
    span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    span.status.message = "bad"
    return request


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON as the spec writes it: protobuf's JSON mapping, but ids in hex, not base64."""
    data: Any = json_format.MessageToDict(request)
    for rs in data["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex().upper()  # hex is case-insensitive
                span["kind"] = trace_pb2.Span.SpanKind.Value(span["kind"])  # enums as numbers
                span["status"]["code"] = trace_pb2.Status.StatusCode.Value(span["status"]["code"])
    return json.dumps(data).encode()


def test_protobuf_and_json_read_into_the_same_spans() -> None:
    request = sample_request()
    from_protobuf = codec.decode_protobuf(request.SerializeToString())
    from_json = codec.decode_json(otlp_json(request))
    assert from_protobuf == from_json
    [span] = from_json
    assert span.trace_id == "5759e988bd862e3fe1be46a994272793"
    assert span.parent_span_id == "00f067aa0ba902b7"
    assert span.start_ns == 1_700_000_000_000_000_001  # int64 as a JSON string, exact
    assert span.kind == 2
    assert span.status_code == 2
    assert span.status_message == "bad"
    assert span.attributes == {
        "http.response.status_code": 2**40,
        "ratio": 0.5,
        "ok": True,
        "blob": b"\x00\x01",
        "tags": ["a"],
        "obj": {"k": "v"},
    }
    assert span.events == [Event("exception", 1_700_000_000_400_000_000, {"exception.type": "KeyError"})]
    assert span.resource == {"service.name": "cart"}
    assert span.scope_name == "manual"


def test_json_with_snake_case_keys_and_enum_names_is_read_too() -> None:
    body = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": "5759e988bd862e3fe1be46a994272793",
                                "span_id": "53995c3f42cd8ad8",
                                "name": "x",
                                "kind": "SPAN_KIND_CLIENT",
                                "start_time_unix_nano": 5,
                                "end_time_unix_nano": "6",
                            }
                        ]
                    }
                ]
            }
        ]
    }
    [span] = codec.decode_json(json.dumps(body).encode())
    assert (span.kind, span.start_ns, span.end_ns, span.parent_span_id) == (3, 5, 6, "")


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"{", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"resourceSpans": {}}', "must be a list"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "AAAA", "spanId": "1"}]}]}]}',
            "traceId",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "'
            + b"z" * 32
            + b'", "spanId": "53995c3f42cd8ad8"}]}]}]}',
            "invalid literal",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "'
            + b"a" * 32
            + b'", "spanId": "'
            + b"b" * 16
            + b'", "kind": "NOPE"}]}]}]}',
            "enum",
        ),
    ],
)
def test_bad_json_says_what_is_wrong(payload: bytes, says: str) -> None:
    with pytest.raises(codec.DecodeError, match=says):
        codec.decode_json(payload)


def test_bad_protobuf_is_a_decode_error() -> None:
    with pytest.raises(codec.DecodeError, match="protobuf"):
        codec.decode_protobuf(b"\x0a\xff\xff\xff\xff\x0f garbage")


def test_what_we_write_is_read_by_opentelemetry_proto() -> None:
    span = Span(
        trace_id="5759e988bd862e3fe1be46a994272793",
        span_id="53995c3f42cd8ad8",
        parent_span_id="00f067aa0ba902b7",
        name="GET /cart",
        start_ns=1_700_000_000_000_000_001,
        end_ns=1_700_000_000_500_000_000,
        kind=2,
        attributes={
            "s": "é" * 100,
            "i": -3,
            "b": False,
            "f": 1.25,
            "l": ("a", "b"),
            "big": 2**64,
            "d": {"k": [1, 2]},
            "raw": b"\x01",
            "n": None,
        },
        events=[Event("exception", 7, {"exception.message": "m"})],
        status_code=2,
        status_message="boom",
        trace_state="k=v",
    )
    body = codec.encode_request([({"service.name": "cart", "n": 1}, [span])])
    request = ExportTraceServiceRequest.FromString(body)
    [decoded] = codec.decode_protobuf(body)
    assert decoded.attributes["s"] == "é" * 100
    assert decoded.attributes["i"] == -3
    assert decoded.attributes["l"] == ["a", "b"]
    assert decoded.attributes["d"] == {"k": [1, 2]}
    assert decoded.attributes["raw"] == b"\x01"
    assert decoded.attributes["n"] is None
    assert (decoded.status_code, decoded.status_message, decoded.trace_state) == (2, "boom", "k=v")
    assert decoded.events == span.events
    assert decoded.resource == {"service.name": "cart", "n": 1}
    assert request.resource_spans[0].scope_spans[0].scope.name == "k8sxray"


def test_responses_and_statuses_in_both_encodings() -> None:
    assert (
        ExportTraceServiceResponse.FromString(codec.response("application/x-protobuf"))
        == ExportTraceServiceResponse()
    )
    partial = ExportTraceServiceResponse.FromString(
        codec.response("application/x-protobuf", 3, "3 invalid ids")
    )
    assert partial.partial_success.rejected_spans == 3
    assert partial.partial_success.error_message == "3 invalid ids"
    assert json.loads(codec.response("application/json", 2, "x")) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": "x"}
    }
    assert (
        codec.rejected_spans("application/x-protobuf", codec.response("application/x-protobuf", 4, "")) == 4
    )
    assert codec.rejected_spans("application/json", codec.response("application/json", 5, "")) == 5
    assert codec.rejected_spans("application/x-protobuf", b"") == 0
    from google.rpc import status_pb2

    status = status_pb2.Status.FromString(codec.status("application/x-protobuf", "bad gzip"))
    assert (status.code, status.message) == (3, "bad gzip")
    assert json.loads(codec.status("application/json", "why", code=14)) == {"code": 14, "message": "why"}
