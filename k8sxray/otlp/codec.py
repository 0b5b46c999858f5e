"""OTLP/HTTP trace payloads: reading them into spans, writing spans as a protobuf request.

Reading: ``decode_protobuf`` parses an ``ExportTraceServiceRequest`` with the generated classes of
``opentelemetry-proto`` (imported on first use; :func:`require` says what to install when it is
missing); ``decode_json`` reads the OTLP/JSON encoding (lowerCamelCase keys, snake_case accepted
too; trace and span ids as hex, not base64; enums as numbers; 64-bit integers as strings or numbers).

Writing: ``encode_span`` and ``encode_request`` write the protobuf wire format directly (a few
dozen lines for the handful of messages a request holds): building the generated message objects
field by field costs several times more CPU per span, and the daemon's OTLP sink converts tens of
thousands of segments a second. The tests decode what is written with ``opentelemetry-proto``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from typing import Any

from . import EXTRA_HINT
from .model import Attributes, Event, Span


class DecodeError(ValueError):
    """A payload that is not a valid OTLP trace request; the message says what is wrong."""


def require() -> None:
    """Raise ImportError naming the extra to install when ``opentelemetry-proto`` is missing."""
    try:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"OTLP support needs opentelemetry-proto: {EXTRA_HINT}") from exc


# -- reading protobuf ----------------------------------------------------------------------------


def decode_protobuf(data: bytes) -> list[Span]:
    """The spans of a protobuf ``ExportTraceServiceRequest``. Raises DecodeError."""
    from google.protobuf.message import DecodeError as ProtobufError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        request = ExportTraceServiceRequest.FromString(data)
    except (ProtobufError, RuntimeError, ValueError) as exc:
        raise DecodeError(f"not an OTLP ExportTraceServiceRequest (protobuf): {exc}") from None
    spans: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = _pb_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            for s in scope_spans.spans:
                status = s.status
                spans.append(
                    Span(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        name=s.name,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        parent_span_id=s.parent_span_id.hex(),
                        kind=s.kind,
                        attributes=_pb_attributes(s.attributes) if s.attributes else {},
                        events=[
                            Event(e.name, e.time_unix_nano, _pb_attributes(e.attributes)) for e in s.events
                        ],
                        status_code=status.code,
                        status_message=status.message,
                        resource=resource,
                        scope_name=scope.name,
                        scope_version=scope.version,
                        trace_state=s.trace_state,
                    )
                )
    return spans


def _pb_attributes(pairs: Iterable[Any]) -> Attributes:
    return {kv.key: _pb_value(kv.value) for kv in pairs}


def _pb_value(value: Any) -> Any:  # noqa: PLR0911 - one return per value type
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        return value.double_value
    if which == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _pb_attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return bytes(value.bytes_value)
    return None


# -- reading OTLP/JSON ---------------------------------------------------------------------------


def decode_json(data: bytes) -> list[Span]:
    """The spans of an OTLP/JSON ``ExportTraceServiceRequest``. Raises DecodeError."""
    try:
        request = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if type(request) is not dict:
        raise DecodeError("an OTLP/JSON request is a JSON object")
    spans: list[Span] = []
    try:
        for resource_spans in _list(request, "resourceSpans", "resource_spans"):
            resource = _json_attributes(_get(_get(resource_spans, "resource") or {}, "attributes"))
            for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
                scope = _get(scope_spans, "scope") or {}
                for s in _list(scope_spans, "spans"):
                    spans.append(_json_span(s, resource, scope))
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise DecodeError(f"not an OTLP/JSON trace request: {exc}") from None
    except RecursionError:
        raise DecodeError("not an OTLP/JSON trace request: values nested too deeply") from None
    return spans


def _get(obj: Any, camel: str, snake: str | None = None) -> Any:
    if type(obj) is not dict:
        raise TypeError(f"expected an object, got {type(obj).__name__}")
    value = obj.get(camel)
    if value is None and snake is not None:
        value = obj.get(snake)
    return value


def _list(obj: Any, camel: str, snake: str | None = None) -> list[Any]:
    value = _get(obj, camel, snake)
    if value is None:
        return []
    if type(value) is not list:
        raise TypeError(f"{camel} must be a list")
    return value


def _json_span(s: Any, resource: Attributes, scope: Any) -> Span:
    status = _get(s, "status") or {}
    return Span(
        trace_id=_hex_id(_get(s, "traceId", "trace_id"), 32, "traceId"),
        span_id=_hex_id(_get(s, "spanId", "span_id"), 16, "spanId"),
        name=str(_get(s, "name") or ""),
        start_ns=_int64(_get(s, "startTimeUnixNano", "start_time_unix_nano")),
        end_ns=_int64(_get(s, "endTimeUnixNano", "end_time_unix_nano")),
        parent_span_id=_hex_id(_get(s, "parentSpanId", "parent_span_id"), 16, "parentSpanId", optional=True),
        kind=_enum(_get(s, "kind"), "SPAN_KIND_"),
        attributes=_json_attributes(_get(s, "attributes")),
        events=[
            Event(
                str(_get(e, "name") or ""),
                _int64(_get(e, "timeUnixNano", "time_unix_nano")),
                _json_attributes(_get(e, "attributes")),
            )
            for e in _list(s, "events")
        ],
        status_code=_enum(_get(status, "code"), "STATUS_CODE_"),
        status_message=str(_get(status, "message") or ""),
        resource=resource,
        scope_name=str(_get(scope, "name") or ""),
        scope_version=str(_get(scope, "version") or ""),
        trace_state=str(_get(s, "traceState", "trace_state") or ""),
    )


def _hex_id(value: Any, digits: int, what: str, optional: bool = False) -> str:
    if value in (None, "") and optional:
        return ""
    if type(value) is not str or len(value) != digits:
        raise ValueError(f"{what} must be {digits} hex digits, got {value!r}")
    lowered = value.lower()
    int(lowered, 16)  # ValueError when not hex
    return lowered


def _int64(value: Any) -> int:
    if value is None:
        return 0
    if type(value) is int:
        return value
    if type(value) is str:
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def _enum(value: Any, prefix: str) -> int:
    if value is None:
        return 0
    if type(value) is int:
        return value
    if type(value) is str:
        names = {
            "SPAN_KIND_": ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"),
            "STATUS_CODE_": ("UNSET", "OK", "ERROR"),
        }[prefix]
        name = value.removeprefix(prefix)
        if name in names:
            return names.index(name)
    raise ValueError(f"unknown enum value {value!r}")


def _json_attributes(pairs: Any) -> Attributes:
    if pairs is None:
        return {}
    if type(pairs) is not list:
        raise TypeError("attributes must be a list")
    return {str(_get(kv, "key")): _json_value(_get(kv, "value")) for kv in pairs}


def _json_value(value: Any) -> Any:  # noqa: PLR0911 - one return per value type
    if value is None:
        return None
    if type(value) is not dict:
        raise TypeError("an attribute value must be an object (AnyValue)")
    for key, item in value.items():
        if key in ("stringValue", "string_value"):
            return str(item)
        if key in ("intValue", "int_value"):
            return _int64(item)
        if key in ("boolValue", "bool_value"):
            return bool(item)
        if key in ("doubleValue", "double_value"):
            return float(item)
        if key in ("arrayValue", "array_value"):
            return [_json_value(v) for v in _list(item, "values")]
        if key in ("kvlistValue", "kvlist_value"):
            return _json_attributes(_get(item, "values"))
        if key in ("bytesValue", "bytes_value"):
            import base64

            return base64.b64decode(item)
    return None


# -- responses -----------------------------------------------------------------------------------


def response(content_type: str, rejected: int = 0, message: str = "") -> bytes:
    """An ``ExportTraceServiceResponse``: empty, or with ``partial_success`` when spans were refused."""
    if content_type == "application/json":
        if not rejected:
            return b"{}"
        partial = {"rejectedSpans": str(rejected), "errorMessage": message}
        return json.dumps({"partialSuccess": partial}).encode()
    if not rejected:
        return b""
    inner = b"\x08" + _varint(rejected) + _ld(b"\x12", message.encode())
    return _ld(b"\x0a", inner)


def status(content_type: str, message: str, code: int = 3) -> bytes:
    """A ``google.rpc.Status`` (code 3: INVALID_ARGUMENT) describing a refused request."""
    if content_type == "application/json":
        return json.dumps({"code": code, "message": message}).encode()
    return b"\x08" + _varint(code) + _ld(b"\x12", message.encode())


def rejected_spans(content_type: str, body: bytes) -> int:
    """``partial_success.rejected_spans`` of an ``ExportTraceServiceResponse`` (0 when absent)."""
    if not body:
        return 0
    if content_type.startswith("application/json"):
        try:
            partial = json.loads(body).get("partialSuccess") or {}
            return int(partial.get("rejectedSpans") or 0)
        except (ValueError, AttributeError, TypeError):
            return 0
    try:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        return int(ExportTraceServiceResponse.FromString(body).partial_success.rejected_spans)
    except Exception:  # an endpoint's answer we cannot read is not a reason to resend
        return 0


# -- writing protobuf ----------------------------------------------------------------------------

_VARINTS = [bytes([i]) for i in range(128)]
_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_KEYS: dict[str, bytes] = {}


def _varint(n: int) -> bytes:
    if n < 128:
        return _VARINTS[n]
    out = bytearray()
    while n > 127:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    n = len(payload)
    return tag + (_VARINTS[n] if n < 128 else _varint(n)) + payload


def _key(key: str) -> bytes:
    """``KeyValue.key`` encoded (cached: attribute names repeat)."""
    encoded = _KEYS.get(key)
    if encoded is None:
        encoded = _ld(b"\x0a", key.encode())
        if len(_KEYS) < 4096:
            _KEYS[key] = encoded
    return encoded


def _any_value(value: Any) -> bytes:  # noqa: PLR0911 - one return per value type
    t = type(value)
    if t is str:
        return _ld(b"\x0a", value.encode())
    if t is int:
        if -(2**63) <= value < 2**63:
            return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
        return b"\x21" + _pack_double(float(value))  # beyond int64: the nearest double
    if t is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if t is float:
        return b"\x21" + _pack_double(value)
    if t is list or t is tuple:
        return _ld(b"\x2a", b"".join([_ld(b"\x0a", _any_value(v)) for v in value]))
    if t is dict:
        return _ld(b"\x32", b"".join([_ld(b"\x0a", _key_value(str(k), v)) for k, v in value.items()]))
    if t is bytes:
        return _ld(b"\x3a", value)
    if value is None:
        return b""
    return _ld(b"\x0a", str(value).encode())


def _key_value(key: str, value: Any) -> bytes:
    return _key(key) + _ld(b"\x12", _any_value(value))


_ENCODED: dict[tuple[bytes, str, type, Any], bytes] = {}
"""Encoded attributes with short values, by (tag, key, type, value): methods, status codes, pod
names, annotation lists repeat across spans; a dict lookup costs a tenth of encoding one."""
_ENCODED_MAX = 16384


def _attributes(tag: bytes, attributes: Attributes) -> bytes:
    out = []
    cache = _ENCODED
    for k, v in attributes.items():
        t = type(v)
        if (t is str and len(v) <= 64) or t is int or t is bool or t is tuple:
            key = (tag, k, t, v)
            encoded = cache.get(key)
            if encoded is None:
                encoded = _ld(tag, _key_value(k, v))
                if len(cache) >= _ENCODED_MAX:
                    cache.clear()
                cache[key] = encoded
            out.append(encoded)
        else:
            out.append(_ld(tag, _key_value(k, v)))
    return b"".join(out)


def encode_span(span: Span) -> bytes:
    """One ``Span`` message (the field's payload, without its tag)."""
    parts = [
        b"\x0a\x10" + bytes.fromhex(span.trace_id),
        b"\x12\x08" + bytes.fromhex(span.span_id),
    ]
    if span.trace_state:
        parts.append(_ld(b"\x1a", span.trace_state.encode()))
    if span.parent_span_id:
        parts.append(b"\x22\x08" + bytes.fromhex(span.parent_span_id))
    parts.append(_ld(b"\x2a", span.name.encode()))
    if span.kind:
        parts.append(b"\x30" + _varint(span.kind))
    parts.append(b"\x39" + _pack_fixed64(span.start_ns))
    parts.append(b"\x41" + _pack_fixed64(span.end_ns))
    if span.attributes:
        parts.append(_attributes(b"\x4a", span.attributes))
    for event in span.events:
        body = b"\x09" + _pack_fixed64(event.time_ns) + _ld(b"\x12", event.name.encode())
        parts.append(_ld(b"\x5a", body + _attributes(b"\x1a", event.attributes)))
    if span.status_code or span.status_message:
        status_body = b""
        if span.status_message:
            status_body += _ld(b"\x12", span.status_message.encode())
        if span.status_code:
            status_body += b"\x18" + _varint(span.status_code)
        parts.append(_ld(b"\x7a", status_body))
    return b"".join(parts)


def encode_resource(resource: Attributes) -> bytes:
    """A resource's attributes as the ``Resource`` message holds them (the message's payload)."""
    return _attributes(b"\x0a", resource)


def span_field(span: bytes) -> bytes:
    """An encoded span as one ``ScopeSpans.spans`` field (tag and length before it)."""
    return _ld(b"\x12", span)


def encode_resource_spans(resource: Attributes, spans: Iterable[bytes], scope: str = "k8sxray") -> bytes:
    """One ``ResourceSpans`` field of a request (tag included) from already encoded spans."""
    return resource_spans_field(encode_resource(resource), [span_field(s) for s in spans], scope)


def resource_spans_field(resource: bytes, span_fields: Iterable[bytes], scope: str = "k8sxray") -> bytes:
    """One ``ResourceSpans`` field from an encoded resource (:func:`encode_resource`) and spans each
    already a ``ScopeSpans.spans`` field (:func:`span_field`)."""
    scope_spans = _ld(b"\x0a", _ld(b"\x0a", scope.encode())) + b"".join(span_fields)
    return _ld(b"\x0a", _ld(b"\x0a", resource) + _ld(b"\x12", scope_spans))


def decode_resource(data: bytes) -> Attributes:
    """The attributes :func:`encode_resource` wrote, for the values the C path writes: str, int,
    bool, float, None and lists of those."""
    out: Attributes = {}
    position = 0
    while position < len(data):
        if data[position] != 0x0A:
            raise DecodeError(f"not a resource attribute at byte {position}")
        key_value, position = _read_ld(data, position + 1)
        key, at = _read_ld(key_value, 1)
        value, _ = _read_ld(key_value, at + 1)
        out[key.decode()] = _decode_any(value)
    return out


def _decode_any(value: bytes) -> Any:
    """An ``AnyValue`` message's payload, as :func:`_any_value` wrote it."""
    if not value:
        return None
    tag = value[0]
    if tag == 0x0A:
        return _read_ld(value, 1)[0].decode()
    if tag == 0x10:
        return value[1:] != b"\x00"
    if tag == 0x18:
        n = _read_varint(value, 1)[0]
        return n - (1 << 64) if n >= 1 << 63 else n
    if tag == 0x21:
        return struct.unpack("<d", value[1:9])[0]
    if tag == 0x2A:
        items, position, out = _read_ld(value, 1)[0], 0, []
        while position < len(items):
            item, position = _read_ld(items, position + 1)
            out.append(_decode_any(item))
        return out
    raise DecodeError(f"a resource attribute of an unexpected type (tag {tag})")


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        byte = data[position]
        position += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return n, position


def _read_ld(data: bytes, position: int) -> tuple[bytes, int]:
    """The payload of the length-delimited field whose length is at ``position``, and what follows."""
    length, position = _read_varint(data, position)
    return data[position : position + length], position + length


def encode_request(groups: Iterable[tuple[Attributes, list[Span]]]) -> bytes:
    """An ``ExportTraceServiceRequest`` with one ``ResourceSpans`` per (resource, spans) group."""
    return b"".join(encode_resource_spans(r, [encode_span(s) for s in spans]) for r, spans in groups)
