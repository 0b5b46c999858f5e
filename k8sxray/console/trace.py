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


_CALL_NAMESPACES = ("remote", "aws")
"""Namespaces of subsegments that call another service."""


def _status_flags(status: int) -> int:
    if status == 429:
        return ERROR | THROTTLE
    if 400 <= status < 500:
        return ERROR
    if 500 <= status < 600:
        return FAULT
    return 0


def _flags(doc: Mapping[str, Any]) -> int:
    """A document's :data:`ERROR` | :data:`THROTTLE` | :data:`FAULT` bits (its flags and HTTP status)."""
    flags = 0
    if doc.get("error") is True:
        flags = ERROR
    if doc.get("throttle") is True:
        flags |= THROTTLE
    if doc.get("fault") is True:
        flags |= FAULT
    http = doc.get("http")
    if isinstance(http, dict):
        response = http.get("response")
        if isinstance(response, dict):
            status = response.get("status")
            if isinstance(status, int):
                flags |= _status_flags(status)
    return flags


def _read(doc: Mapping[str, Any]) -> tuple[int, list[Any] | None]:
    """:func:`_flags`, and the document's ``[url, method, status, user_agent, client_ip]`` (None when it
    has none of them)."""
    flags = 0
    if doc.get("error") is True:
        flags = ERROR
    if doc.get("throttle") is True:
        flags |= THROTTLE
    if doc.get("fault") is True:
        flags |= FAULT
    http = doc.get("http")
    if not isinstance(http, dict):
        return flags, None
    response = http.get("response")
    status = response.get("status") if isinstance(response, dict) else None
    if isinstance(status, int) and not isinstance(status, bool):
        flags |= _status_flags(status)
    else:
        status = None
    request = http.get("request")
    if not isinstance(request, dict):
        return flags, (None if status is None else [None, None, status, None, None])
    url, method = request.get("url"), request.get("method")
    agent, client = request.get("user_agent"), request.get("client_ip")
    values = [
        url if isinstance(url, str) else None,
        method if isinstance(method, str) else None,
        status,
        agent if isinstance(agent, str) else None,
        client if isinstance(client, str) else None,
    ]
    return flags, (None if values.count(None) == len(values) else values)


def _times(doc: Mapping[str, Any]) -> tuple[float, float]:
    """Start and end; a document still in progress ends at its latest known child end (or its start)."""
    start = doc.get("start_time")
    start = (float(start) or 0.0) if isinstance(start, (int, float)) and not isinstance(start, bool) else 0.0
    end = doc.get("end_time")
    if isinstance(end, (int, float)) and not isinstance(end, bool):
        end = float(end)
    else:
        end = start
        for sub in _walk(doc):
            sub_end = _num(sub.get("end_time"))
            if sub_end is not None and sub_end > end:
                end = sub_end
    return start, (end if end > start else start)


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


_Annotations = dict[str, dict[tuple[str, object], tuple[object, set[int]]]]
"""Per annotation key, per (type name, value): the value and the services it was seen on."""


def _describe(info: dict[str, Any], service: int, doc: Mapping[str, Any], annotations: _Annotations) -> None:
    """Record in a node's ``info`` what filters ask of it from one of its documents (a segment or a
    subsegment): annotations (also into the trace's ``annotations``) and exception messages and names."""
    found = doc.get("annotations")
    if isinstance(found, dict):
        for key, raw in found.items():
            value: bool | float | str
            if isinstance(raw, (bool, str)):
                value = raw
            elif isinstance(raw, (int, float)):
                value = float(raw)
            else:
                continue
            if not isinstance(key, str):
                continue
            info.setdefault("a", {})[key] = value
            per_key = annotations.setdefault(key, {})
            _, services = per_key.setdefault((type(value).__name__, value), (value, set()))
            services.add(service)
    cause = doc.get("cause")
    if isinstance(cause, dict):
        excs = cause.get("exceptions")
        if isinstance(excs, list):
            for exc in excs:
                if not isinstance(exc, dict):
                    continue
                message = exc.get("message")
                if isinstance(message, str):
                    info.setdefault("m", []).append(message)
                kind = exc.get("type")
                if isinstance(kind, str):
                    info.setdefault("x", []).append(kind)


def _answered(sub: Mapping[str, Any], called: set[str]) -> bool:
    """Whether a segment of the trace answered this call (names it or a subsegment below it as parent)."""
    sub_id = sub.get("id")
    if isinstance(sub_id, str) and sub_id in called:
        return True
    kids = sub.get("subsegments")
    if not called or not isinstance(kids, list) or not kids:
        return False
    return any(_str(s.get("id")) in called for s in _walk(sub))


def _owners(
    segs: Sequence[Mapping[str, Any]], ids: Sequence[str]
) -> tuple[dict[str, int], dict[str, Mapping[str, Any]]]:
    """Which segment owns each id (its own, and every subsegment's), and the subsegments by id."""
    owner: dict[str, int] = {}
    subs_by_id: dict[str, Mapping[str, Any]] = {}
    for index, seg in enumerate(segs):
        if ids[index] not in owner:
            owner[ids[index]] = index
        subs = seg.get("subsegments")
        if not isinstance(subs, list) or not subs:
            continue
        stack = [(s, 1) for s in reversed(subs) if isinstance(s, dict)]
        while stack:
            sub, depth = stack.pop()
            sub_id = sub.get("id")
            if isinstance(sub_id, str) and sub_id:
                if sub_id not in owner:
                    owner[sub_id] = index
                if sub_id not in subs_by_id:
                    subs_by_id[sub_id] = sub
            if depth < _MAX_DEPTH:
                kids = sub.get("subsegments")
                if isinstance(kids, list) and kids:
                    stack += [(s, depth + 1) for s in reversed(kids) if isinstance(s, dict)]
    return owner, subs_by_id


def _segments(
    segments: Iterable[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], list[str], list[float]]:
    """The segment documents (dicts with an ``id`` and a numeric ``start_time``) by start time, their
    ids, and their starts."""
    segs: list[Mapping[str, Any]] = []
    ids: list[str] = []
    starts: list[float] = []
    ordered = True
    for seg in segments:
        if not isinstance(seg, dict):
            continue
        seg_id, start = seg.get("id"), seg.get("start_time")
        if (
            isinstance(seg_id, str)
            and seg_id
            and isinstance(start, (int, float))
            and not isinstance(start, bool)
        ):
            start = float(start) or 0.0
            if starts and start < starts[-1]:
                ordered = False
            segs.append(seg)
            ids.append(seg_id)
            starts.append(start)
    if not ordered:  # (a sort finds an ordered list one ascending run and leaves it, ties and NaN alike)
        order = sorted(range(len(segs)), key=starts.__getitem__)
        segs, ids, starts = [segs[i] for i in order], [ids[i] for i in order], [starts[i] for i in order]
    return segs, ids, starts


def trace_facts(segments: Iterable[Mapping[str, Any]], revision: int | None = None) -> Facts:  # noqa: PLR0912, PLR0915 - inlined: runs per trace stored
    """The :class:`Facts` of one assembled trace (its segment documents, in any order).

    Raises ``ValueError`` when there is no segment document with an ``id`` and a numeric ``start_time``.
    """
    segs, ids, starts = _segments(segments)
    if not segs:
        raise ValueError("a trace needs at least one segment document with an id and a start_time")
    count = len(segs)

    # Who called whom: a segment's parent_id names a subsegment (or the segment) of its caller.
    owner, subs_by_id = _owners(segs, ids)
    parents: list[Any] = []
    caller: dict[int, int] = {}
    orphans: list[int] = []
    roots: list[int] = []
    called: set[str] = set()
    for index, seg in enumerate(segs):
        parent = seg.get("parent_id")
        parents.append(parent)
        if not isinstance(parent, str):
            roots.append(index)
            continue
        up = owner.get(parent)
        if up is not None and up != index:
            caller[index] = up
            called.add(parent)
        else:
            orphans.append(index)
    if not roots and orphans:
        roots.append(orphans[0])  # the earliest segment whose caller never arrived stands in
    entry_index = roots[0] if roots else -1

    # One node per segment (nodes 0..count-1), then one per call nobody answered.
    services: dict[tuple[str, str], int] = {}
    rows: list[list[Any]] = []
    info: list[dict[str, Any]] = []
    node_service: list[int] = []
    docs: list[Mapping[str, Any]] = list(segs)
    ups: list[int] = [-1] * count  # per node, the node that called it
    annotations: _Annotations = {}
    users: dict[str, set[int]] = {}
    arns: dict[str, None] = {}
    instance_ids: dict[str, None] = {}
    azs: dict[str, None] = {}
    seen = throttled = 0  # the flags of any node, of any segment
    partial = bool(orphans)
    trace_id = ""
    for index, seg in enumerate(segs):
        start = starts[index]
        end = seg.get("end_time")
        if isinstance(end, (int, float)) and not isinstance(end, bool):
            end = float(end)
            if not end > start:
                end = start
        else:
            start, end = _times(seg)
        name = seg.get("name")
        if not isinstance(name, str) or not name:
            name = "unknown"
        type_ = seg.get("origin")
        if not isinstance(type_, str):
            type_ = ""
        flags, http = _read(seg)
        seen |= flags
        rows.append(
            [name, type_, start, end, round(end - start, 6), 0.0, flags, 1 if index in roots else 0, 0]
        )
        service = services.setdefault((name, type_), len(services))
        node_service.append(service)
        mine: dict[str, Any] = {}
        if http is not None:
            mine["h"] = http
        user = seg.get("user")
        if isinstance(user, str) and user:
            mine["u"] = user
            users.setdefault(user, set()).add(service)
        arn = seg.get("resource_arn")
        if isinstance(arn, str) and arn:
            mine["arn"] = arn
            arns[arn] = None
        aws = seg.get("aws")
        ec2 = aws.get("ec2") if isinstance(aws, dict) else None
        if isinstance(ec2, dict):
            instance_id, zone = ec2.get("instance_id"), ec2.get("availability_zone")
            if isinstance(instance_id, str) and instance_id:
                mine["iid"] = instance_id
                instance_ids[instance_id] = None
            if isinstance(zone, str) and zone:
                mine["az"] = zone
                azs[zone] = None
        if "annotations" in seg or "cause" in seg:
            _describe(mine, service, seg, annotations)
        info.append(mine)
        if seg.get("in_progress") is True:
            partial = True
        if not trace_id:
            candidate = seg.get("trace_id")
            if isinstance(candidate, str):
                trace_id = candidate
    throttled = seen & THROTTLE

    # Subsegments: their annotations and exceptions go to their segment's node; a call (remote or aws)
    # that no segment answered becomes an inferred node, and what it calls is part of that call.
    edges: list[EdgeRow] = []
    for index, seg in enumerate(segs):
        subs = seg.get("subsegments")
        if not isinstance(subs, list) or not subs:
            continue
        mine, service, up_row = info[index], node_service[index], rows[index]
        stack: list[tuple[Mapping[str, Any], int, bool]] = [
            (s, 1, False) for s in subs if isinstance(s, dict)
        ]
        while stack:
            sub, depth, inside_call = stack.pop()
            if "annotations" in sub or "cause" in sub:
                _describe(mine, service, sub, annotations)
            if not inside_call and sub.get("namespace") in _CALL_NAMESPACES and not _answered(sub, called):
                name, type_ = _inferred_id(sub)
                start, end = _times(sub)
                flags, http = _read(sub)
                seen |= flags
                response_time = round(end - start, 6)
                rows.append([name, type_, start, end, response_time, 0.0, flags, 0, 1])
                inferred = services.setdefault((name, type_), len(services))
                node_service.append(inferred)
                theirs: dict[str, Any] = {}
                if "annotations" in sub or "cause" in sub:
                    _describe(theirs, inferred, sub, annotations)
                if http is not None:
                    theirs["h"] = http
                info.append(theirs)
                docs.append(sub)
                ups.append(index)
                edges.append((up_row[0], up_row[1], name, type_, start, end, response_time, flags))
                inside_call = True
            if depth < _MAX_DEPTH:
                kids = sub.get("subsegments")
                if isinstance(kids, list) and kids:
                    stack += [(s, depth + 1, inside_call) for s in kids if isinstance(s, dict)]

    # Edges between segments, timed from the caller's side; the entry hangs off a client node.
    for index in range(count):
        row = rows[index]
        up = caller.get(index)
        if up is not None:
            via = subs_by_id.get(parents[index])
            timed = via if via is not None else segs[index]
            start, end = _times(timed)
            up_row = rows[up]
            edges.append(
                (up_row[0], up_row[1], row[0], row[1], start, end, round(end - start, 6), _flags(timed))
            )
            ups[index] = up
        elif index in roots:
            edges.append((row[0], CLIENT, row[0], row[1], row[2], row[3], row[4], row[6]))

    # min() and max() of the starts and ends, in node order
    start, end = rows[0][2], rows[0][3]
    for row in rows:
        if row[2] < start:  # noqa: PLR1730 - min()'s own comparison, without a call per node
            start = row[2]
        if row[3] > end:  # noqa: PLR1730
            end = row[3]
    duration = round(end - start, 6)
    nodes: list[NodeRow] = []
    for row in rows:
        nodes.append((row[0], row[1], row[2], row[3], row[4], duration, row[6], row[7], row[8]))

    flags = throttled
    entry_time: float | None = None
    entry: int | None = None
    http = None
    if entry_index >= 0:
        entry_row = rows[entry_index]
        flags |= entry_row[6] & (ERROR | FAULT)
        entry_time = entry_row[4]
        http = info[entry_index].get("h")
        entry = node_service[entry_index]
    by_key: dict[str, list[list[Any]]] = {}
    for key, values in annotations.items():
        by_key[key] = [[value, sorted(where)] for value, where in values.values()]
    facts: Facts = {
        "v": FACTS_VERSION,
        "id": trace_id,
        "start": start,
        "end": end,
        "duration": duration,
        "response_time": entry_time,
        "flags": flags,
        "partial": partial,
        "http": [None] * 5 if http is None else list(http),
        "services": [[name, type_] for name, type_ in services],
        "entry": entry,
        "annotations": by_key,
        "users": [[user, sorted(where)] for user, where in users.items()] if users else [],
        "arns": list(arns),
        "instance_ids": list(instance_ids),
        "azs": list(azs),
        "fault_root_causes": _root_causes(rows, docs, ups, FAULT, bool(flags & FAULT))
        if seen & FAULT
        else [],
        "error_root_causes": _root_causes(rows, docs, ups, ERROR, bool(flags & ERROR))
        if seen & ERROR
        else [],
        "revision": count if revision is None else revision,
        "nodes": nodes,
        "node_info": info,
        "edges": edges,
    }
    return facts


def _entity(doc: Mapping[str, Any]) -> dict[str, Any]:
    entity: dict[str, Any] = {"Name": _str(doc.get("name")) or "unknown"}
    excs = _exceptions(doc)
    if excs:
        entity["Exceptions"] = [
            {k: v for k, v in (("Name", _str(e.get("type"))), ("Message", _str(e.get("message")))) if v}
            for e in excs
        ]
    remote = doc.get("namespace") in _CALL_NAMESPACES or any(e.get("remote") is True for e in excs)
    entity["Remote"] = remote
    return entity


def _root_causes(
    rows: Sequence[Sequence[Any]],
    docs: Sequence[Mapping[str, Any]],
    ups: Sequence[int],
    bit: int,
    client_impacting: bool,
) -> list[dict[str, Any]]:
    """Nodes with ``bit`` none of whose callees have it, each with the path down to where it happened."""
    causes: list[dict[str, Any]] = []
    seen: set[str] = set()
    blocked = {ups[index] for index, row in enumerate(rows) if row[6] & bit}  # a callee failed too
    for index, row in enumerate(rows):
        if not row[6] & bit or index in blocked:
            continue
        doc = docs[index]
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
