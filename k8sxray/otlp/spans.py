"""X-Ray segment documents to spans (what the daemon's OTLP sink sends), the inverse of ``segments``.

- Every segment and subsegment becomes one span with the same trace id (``1-`` and ``-`` removed),
  span id and parent id (a nested subsegment's parent is the entity it is nested in). Times go from
  seconds to nanoseconds exactly, so that converting back gives the same floats.
- A segment is a SERVER span: it is the work a service did for a request it received, and a
  backend must keep it as an entry into that service even without HTTP fields (a queue consumer,
  a job). A subsegment in the ``aws`` or ``remote`` namespace is a CLIENT span, any other one
  INTERNAL (the span kind recorded in the ``otel`` metadata namespace, if any, wins).
- ``http``, ``aws`` (of AWS SDK calls) and ``sql`` become attributes in the current semantic
  conventions; annotations become attributes also listed in ``aws.xray.annotations`` (so that X-Ray
  keeps them searchable); metadata namespace ``otel`` becomes plain attributes, any other namespace
  one JSON attribute ``aws.xray.metadata.<ns>``; exceptions become ``exception`` events; ``fault`` or
  ``error`` is status ERROR.
- Each segment's resource: ``service.name`` (the segment's name), ``service.version``, ``cloud.*``
  from ``origin``, ``k8s.*`` and ``container.id`` from ``aws.eks`` and the ``k8s`` metadata
  namespace, ``host.*`` from ``aws.ec2``. A subsegment sent on its own takes the resource of its
  segment when that was seen (:class:`Resources` remembers recent ones).

In-progress documents become no span (OTLP has no in-progress spans; the completed document
follows), but an in-progress segment still teaches :class:`Resources` its service.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from . import semconv as sc
from .codec import decode_resource
from .model import (
    KIND_CLIENT,
    KIND_INTERNAL,
    KIND_NAMES,
    KIND_SERVER,
    STATUS_ERROR,
    Attributes,
    Event,
    Span,
)

_KINDS = {name: number for number, name in enumerate(KIND_NAMES)}
_SCALAR = (str, bool, int, float)


class MappingError(ValueError):
    """A document that cannot become spans; ``reason`` is a short code for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Resources:
    """The resources of recently seen segments, by (trace id, entity id), for subsegments sent on
    their own. Bounded: the oldest entries are forgotten first.

    A resource is remembered as attributes or as encoded attributes (``codec.encode_resource``, as
    the C path writes them), decoded only when a subsegment asks for it."""

    def __init__(self, size: int = 16384) -> None:
        self.size = size
        self._known: dict[tuple[str, str], Attributes | bytes] = {}

    def remember(self, trace_id: str, entity_id: str, resource: Attributes | bytes) -> None:
        known = self._known
        if len(known) >= self.size:
            for key in list(known)[: self.size // 4]:
                known.pop(key, None)
        known[(trace_id, entity_id)] = resource

    def find(self, trace_id: str, entity_id: str) -> Attributes | None:
        found = self._known.get((trace_id, entity_id))
        if isinstance(found, bytes):
            decoded = self._known[(trace_id, entity_id)] = decode_resource(found)
            return decoded
        return found


def to_nanos(seconds: Any) -> int:
    """Epoch seconds (a float) as integer nanoseconds, rounded exactly (``n / 10**9`` gives the
    same float back)."""
    if type(seconds) is float and 0.0 <= seconds < 1e11:
        # the whole seconds, then the fraction (exact in a double) to the nearest nanosecond: within
        # half a nanosecond, far closer than the float's own spacing (~240 ns today)
        whole = int(seconds)
        return whole * 1_000_000_000 + round((seconds - whole) * 1e9)
    if type(seconds) is int:
        return seconds * 1_000_000_000
    if type(seconds) is not float:
        raise MappingError("bad_time", f"time is not a number: {seconds!r}")
    try:
        return round(Fraction(seconds) * 1_000_000_000)
    except (OverflowError, ValueError):
        raise MappingError("bad_time", f"time is not finite: {seconds!r}") from None


def convert(doc: Any, resources: Resources | None = None) -> list[Span]:
    """The spans of one segment document (a dict parsed from JSON). Raises MappingError."""
    if type(doc) is not dict:
        raise MappingError("not_object", "the document is not a JSON object")
    trace_id = sc.otlp_trace_id(doc.get("trace_id"))
    if trace_id is None:
        raise MappingError("bad_trace_id", f"bad trace_id {doc.get('trace_id')!r}")
    entity_id = doc.get("id")
    if not sc.is_hex(entity_id, 16):
        raise MappingError("bad_id", f"bad id {entity_id!r}")
    standalone = doc.get("type") == "subsegment"
    parent = doc.get("parent_id")
    if parent is not None and not sc.is_hex(parent, 16):
        raise MappingError("bad_parent_id", f"bad parent_id {parent!r}")
    if standalone:
        found = resources.find(trace_id, parent) if resources is not None and parent else None
        resource = found if found is not None else {sc.SERVICE_NAME: sc.UNKNOWN_SERVICE}
    else:
        resource = resource_of(doc)
    if resources is not None:
        resources.remember(trace_id, str(entity_id), resource)
    out: list[Span] = []
    if not doc.get("in_progress"):
        _walk(doc, trace_id, parent or "", not standalone, resource=resource, out=out, depth=0)
    return out


def resource_of(doc: Mapping[str, Any]) -> Attributes:
    """The resource attributes of a segment's service."""
    r: Attributes = {sc.SERVICE_NAME: str(doc.get("name") or sc.UNKNOWN_SERVICE)}
    service = doc.get("service")
    if type(service) is dict and service.get("version") is not None:
        r["service.version"] = str(service["version"])
    origin = doc.get("origin")
    platform = sc.PLATFORMS.get(origin) if isinstance(origin, str) else None
    aws = doc.get("aws")
    if platform is not None or type(aws) is dict:
        r["cloud.provider"] = "aws"
    if platform is not None:
        r["cloud.platform"] = platform
    if type(aws) is dict:
        for obj, pairs in sc.RESOURCE_AWS.items():
            values = aws.get(obj)
            if type(values) is dict:
                for field, attribute in pairs:
                    value = values.get(field)
                    if isinstance(value, _SCALAR):
                        r[attribute] = value
        if isinstance(aws.get("account_id"), str):
            r["cloud.account.id"] = aws["account_id"]
    metadata = doc.get("metadata")
    if type(metadata) is dict:
        _k8s_resource(metadata, r)
    return r


def _k8s_resource(metadata: dict[str, Any], r: Attributes) -> None:
    """Resource attributes from the ``k8s`` and ``otel.resource`` metadata namespaces."""
    k8s = metadata.get("k8s")
    if type(k8s) is dict:
        for field, attribute in sc.RESOURCE_K8S:
            if isinstance(k8s.get(field), _SCALAR):
                r[attribute] = k8s[field]
        workload = k8s.get("workload")
        if type(workload) is dict and workload.get("kind") in sc.WORKLOADS and workload.get("name"):
            r[f"k8s.{workload['kind'].lower()}.name"] = str(workload["name"])
        labels = k8s.get("labels")
        if type(labels) is dict:
            for key, value in labels.items():
                r[sc.LABEL_PREFIX + str(key)] = str(value)
    extra = metadata.get(sc.RESOURCE_NAMESPACE)
    if type(extra) is dict:
        for key, value in extra.items():
            r.setdefault(str(key), value)


def _walk(
    entity: dict[str, Any],
    trace_id: str,
    parent: str,
    segment: bool,
    *,
    resource: Attributes,
    out: list[Span],
    depth: int,
) -> None:
    if depth > 64:
        raise MappingError("too_deep", "subsegments nested more than 64 deep")
    span = _span(entity, trace_id, parent, segment, resource)
    out.append(span)
    subsegments = entity.get("subsegments")
    if type(subsegments) is list:
        for sub in subsegments:
            if type(sub) is not dict or sub.get("in_progress"):
                continue
            if not sc.is_hex(sub.get("id"), 16):
                raise MappingError("bad_id", f"bad subsegment id {sub.get('id')!r}")
            _walk(sub, trace_id, span.span_id, False, resource=resource, out=out, depth=depth + 1)


def _span(  # noqa: PLR0912 - one branch per X-Ray field
    entity: dict[str, Any], trace_id: str, parent: str, segment: bool, resource: Attributes
) -> Span:
    name = str(entity.get("name") or "")
    start = to_nanos(entity.get("start_time"))
    end = to_nanos(entity["end_time"]) if "end_time" in entity else start
    namespace = entity.get("namespace")
    a: Attributes = {}
    metadata = entity.get("metadata")
    otel = metadata.get(sc.OTEL_NAMESPACE) if type(metadata) is dict else None
    if segment:
        kind = KIND_SERVER
    elif namespace in ("aws", "remote"):
        kind = KIND_CLIENT
    else:
        kind = KIND_INTERNAL
    events: list[Event] = []
    if type(otel) is dict:
        name = str(otel.get("span.name", name))
        kind = _KINDS.get(str(otel.get("span.kind")), kind)
        for key, value in otel.items():
            if key == "events" and type(value) is list:
                events.extend(_event(e) for e in value if type(e) is dict)
            elif key not in ("span.name", "span.kind"):
                a[key] = value
    if namespace == "remote" and not segment:
        a["peer.service"] = str(entity.get("name") or "")
    http = entity.get("http")
    if type(http) is dict:
        _http(http, a)
    if namespace == "aws" and not segment:
        aws = entity.get("aws")
        _aws_call(entity, aws if type(aws) is dict else {}, a)
    sql = entity.get("sql")
    if type(sql) is dict:
        _sql(sql, a)
    user = entity.get("user")
    if segment and isinstance(user, str):
        a["enduser.id"] = user
    annotations = entity.get("annotations")
    if type(annotations) is dict and annotations:
        keys = [str(k) for k, v in annotations.items() if isinstance(v, _SCALAR)]
        for key in keys:
            a[key] = annotations[key]
        a[sc.ANNOTATIONS] = tuple(keys)
    if type(metadata) is dict:
        for namespace_name, values in metadata.items():
            if namespace_name in (sc.OTEL_NAMESPACE, sc.RESOURCE_NAMESPACE) or (
                segment and namespace_name == "k8s"
            ):
                continue
            a[sc.METADATA_PREFIX + str(namespace_name)] = json.dumps(
                values, separators=(",", ":"), ensure_ascii=False, default=str
            )
    status = STATUS_ERROR if entity.get("fault") or entity.get("error") else 0
    message = _exceptions(entity.get("cause"), end, events)
    return Span(
        trace_id=trace_id,
        span_id=str(entity["id"]),
        name=name,
        start_ns=start,
        end_ns=end,
        parent_span_id=parent,
        kind=kind,
        attributes=a,
        events=events,
        status_code=status,
        status_message=message if status else "",
        resource=resource,
    )


def _http(http: dict[str, Any], a: Attributes) -> None:
    request = http.get("request")
    if type(request) is dict:
        if request.get("method") is not None:
            a["http.request.method"] = str(request["method"])
        if request.get("url") is not None:
            a["url.full"] = str(request["url"])
        if request.get("user_agent") is not None:
            a["user_agent.original"] = str(request["user_agent"])
        if request.get("client_ip") is not None:
            # X-Ray's x_forwarded_for says the address came from that header: the older
            # convention's http.client_ip means exactly that, client.address does not
            forwarded = request.get("x_forwarded_for") is True
            a["http.client_ip" if forwarded else "client.address"] = str(request["client_ip"])
    response = http.get("response")
    if type(response) is dict:
        status = response.get("status")
        if type(status) is int:
            a["http.response.status_code"] = status
        length = response.get("content_length")
        if type(length) is int:
            a["http.response.body.size"] = length


def _aws_call(entity: dict[str, Any], aws: dict[str, Any], a: Attributes) -> None:
    a["rpc.system"] = "aws-api"
    a["rpc.service"] = str(entity.get("name") or "")
    known = {field for field, _ in sc.AWS_CALL}
    for field, attribute in sc.AWS_CALL:
        value = aws.get(field)
        if isinstance(value, _SCALAR):
            a[attribute] = value
    if isinstance(aws.get("table_name"), str):
        a["aws.dynamodb.table_names"] = [aws["table_name"]]
    elif type(aws.get("table_names")) is list:
        a["aws.dynamodb.table_names"] = [str(t) for t in aws["table_names"]]
    for key, value in aws.items():
        if key not in known and key not in ("table_name", "table_names") and isinstance(value, _SCALAR):
            a[f"aws.{key}"] = value


def _sql(sql: dict[str, Any], a: Attributes) -> None:
    fields = dict(sc.SQL)
    for key, value in sql.items():
        if not isinstance(value, _SCALAR):
            continue
        a[fields.get(key) or sc.SQL_PREFIX + str(key)] = value


def _exceptions(cause: Any, end: int, events: list[Event]) -> str:
    """``exception`` events for the exceptions of ``cause``; returns the first message."""
    if type(cause) is not dict or type(cause.get("exceptions")) is not list:
        return ""
    first = ""
    for exception in cause["exceptions"]:
        if type(exception) is not dict:
            continue
        attributes: Attributes = {}
        if exception.get("type") is not None:
            attributes["exception.type"] = str(exception["type"])
        if exception.get("message") is not None:
            attributes["exception.message"] = str(exception["message"])
            first = first or attributes["exception.message"]
        stack = exception.get("stack")
        if type(stack) is list and stack:
            attributes["exception.stacktrace"] = format_stack(attributes, stack)
        events.append(Event("exception", end, attributes))
    return first


def format_stack(attributes: Attributes, stack: list[Any]) -> str:
    """A stack trace in the ``at label (path:line)`` form, innermost frame first."""
    head = attributes.get("exception.type", "Exception")
    if "exception.message" in attributes:
        head = f"{head}: {attributes['exception.message']}"
    lines = [str(head)]
    for frame in stack:
        if type(frame) is dict:
            label = frame.get("label")
            where = f"{frame.get('path', '')}:{frame.get('line', 0)}"
            lines.append(f"    at {label} ({where})" if label else f"    at {where}")
    return "\n".join(lines)


def _event(data: dict[str, Any]) -> Event:
    time = data.get("time")
    attributes = data.get("attributes")
    return Event(
        str(data.get("name", "")),
        to_nanos(time) if type(time) in (int, float) else 0,
        dict(attributes) if type(attributes) is dict else {},
    )
