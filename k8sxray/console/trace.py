"""One assembled trace reduced to the facts every query needs (the trace model of the console).

Input: the segment documents of one trace, as dicts parsed from JSON, with separately sent
subsegments already inside their parent's ``subsegments`` and in-progress documents replaced by
their completed ones where those arrived. Output: :func:`trace_facts`, a :class:`Facts` record,
built once at ingest, that the store keeps as one JSON column, so that no query re-reads a document.
Nothing here does I/O or SQL.

The facts record (a dict; after a JSON round trip its tuples are lists, and every reader here
accepts both):

``v``            format version (:data:`FACTS_VERSION`)
``id``           trace id
``start`` ``end`` ``duration``  epoch seconds, over all segments; ``duration = end - start``
``response_time``  the entry segment's ``end - start`` (None without an entry segment)
``flags``        trace-level :data:`ERROR` | :data:`THROTTLE` | :data:`FAULT` bits, as X-Ray's
                 summary has them: error and fault from the entry (root) segment, throttle from any
                 segment; ``0`` is ok
``partial``      a segment's parent is missing or a document is still in progress
``http``         the entry segment's ``[url, method, status, user_agent, client_ip]`` (None if absent)
``services``     distinct ``[name, type]`` of the trace (type ``""`` when the segment has no
                 ``origin``), inferred services included; other fields point into it by index
``entry``        index in ``services`` of the entry point, or None
``annotations``  ``{key: [[value, [service index, ...]], ...]}``
``users``        ``[[user, [service index, ...]], ...]``
``arns`` ``instance_ids`` ``azs``  lists of strings
``fault_root_causes`` ``error_root_causes``  already in botocore's ``FaultRootCauses`` /
                 ``ErrorRootCauses`` shape (a subset: one service per cause, with its entity path)
``revision``     number of documents the facts were built from
``nodes``        node rows (below), one per segment and one per inferred downstream call
``node_info``    parallel to ``nodes``: a small dict of what filters ask a node for (``a``
                 annotations ``{key: value}``, ``u`` user, ``h`` http list as above, ``m`` exception
                 messages, ``x`` exception names, ``az``, ``iid``, ``arn``); absent keys are empty
``edges``        edge rows (below), one per call

Node row, a flat tuple of scalars in :data:`NODE_COLUMNS` order::

    (name, type, start, end, response_time, duration, flags, root, inferred)

``type`` is the segment's ``origin`` or ``""``, ``"remote"`` for an inferred call to an uninstrumented
host, ``AWS::<Service>`` or a resource type (``AWS::DynamoDB::Table``, ``AWS::S3::Bucket``,
``AWS::SQS::Queue``) for an inferred AWS call; ``response_time = end - start`` of that segment or call;
``duration`` is the whole trace's duration; ``flags`` the :data:`ERROR`/:data:`THROTTLE`/:data:`FAULT`
bits of that segment (from its flags and its HTTP status); ``root`` and ``inferred`` are 0 or 1.
A service in the graph sense is a distinct ``(name, type)``; a trace in which A calls B twice has two
B rows, so counts are counts of requests, as X-Ray's statistics are.

Edge row, a flat tuple in :data:`EDGE_COLUMNS` order::

    (src_name, src_type, dst_name, dst_type, start, end, response_time, flags)

timed and flagged from the caller's side (its subsegment), as X-Ray draws edges. The entry segment
hangs off a ``client`` node: ``(entry name, "client", entry name, entry type, ...)``.

:func:`trace_summary` renders the facts as botocore's ``TraceSummary``; the service graph of one or
more traces (``GetTraceGraph``) is :func:`k8sxray.console.graph.trace_graph` over their facts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypedDict

logger = logging.getLogger(__name__)

FACTS_VERSION = 1

ERROR = 1
"""A 4xx: the segment's ``error`` flag or status 400-499."""
THROTTLE = 2
"""A 429: the segment's ``throttle`` flag or status 429 (always with :data:`ERROR` from a status)."""
FAULT = 4
"""A 5xx: the segment's ``fault`` flag or status 500-599."""

NODE_COLUMNS = ("name", "type", "start", "end", "response_time", "duration", "flags", "root", "inferred")
"""The fields of a node row, in order."""
EDGE_COLUMNS = ("src_name", "src_type", "dst_name", "dst_type", "start", "end", "response_time", "flags")
"""The fields of an edge row, in order."""

CLIENT = "client"
"""The type of the node a trace's entry segment hangs off."""
REMOTE = "remote"
"""The type of an inferred node for a call to a host that sent no segment."""

NodeRow = tuple[str, str, float, float, float, float, int, int, int]
EdgeRow = tuple[str, str, str, str, float, float, float, int]

_MAX_DEPTH = 64
"""Subsegments nested deeper than this are not walked (documents are at most 64 KB anyway)."""

# botocore service id (the aws subsegment's name, compared lowercased) ->
# (node name when no resource is named, node type, resource field, resource type)
_AWS_RESOURCES: Mapping[str, tuple[str, str, str, str]] = {
    "dynamodb": ("DynamoDB", "AWS::DynamoDB", "table_name", "AWS::DynamoDB::Table"),
    "s3": ("S3", "AWS::S3", "bucket_name", "AWS::S3::Bucket"),
    "sqs": ("SQS", "AWS::SQS", "queue_url", "AWS::SQS::Queue"),
    "sns": ("SNS", "AWS::SNS", "", ""),
    "lambda": ("Lambda", "AWS::Lambda", "function_name", "AWS::Lambda"),
}


class Facts(TypedDict):
    """What the queries need of one trace; see the module docstring for each field."""

    v: int
    id: str
    start: float
    end: float
    duration: float
    response_time: float | None
    flags: int
    partial: bool
    http: list[Any]
    services: list[list[str]]
    entry: int | None
    annotations: dict[str, list[list[Any]]]
    users: list[list[Any]]
    arns: list[str]
    instance_ids: list[str]
    azs: list[str]
    fault_root_causes: list[dict[str, Any]]
    error_root_causes: list[dict[str, Any]]
    revision: int
    nodes: list[NodeRow]
    node_info: list[dict[str, Any]]
    edges: list[EdgeRow]


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


_NOTHING: Mapping[str, Any] = {}


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else _NOTHING


def _subsegments(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    subs = doc.get("subsegments")
    if not isinstance(subs, list):
        return []
    return [s for s in subs if isinstance(s, dict)]


def _walk(doc: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every subsegment below ``doc``, depth first, at most :data:`_MAX_DEPTH` levels down."""
    stack: list[tuple[Mapping[str, Any], int]] = [(s, 1) for s in reversed(_subsegments(doc))]
    while stack:
        sub, depth = stack.pop()
        yield sub
        if depth < _MAX_DEPTH:
            stack.extend((s, depth + 1) for s in reversed(_subsegments(sub)))


def _http(doc: Mapping[str, Any]) -> list[Any]:
    http = _map(doc.get("http"))
    request = _map(http.get("request"))
    response = _map(http.get("response"))
    status = response.get("status")
    return [
        _str(request.get("url")),
        _str(request.get("method")),
        status if isinstance(status, int) and not isinstance(status, bool) else None,
        _str(request.get("user_agent")),
        _str(request.get("client_ip")),
    ]


def _flags(doc: Mapping[str, Any]) -> int:
    flags = 0
    if doc.get("error") is True:
        flags |= ERROR
    if doc.get("throttle") is True:
        flags |= THROTTLE
    if doc.get("fault") is True:
        flags |= FAULT
    status = _map(_map(doc.get("http")).get("response")).get("status")
    if isinstance(status, int):
        if status == 429:
            flags |= ERROR | THROTTLE
        elif 400 <= status < 500:
            flags |= ERROR
        elif 500 <= status < 600:
            flags |= FAULT
    return flags


def _times(doc: Mapping[str, Any]) -> tuple[float, float]:
    """Start and end; a document still in progress ends at its latest known child end (or its start)."""
    start = _num(doc.get("start_time")) or 0.0
    end = _num(doc.get("end_time"))
    if end is None:
        end = start
        for sub in _walk(doc):
            sub_end = _num(sub.get("end_time"))
            if sub_end is not None and sub_end > end:
                end = sub_end
    return start, max(start, end)


def _span(start: float, end: float) -> float:
    """``end - start`` to the microsecond (epoch floats carry noise below that)."""
    return round(end - start, 6)


def _exceptions(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    cause = doc.get("cause")
    if not isinstance(cause, dict):
        return []  # absent, or the id of an exception recorded on a child
    excs = cause.get("exceptions")
    if not isinstance(excs, list):
        return []
    return [e for e in excs if isinstance(e, dict)]


def _annotation_value(value: object) -> bool | float | str | None:
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _inferred_id(sub: Mapping[str, Any]) -> tuple[str, str]:
    """The (name, type) X-Ray gives the node it infers for a downstream call nobody answered."""
    name = _str(sub.get("name")) or "unknown"
    if sub.get("namespace") != "aws":
        return name, REMOTE
    known = _AWS_RESOURCES.get(name.lower())
    if known is None:
        return name, f"AWS::{name}"
    generic_name, generic_type, field, resource_type = known
    resource = _str(_map(sub.get("aws")).get(field)) if field else None
    if resource:
        if field == "queue_url":
            resource = resource.rstrip("/").rsplit("/", 1)[-1]
        return resource, resource_type
    return generic_name, generic_type


class _Builder:
    """Collects one trace's facts; :func:`trace_facts` is its only user."""

    def __init__(self) -> None:
        self.services: dict[tuple[str, str], int] = {}
        self.nodes: list[list[Any]] = []  # node rows, duration filled in at the end
        self.info: list[dict[str, Any]] = []
        self.edges: list[EdgeRow] = []
        self.children: list[list[int]] = []  # per node: the nodes it called
        self.paths: list[list[Mapping[str, Any]]] = []  # per node: its segment or subsegment
        self.annotations: dict[str, dict[tuple[str, object], tuple[object, set[int]]]] = {}
        self.users: dict[str, set[int]] = {}
        self.arns: dict[str, None] = {}
        self.instance_ids: dict[str, None] = {}
        self.azs: dict[str, None] = {}

    def service(self, name: str, type_: str) -> int:
        return self.services.setdefault((name, type_), len(self.services))

    def node(self, doc: Mapping[str, Any], name: str, type_: str, root: bool, inferred: bool) -> int:
        start, end = _times(doc)
        index = len(self.nodes)
        row = [name, type_, start, end, _span(start, end), 0.0, _flags(doc), int(root), int(inferred)]
        self.nodes.append(row)
        self.info.append({})
        self.children.append([])
        self.paths.append([doc])
        self.service(name, type_)
        return index

    def describe(self, index: int, doc: Mapping[str, Any]) -> None:
        """Record what filters ask of a node from one of its documents (a segment or a subsegment)."""
        info = self.info[index]
        service = self.service(self.nodes[index][0], self.nodes[index][1])
        annotations = doc.get("annotations")
        if isinstance(annotations, dict):
            for key, raw in annotations.items():
                value = _annotation_value(raw)
                if not isinstance(key, str) or value is None:
                    continue
                info.setdefault("a", {})[key] = value
                per_key = self.annotations.setdefault(key, {})
                _, services = per_key.setdefault((type(value).__name__, value), (value, set()))
                services.add(service)
        for exc in _exceptions(doc):
            message = _str(exc.get("message"))
            if message is not None:
                info.setdefault("m", []).append(message)
            kind = _str(exc.get("type"))
            if kind is not None:
                info.setdefault("x", []).append(kind)

    def segment_fields(self, index: int, doc: Mapping[str, Any]) -> None:
        info = self.info[index]
        service = self.service(self.nodes[index][0], self.nodes[index][1])
        http = _http(doc)
        if any(v is not None for v in http):
            info["h"] = http
        user = _str(doc.get("user"))
        if user:
            info["u"] = user
            self.users.setdefault(user, set()).add(service)
        arn = _str(doc.get("resource_arn"))
        if arn:
            info["arn"] = arn
            self.arns[arn] = None
        ec2 = _map(_map(doc.get("aws")).get("ec2"))
        instance_id = _str(ec2.get("instance_id"))
        if instance_id:
            info["iid"] = instance_id
            self.instance_ids[instance_id] = None
        zone = _str(ec2.get("availability_zone"))
        if zone:
            info["az"] = zone
            self.azs[zone] = None


def _parent_links(
    segments: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, int], dict[str, Mapping[str, Any]]]:
    """Which segment owns each id (its own, and every subsegment's), and the subsegments by id."""
    owner: dict[str, int] = {}
    subs: dict[str, Mapping[str, Any]] = {}
    for index, seg in enumerate(segments):
        seg_id = _str(seg.get("id"))
        if seg_id:
            owner.setdefault(seg_id, index)
        for sub in _walk(seg):
            sub_id = _str(sub.get("id"))
            if sub_id:
                owner.setdefault(sub_id, index)
                subs.setdefault(sub_id, sub)
    return owner, subs


def _answered(sub: Mapping[str, Any], called: set[str]) -> bool:
    """Whether a segment of the trace answered this call (names it or a subsegment below it as parent)."""
    if _str(sub.get("id")) in called:
        return True
    return any(_str(s.get("id")) in called for s in _walk(sub))


class _Links:
    """Who called whom: a segment's ``parent_id`` names a subsegment (or the segment) of its caller."""

    def __init__(self, segs: Sequence[Mapping[str, Any]]) -> None:
        owner, self.subs_by_id = _parent_links(segs)
        self.caller: dict[int, int] = {}
        self.orphans: list[int] = []
        self.roots: list[int] = []
        for index, seg in enumerate(segs):
            parent = _str(seg.get("parent_id"))
            if parent is None:
                self.roots.append(index)
            elif parent in owner and owner[parent] != index:
                self.caller[index] = owner[parent]
            else:
                self.orphans.append(index)
        if not self.roots and self.orphans:
            self.roots.append(self.orphans[0])  # the earliest segment whose caller never arrived stands in
        self.called = {_str(segs[i].get("parent_id")) or "" for i in self.caller}


def _calls(build: _Builder, node: int, seg: Mapping[str, Any], called: set[str]) -> None:
    """A segment's subsegments: their annotations and exceptions, and inferred nodes for unanswered calls."""
    stack: list[tuple[Mapping[str, Any], int, bool]] = [(s, 1, False) for s in _subsegments(seg)]
    while stack:
        sub, depth, inside_call = stack.pop()
        build.describe(node, sub)
        if not inside_call and sub.get("namespace") in ("remote", "aws") and not _answered(sub, called):
            name, type_ = _inferred_id(sub)
            inferred = build.node(sub, name, type_, False, True)
            build.describe(inferred, sub)
            call_http = _http(sub)
            if any(v is not None for v in call_http):
                build.info[inferred]["h"] = call_http
            row, up = build.nodes[inferred], build.nodes[node]
            build.edges.append((up[0], up[1], name, type_, row[2], row[3], row[4], row[6]))
            build.children[node].append(inferred)
            build.paths[inferred] = [*build.paths[node], sub]
            inside_call = True
        if depth < _MAX_DEPTH:
            stack.extend((s, depth + 1, inside_call) for s in _subsegments(sub))


def _segment_edges(
    build: _Builder, segs: Sequence[Mapping[str, Any]], links: _Links, seg_node: list[int]
) -> None:
    """Edges between segments, timed from the caller's side; the entry hangs off a client node."""
    for index, seg in enumerate(segs):
        node = build.nodes[seg_node[index]]
        name, type_ = node[0], node[1]
        if index in links.caller:
            up = seg_node[links.caller[index]]
            via = links.subs_by_id.get(_str(seg.get("parent_id")) or "")
            timed = via if via is not None else seg
            start, end = _times(timed)
            up_name, up_type = build.nodes[up][0], build.nodes[up][1]
            build.edges.append((up_name, up_type, name, type_, start, end, _span(start, end), _flags(timed)))
            build.children[up].append(seg_node[index])
        elif index in links.roots:
            build.edges.append((name, CLIENT, name, type_, node[2], node[3], node[4], node[6]))


def trace_facts(segments: Iterable[Mapping[str, Any]], revision: int | None = None) -> Facts:
    """The :class:`Facts` of one assembled trace (its segment documents, in any order).

    Raises ``ValueError`` when there is no segment document with an ``id`` and a numeric ``start_time``.
    """
    segs = [
        s
        for s in segments
        if isinstance(s, dict) and _str(s.get("id")) and _num(s.get("start_time")) is not None
    ]
    if not segs:
        raise ValueError("a trace needs at least one segment document with an id and a start_time")
    segs.sort(key=lambda s: _num(s.get("start_time")) or 0.0)
    links = _Links(segs)

    build = _Builder()
    seg_node: list[int] = []
    for index, seg in enumerate(segs):
        node = build.node(
            seg,
            _str(seg.get("name")) or "unknown",
            _str(seg.get("origin")) or "",
            index in links.roots,
            False,
        )
        seg_node.append(node)
        build.segment_fields(node, seg)
        build.describe(node, seg)
    for index, seg in enumerate(segs):
        _calls(build, seg_node[index], seg, links.called)
    _segment_edges(build, segs, links, seg_node)

    start = min(row[2] for row in build.nodes)
    end = max(row[3] for row in build.nodes)
    duration = _span(start, end)
    for row in build.nodes:
        row[5] = duration

    flags = THROTTLE if any(build.nodes[n][6] & THROTTLE for n in seg_node) else 0
    response_time = entry = None
    http: list[Any] = [None] * 5
    if links.roots:
        entry_row = build.nodes[seg_node[links.roots[0]]]
        flags |= entry_row[6] & (ERROR | FAULT)
        response_time = entry_row[4]
        http = _http(segs[links.roots[0]])
        entry = build.services[(entry_row[0], entry_row[1])]

    return Facts(
        v=FACTS_VERSION,
        id=next((t for t in (_str(s.get("trace_id")) for s in segs) if t), ""),
        start=start,
        end=end,
        duration=duration,
        response_time=response_time,
        flags=flags,
        partial=bool(links.orphans) or any(s.get("in_progress") is True for s in segs),
        http=http,
        services=[[name, type_] for name, type_ in build.services],
        entry=entry,
        annotations={
            key: [[value, sorted(services)] for value, services in values.values()]
            for key, values in build.annotations.items()
        },
        users=[[user, sorted(services)] for user, services in build.users.items()],
        arns=list(build.arns),
        instance_ids=list(build.instance_ids),
        azs=list(build.azs),
        fault_root_causes=_root_causes(build, FAULT, bool(flags & FAULT)),
        error_root_causes=_root_causes(build, ERROR, bool(flags & ERROR)),
        revision=len(segs) if revision is None else revision,
        nodes=[tuple(row) for row in build.nodes],
        node_info=build.info,
        edges=build.edges,
    )


def _entity(doc: Mapping[str, Any]) -> dict[str, Any]:
    entity: dict[str, Any] = {"Name": _str(doc.get("name")) or "unknown"}
    excs = _exceptions(doc)
    if excs:
        entity["Exceptions"] = [
            {k: v for k, v in (("Name", _str(e.get("type"))), ("Message", _str(e.get("message")))) if v}
            for e in excs
        ]
    remote = doc.get("namespace") in ("remote", "aws") or any(e.get("remote") is True for e in excs)
    entity["Remote"] = remote
    return entity


def _root_causes(build: _Builder, bit: int, client_impacting: bool) -> list[dict[str, Any]]:
    """Nodes with ``bit`` none of whose callees have it, each with the path down to where it happened."""
    causes: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, row in enumerate(build.nodes):
        if not row[6] & bit or any(build.nodes[c][6] & bit for c in build.children[index]):
            continue
        path = build.paths[index]
        doc = path[-1]
        entities = [_entity(doc)]
        if not row[8]:  # a segment: follow the first failing subsegment at each level
            level = doc
            for _ in range(_MAX_DEPTH):
                failing = next((s for s in _subsegments(level) if _flags(s) & bit), None)
                if failing is None:
                    break
                entities.append(_entity(failing))
                level = failing
        service: dict[str, Any] = {"Name": row[0], "Names": [row[0]], "EntityPath": entities}
        if row[1]:
            service["Type"] = row[1]
        service["Inferred"] = bool(row[8])
        key = repr(service)
        if key in seen:
            continue
        seen.add(key)
        causes.append({"Services": [service], "ClientImpacting": client_impacting})
    return causes


def service_id(facts: Mapping[str, Any], index: int) -> dict[str, Any]:
    """botocore's ``ServiceId`` for ``facts["services"][index]``."""
    name, type_ = facts["services"][index]
    out: dict[str, Any] = {"Name": name, "Names": [name]}
    if type_:
        out["Type"] = type_
    return out


def _annotation(value: object) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BooleanValue": value}
    if isinstance(value, (int, float)):
        return {"NumberValue": float(value)}
    return {"StringValue": str(value)}


def trace_summary(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The trace as botocore's ``TraceSummary`` (wire form: timestamps are epoch seconds)."""
    flags = facts["flags"]
    summary: dict[str, Any] = {
        "Id": facts["id"],
        "StartTime": facts["start"],
        "Duration": facts["duration"],
        "HasFault": bool(flags & FAULT),
        "HasError": bool(flags & ERROR),
        "HasThrottle": bool(flags & THROTTLE),
        "IsPartial": bool(facts["partial"]),
    }
    if facts["response_time"] is not None:
        summary["ResponseTime"] = facts["response_time"]
    http = {
        key: value
        for key, value in zip(
            ("HttpURL", "HttpMethod", "HttpStatus", "UserAgent", "ClientIp"), facts["http"], strict=True
        )
        if value is not None
    }
    if http:
        summary["Http"] = http
    summary["Annotations"] = {
        key: [
            {"AnnotationValue": _annotation(value), "ServiceIds": [service_id(facts, i) for i in services]}
            for value, services in values
        ]
        for key, values in facts["annotations"].items()
    }
    summary["Users"] = [
        {"UserName": user, "ServiceIds": [service_id(facts, i) for i in services]}
        for user, services in facts["users"]
    ]
    summary["ServiceIds"] = [service_id(facts, i) for i in range(len(facts["services"]))]
    summary["ResourceARNs"] = [{"ARN": arn} for arn in facts["arns"]]
    summary["InstanceIds"] = [{"Id": iid} for iid in facts["instance_ids"]]
    summary["AvailabilityZones"] = [{"Name": az} for az in facts["azs"]]
    if facts["entry"] is not None:
        summary["EntryPoint"] = service_id(facts, facts["entry"])
    summary["FaultRootCauses"] = facts["fault_root_causes"]
    summary["ErrorRootCauses"] = facts["error_root_causes"]
    summary["Revision"] = facts["revision"]
    return summary
