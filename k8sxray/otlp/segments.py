"""Spans to X-Ray segment documents (what the daemon's OTLP receiver does with a request).

- Server and consumer spans, and spans with no parent, become **segments** named after the
  resource's ``service.name``, with its ``origin``, ``aws.eks``/``ec2``/``ecs`` and a ``k8s``
  metadata namespace. Client, producer and internal spans become **subsegments**: nested in the
  document of their parent when the parent came in the same request, else sent as their own
  ``type: subsegment`` document with ``trace_id`` and ``parent_id``.
- Client and producer spans take the ``remote`` namespace, or ``aws`` for an AWS SDK call
  (``rpc.system=aws-api``), which also fills ``aws.operation``, ``region``, ``request_id``,
  ``table_name``, ``queue_url``...; database spans fill ``sql``; HTTP attributes, current and
  older conventions alike, fill ``http``.
- ``exception`` events become ``cause``; status ERROR is a ``fault``, or an ``error`` when the HTTP
  status is 4xx (429 adds ``throttle``); an HTTP status flags the entity as X-Ray's SDKs do.
- Attributes named in ``aws.xray.annotations`` become annotations; the rest, metadata (namespace
  ``otel``); ``aws.xray.metadata.<ns>`` attributes (JSON) become metadata namespace ``<ns>``.

Spans with an invalid trace or span id are refused, counted by reason. A document nesting more
than :data:`MAX_DOCUMENT` bytes is sent as one document per entity instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import semconv as sc
from .model import (
    KIND_CLIENT,
    KIND_CONSUMER,
    KIND_NAMES,
    KIND_PRODUCER,
    KIND_SERVER,
    STATUS_ERROR,
    Attributes,
    Span,
)

MAX_DOCUMENT = 62 * 1024
"""A segment document larger than this (X-Ray's limit is 64 KB) is split into its entities."""
MAX_FRAMES = 50

_NS = 1_000_000_000
_PRIMITIVE = (str, bool, int, float)
_PYTHON_FRAME = re.compile(r'^\s*File "(?P<path>[^"]*)", line (?P<line>\d+)(?:, in (?P<label>.*))?$')
_AT_FRAME = re.compile(r"^\s*at (?:(?P<label>[^()]*?) ?\()?(?P<path>[^()]+?):(?P<line>\d+)(?::\d+)?\)?$")


@dataclass
class Converted:
    """The documents made from a set of spans, and the spans refused, by reason."""

    documents: list[bytes] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    spans: int = 0
    """Spans converted."""


def convert(spans: Iterable[Span]) -> Converted:
    """Segment documents (JSON bytes, one per X-Ray document) for ``spans``."""
    out = Converted()
    entities: dict[tuple[str, str], dict[str, Any]] = {}
    parents: dict[tuple[str, str], tuple[str, str]] = {}
    roots: list[tuple[str, str]] = []
    resources: dict[int, _Resource] = {}
    for span in spans:
        if not sc.is_hex(span.trace_id, 32):
            out.rejected["invalid_trace_id"] += 1
            continue
        if not sc.is_hex(span.span_id, 16):
            out.rejected["invalid_span_id"] += 1
            continue
        key = (span.trace_id, span.span_id)
        if key in entities:
            out.rejected["duplicate_span_id"] += 1
            continue
        parent = span.parent_span_id if sc.is_hex(span.parent_span_id, 16) else ""
        segment = span.kind in (KIND_SERVER, KIND_CONSUMER) or not parent
        if segment:
            resource = resources.get(id(span.resource))
            if resource is None:
                resource = resources[id(span.resource)] = _Resource(span.resource)
            entity = _segment(span, resource)
            roots.append(key)
        else:
            entity = _subsegment(span)
            parents[key] = (span.trace_id, parent)
        entity["trace_id"] = sc.xray_trace_id(span.trace_id)
        if parent:
            entity["parent_id"] = parent
        entities[key] = entity
        out.spans += 1
    _assemble(out, entities, parents, roots)
    return out


def _assemble(
    out: Converted,
    entities: dict[tuple[str, str], dict[str, Any]],
    parents: dict[tuple[str, str], tuple[str, str]],
    roots: list[tuple[str, str]],
) -> None:
    """Nest subsegments in their parents' documents; add the documents to ``out``."""
    children: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key, parent_key in parents.items():
        if parent_key in entities:
            children.setdefault(parent_key, []).append(key)
        else:
            roots.append(key)
    placed: set[tuple[str, str]] = set()
    for key in roots:
        out.documents.extend(_documents(key, entities, children, placed))
    for key, entity in entities.items():
        if key not in placed:  # a parent chain that loops: each entity on its own
            out.documents.append(_dump(_top(entity)))


def _documents(
    root: tuple[str, str],
    entities: dict[tuple[str, str], dict[str, Any]],
    children: dict[tuple[str, str], list[tuple[str, str]]],
    placed: set[tuple[str, str]],
) -> list[bytes]:
    """The document of ``root`` with its descendants nested; one document per entity instead when
    that would be larger than :data:`MAX_DOCUMENT`."""
    doc = entities[root]
    nested: list[tuple[tuple[str, str], tuple[str, str]]] = []
    stack = [root]
    placed.add(root)
    while stack:
        key = stack.pop()
        for child in children.get(key, ()):
            if child in placed:
                continue
            placed.add(child)
            entity = entities[child]
            del entity["trace_id"], entity["parent_id"]
            entities[key].setdefault("subsegments", []).append(entity)
            nested.append((key, child))
            stack.append(child)
    data = _dump(_top(doc))
    if len(data) <= MAX_DOCUMENT or not nested:
        return [data]
    doc.pop("subsegments", None)
    docs = [_dump(doc)]
    for parent, key in nested:
        entity = entities[key]
        entity.pop("subsegments", None)
        entity["trace_id"] = sc.xray_trace_id(key[0])
        entity["parent_id"] = parent[1]
        docs.append(_dump(_top(entity)))
    return docs


def _top(entity: dict[str, Any]) -> dict[str, Any]:
    """An entity as a document of its own: a segment as it is, a subsegment with ``type``."""
    if not entity.pop("_segment", False):
        entity["type"] = "subsegment"
    return entity


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=_jsonable).encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class _Resource:
    """What a resource gives every segment of it: name, origin, ``aws`` objects, metadata."""

    __slots__ = ("aws", "metadata", "name", "origin", "version")

    def __init__(self, attributes: Attributes) -> None:
        rest = dict(attributes)
        self.name = sc.entity_name(str(rest.pop(sc.SERVICE_NAME, "") or sc.UNKNOWN_SERVICE))
        self.version = rest.pop("service.version", None)
        platform = rest.get("cloud.platform")
        provider = rest.get("cloud.provider")
        aws: dict[str, Any] = {}

        def take(obj: str) -> None:
            values = {f: rest.pop(a) for f, a in sc.RESOURCE_AWS[obj] if a in rest}
            if values:
                aws[obj] = values

        if platform == "aws_ecs":
            take("ecs")
        elif platform == "aws_eks" or "k8s.pod.name" in rest or "k8s.cluster.name" in rest:
            take("eks")
        host = rest.get("host.id")
        if host is not None and (platform == "aws_ec2" or (provider == "aws" and str(host).startswith("i-"))):
            take("ec2")
        take("xray")
        account = rest.pop("cloud.account.id", None)
        if account is not None:
            aws["account_id"] = account
        k8s: dict[str, Any] = {f: rest.pop(a) for f, a in sc.RESOURCE_K8S if a in rest}
        for kind in sc.WORKLOADS:
            name = rest.pop(f"k8s.{kind.lower()}.name", None)
            if name is not None and "workload" not in k8s:
                k8s["workload"] = {"kind": kind, "name": name, "source": "otel"}
        labels = {a[len(sc.LABEL_PREFIX) :]: rest.pop(a) for a in list(rest) if a.startswith(sc.LABEL_PREFIX)}
        if labels:
            k8s["labels"] = labels
        origin = sc.ORIGINS.get(platform) if isinstance(platform, str) else None
        if origin is None and "eks" in aws:
            origin = sc.ORIGINS["aws_eks"]
        if origin is not None:
            rest.pop("cloud.platform", None)
            if provider == "aws":
                del rest["cloud.provider"]
        self.origin = origin
        self.aws = aws
        self.metadata: dict[str, Any] = {}
        if k8s:
            self.metadata["k8s"] = k8s
        if rest:
            self.metadata[sc.RESOURCE_NAMESPACE] = rest


def _segment(span: Span, resource: _Resource) -> dict[str, Any]:
    attributes = dict(span.attributes)
    doc = _entity(span, resource.name, attributes)
    doc["_segment"] = True
    if resource.origin:
        doc["origin"] = resource.origin
    if resource.version is not None:
        doc["service"] = {"version": str(resource.version)}
    user = attributes.pop("enduser.id", None)
    if user is not None:
        doc["user"] = str(user)
    if resource.aws:
        doc["aws"] = {k: dict(v) if isinstance(v, dict) else v for k, v in resource.aws.items()}
    _finish(span, doc, attributes, server=True)
    if resource.metadata:
        metadata = doc.setdefault("metadata", {})
        for ns, values in resource.metadata.items():
            metadata.setdefault(ns, values)
    return doc


def _subsegment(span: Span) -> dict[str, Any]:
    attributes = dict(span.attributes)
    remote = span.kind in (KIND_CLIENT, KIND_PRODUCER)
    aws_call = attributes.get("rpc.system") == "aws-api"
    doc = _entity(span, _subsegment_name(span, attributes, remote, aws_call), attributes)
    if aws_call:
        doc["namespace"] = "aws"
        doc["aws"] = _aws_call(attributes)
    elif remote:
        doc["namespace"] = "remote"
    _finish(span, doc, attributes, server=False)
    return doc


def _entity(span: Span, name: str, attributes: Attributes) -> dict[str, Any]:
    start = span.start_ns
    end = max(span.end_ns, start)
    doc: dict[str, Any] = {"name": name, "id": span.span_id, "start_time": start / _NS, "end_time": end / _NS}
    otel: dict[str, Any] = {}
    if span.name != name:
        otel["span.name"] = span.name
    if span.kind in (KIND_PRODUCER, KIND_CONSUMER):
        otel["span.kind"] = KIND_NAMES[span.kind]
    if otel:
        doc["metadata"] = {sc.OTEL_NAMESPACE: otel}
    return doc


def _subsegment_name(  # noqa: PLR0911 - one return per naming rule, in order
    span: Span, a: Attributes, remote: bool, aws_call: bool
) -> str:
    if aws_call:
        service = a.pop("rpc.service", None)
        return sc.entity_name(str(service)) if service else sc.entity_name(span.name)
    if not remote:
        return sc.entity_name(span.name)
    peer = a.pop("peer.service", None)
    if peer:
        return sc.entity_name(str(peer))
    host = a.get("server.address") or a.get("net.peer.name")
    database = a.get("db.namespace") or a.get("db.name")
    if database and host:
        return sc.entity_name(f"{database}@{host}")
    if database or host:
        return sc.entity_name(str(database or host))
    url = a.get("url.full") or a.get("http.url")
    if isinstance(url, str):
        netloc = urlsplit(url).hostname
        if netloc:
            return sc.entity_name(netloc)
    return sc.entity_name(span.name)


def _take(a: Attributes, *names: str) -> Any:
    """The first of ``names`` present in ``a``; all of them are removed."""
    found = None
    for name in names:
        value = a.pop(name, None)
        if found is None:
            found = value
    return found


def _int(value: Any) -> int | None:
    if type(value) is int:
        return value
    try:
        return int(value) if value is not None and type(value) is not bool else None
    except (TypeError, ValueError):
        return None


def _aws_call(a: Attributes) -> dict[str, Any]:
    a.pop("rpc.system", None)
    aws: dict[str, Any] = {}
    for name, attribute in sc.AWS_CALL:
        value = _take(a, attribute, *sc.AWS_CALL_OLDER.get(name, ()))
        if value is not None:
            aws[name] = value
    if "region" not in aws and "cloud.region" in a:
        aws["region"] = a.pop("cloud.region")
    tables = a.pop("aws.dynamodb.table_names", None)
    if isinstance(tables, list) and len(tables) == 1:
        aws["table_name"] = tables[0]
    elif isinstance(tables, list) and tables:
        aws["table_names"] = tables
    elif "aws.table_name" in a:
        aws["table_name"] = a.pop("aws.table_name")
    for key in [k for k in a if k.startswith("aws.") and not k.startswith("aws.xray.")]:
        value = a[key]
        if isinstance(value, _PRIMITIVE):
            aws[key[4:]] = a.pop(key)
    return aws


def _finish(span: Span, doc: dict[str, Any], a: Attributes, *, server: bool) -> None:
    """HTTP, SQL, flags, cause, annotations and metadata: what both kinds of entity take."""
    status = _http(doc, a, server)
    _sql(doc, a)
    if status is not None and 400 <= status < 500:
        doc["error"] = True
        if status == 429:
            doc["throttle"] = True
    elif status is not None and status >= 500:
        doc["fault"] = True
    if span.status_code == STATUS_ERROR and not (doc.get("fault") or doc.get("error")):
        doc["fault"] = True
    _cause(span, doc, remote=not server and span.kind in (KIND_CLIENT, KIND_PRODUCER))
    _annotations_and_metadata(span, doc, a)


def _annotations_and_metadata(span: Span, doc: dict[str, Any], a: Attributes) -> None:
    """Listed attributes to annotations, ``aws.xray.metadata.*`` to namespaces, the rest to ``otel``."""
    listed = a.pop(sc.ANNOTATIONS, None)
    if isinstance(listed, (list, tuple)):
        annotations: dict[str, Any] = {}
        for key in listed:
            if isinstance(key, str) and isinstance(a.get(key), _PRIMITIVE):
                annotations[sc.annotation_key(key)] = a.pop(key)
        if annotations:
            doc["annotations"] = annotations
    metadata: dict[str, Any] = doc.get("metadata") or {}
    for key in [k for k in a if k.startswith(sc.METADATA_PREFIX)]:
        namespace = key[len(sc.METADATA_PREFIX) :]
        try:
            value = json.loads(a[key]) if isinstance(a[key], str) else None
        except ValueError:
            continue
        if isinstance(value, dict) and namespace and not namespace.startswith("AWS."):
            metadata[namespace] = value
            del a[key]
    others = [e for e in span.events if e.name != "exception"]
    if others:
        a["events"] = [{"name": e.name, "time": e.time_ns / _NS, "attributes": e.attributes} for e in others]
    if a:
        metadata.setdefault(sc.OTEL_NAMESPACE, {}).update(a)
    if metadata:
        doc["metadata"] = metadata


def _http(doc: dict[str, Any], a: Attributes, server: bool) -> int | None:
    method = _take(a, "http.request.method", "http.method")
    url = _take(a, "url.full", "http.url")
    if url is None and server:
        url = _server_url(a)
    status = _int(_take(a, "http.response.status_code", "http.status_code"))
    agent = _take(a, "user_agent.original", "http.user_agent")
    forwarded = a.pop("http.client_ip", None)
    client = forwarded or a.pop("client.address", None)
    if client is None and server:
        client = _take(a, "net.sock.peer.addr", "net.peer.ip")
    length = _int(_take(a, "http.response.body.size", "http.response_content_length"))
    request: dict[str, Any] = {}
    if method is not None:
        request["method"] = str(method)
    if url is not None:
        request["url"] = str(url)
    if agent is not None:
        request["user_agent"] = str(agent)
    if client is not None:
        request["client_ip"] = str(client)
        if forwarded:
            request["x_forwarded_for"] = True
    response: dict[str, Any] = {}
    if status is not None:
        response["status"] = status
    if length is not None:
        response["content_length"] = length
    if request or response:
        http: dict[str, Any] = {}
        if request:
            http["request"] = request
        if response:
            http["response"] = response
        doc["http"] = http
    return status


def _server_url(a: Attributes) -> str | None:
    """A server span's URL from its parts (url.scheme + server.address + url.path + url.query, or
    the older http.scheme + http.host + http.target), when it has a path."""
    path = a.get("url.path")
    if path is not None:
        host = a.get("server.address") or a.get("http.host") or a.get("net.host.name")
        if not host:
            return None
        scheme = a.get("url.scheme") or "http"
        port = _int(a.get("server.port"))
        default = {"http": 80, "https": 443}.get(str(scheme))
        netloc = f"{host}:{port}" if port and port != default and ":" not in str(host) else str(host)
        query = a.get("url.query")
        for name in ("url.path", "url.scheme", "url.query"):
            a.pop(name, None)
        return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")
    target = a.get("http.target")
    host = a.get("http.host") or a.get("net.host.name")
    if target is None or not host:
        return None
    scheme = a.pop("http.scheme", None) or "http"
    a.pop("http.target", None)
    a.pop("http.host", None)
    return f"{scheme}://{host}{target}"


def _sql(doc: dict[str, Any], a: Attributes) -> None:
    system = _take(a, "db.system.name", "db.system")
    if system is None:
        return
    sql: dict[str, Any] = {"database_type": system}
    query = _take(a, "db.query.text", "db.statement")
    if query is not None:
        sql["sanitized_query"] = query
    user = a.pop("db.user", None)
    if user is not None:
        sql["user"] = user
    url = a.pop("db.connection_string", None)
    database = _take(a, "db.namespace", "db.name")
    if url is None:
        host = a.get("server.address") or a.get("net.peer.name")
        port = a.get("server.port") or a.get("net.peer.port")
        where = f"{host}:{port}" if host and port else host
        url = f"{where}/{database}" if where and database else (where or database)
    if url is not None:
        sql["url"] = url
    for key in [k for k in a if k.startswith(sc.SQL_PREFIX)]:
        sql[key[len(sc.SQL_PREFIX) :]] = a.pop(key)
    doc["sql"] = sql


def _cause(span: Span, doc: dict[str, Any], remote: bool) -> None:
    exceptions = []
    for index, event in enumerate(span.events):
        if event.name != "exception":
            continue
        ea = event.attributes
        exception: dict[str, Any] = {"id": _exception_id(span.span_id, index)}
        if ea.get("exception.type") is not None:
            exception["type"] = str(ea["exception.type"])
        if ea.get("exception.message") is not None:
            exception["message"] = str(ea["exception.message"])
        stack = parse_stack(ea.get("exception.stacktrace"))
        if stack:
            exception["stack"] = stack
        if remote:
            exception["remote"] = True
        exceptions.append(exception)
    if not exceptions and span.status_code == STATUS_ERROR and span.status_message:
        exceptions.append({"id": _exception_id(span.span_id, -1), "message": span.status_message})
    if exceptions:
        doc["cause"] = {"exceptions": exceptions}


def _exception_id(span_id: str, index: int) -> str:
    """The same id for the same exception of the same span, however often it is converted."""
    return hashlib.blake2b(f"{span_id}/{index}".encode(), digest_size=8).hexdigest()


def parse_stack(text: Any) -> list[dict[str, Any]]:
    """Stack frames (innermost first) from a Python traceback or a Java/JavaScript ``at`` trace;
    empty when the text has neither form."""
    if not isinstance(text, str) or not text:
        return []
    frames: list[dict[str, Any]] = []
    python = False
    for line in text.splitlines():
        match = _PYTHON_FRAME.match(line)
        if match is not None:
            python = True
        else:
            match = _AT_FRAME.match(line)
        if match is None:
            continue
        frame: dict[str, Any] = {"path": match["path"], "line": int(match["line"])}
        if match["label"]:
            frame["label"] = match["label"]
        frames.append(frame)
    if python:
        frames.reverse()  # a Python traceback lists the innermost call last
    return frames[:MAX_FRAMES]
