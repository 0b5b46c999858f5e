"""The facts record (:mod:`k8sxray.console.trace`) in the smaller form the store keeps.

Most of a facts record can be worked out from the rest: a node's response time is its ``end - start``
to the microsecond and its duration the trace's; the trace's start, end, duration, response time,
flags, entry, HTTP fields, users, ARNs, instance ids and zones come from its nodes and their
``node_info``; a client edge and an edge to an inferred node carry their node's times and flags. The
stored form drops all of that, and keeps the times that are left in binary (printing and parsing
floats is most of the cost of JSON):

``c``   form version (:data:`FORM`)
``id``  trace id;  ``r``  revision;  ``s``  services (``[name, type]``)
``n``   nodes: ``[service index, flags, root, inferred]``
``e``   edges: ``[source, node index]`` for an edge timed and flagged as that node (its target), else
        ``[source, target service index, flags]``; ``source`` is a service index, or ``-1`` for the
        client of the target
``t``   the times, base64 of little-endian doubles: each node's start and end, then each edge's of
        the second kind, in order
``i``   ``node_info``, as it is;  ``a``  annotations, ``p`` partial (1), ``fr``/``er`` root causes:
        each only when not empty

:func:`expand` gives back the record :func:`~k8sxray.console.trace.trace_facts` made, equal to it
after a JSON round trip. Both rely on what ``trace_facts`` guarantees (see its module docstring);
:func:`compact` takes only records of the current :data:`~k8sxray.console.trace.FACTS_VERSION` with
exactly its fields, and anything else is kept as it is.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Mapping
from typing import Any

from .trace import CLIENT, ERROR, FACTS_VERSION, FAULT, THROTTLE, Facts

FORM = 1
"""Version of the stored form (the ``c`` field that tells it from a plain facts record)."""

_FIELDS = frozenset(Facts.__annotations__)


def compact(facts: Mapping[str, Any]) -> dict[str, Any] | None:
    """``facts`` in the stored form, or None when they are not a current facts record."""
    if facts.get("v") != FACTS_VERSION or facts.keys() != _FIELDS:
        return None
    index: dict[tuple[str, str], int] = {}
    for name, type_ in facts["services"]:
        index[name, type_] = len(index)
    nodes: list[list[Any]] = []
    times: list[float] = []
    timed: dict[tuple[int, float, float, int], int] = {}  # what an edge may take from a node
    for name, type_, start, end, _, _, flags, root, inferred in facts["nodes"]:
        service = index.get((name, type_))
        if service is None:
            return None
        timed.setdefault((service, start, end, flags), len(nodes))
        nodes.append([service, flags, root, inferred])
        times.append(start)
        times.append(end)
    edges = _stored_edges(facts["edges"], index, timed, times)
    if edges is None:
        return None
    stored: dict[str, Any] = {
        "c": FORM,
        "id": facts["id"],
        "r": facts["revision"],
        "s": facts["services"],
        "n": nodes,
        "e": edges,
        "t": binascii.b2a_base64(struct.pack(f"<{len(times)}d", *times), newline=False).decode("ascii"),
        "i": facts["node_info"],
    }
    if facts["annotations"]:
        stored["a"] = facts["annotations"]
    if facts["partial"]:
        stored["p"] = 1
    if facts["fault_root_causes"]:
        stored["fr"] = facts["fault_root_causes"]
    if facts["error_root_causes"]:
        stored["er"] = facts["error_root_causes"]
    return stored


def _stored_edges(
    rows: list[Any],
    index: dict[tuple[str, str], int],
    timed: dict[tuple[int, float, float, int], int],
    times: list[float],
) -> list[list[Any]] | None:
    edges: list[list[Any]] = []
    for source_name, source_type, target_name, target_type, start, end, _, flags in rows:
        target = index.get((target_name, target_type))
        source = index.get((source_name, source_type))
        if source is None:
            if source_type != CLIENT or source_name != target_name:
                return None
            source = -1
        if target is None:
            return None
        node = timed.get((target, start, end, flags))
        if node is None:
            edges.append([source, target, flags])
            times.append(start)
            times.append(end)
        else:
            edges.append([source, node])
    return edges


def expand(stored: dict[str, Any]) -> dict[str, Any]:
    """The facts record of a stored form (anything without the form's ``c`` is returned as it is)."""
    if stored.get("c") != FORM:
        return stored
    services: list[list[str]] = stored["s"]
    info: list[dict[str, Any]] = stored["i"]
    rows: list[list[Any]] = stored["n"]
    packed = binascii.a2b_base64(stored["t"])
    times = struct.unpack(f"<{len(packed) // 8}d", packed)
    nodes, start, end, duration = _nodes(rows, times, services)
    flags = 0
    entry_node = -1
    for number, row in enumerate(rows):
        if not row[3]:  # a segment's node
            flags |= row[1] & THROTTLE
            if row[2] and entry_node < 0:
                entry_node = number
    http = None
    entry = None
    response_time = None
    if entry_node >= 0:
        entry_row = nodes[entry_node]
        flags |= entry_row[6] & (ERROR | FAULT)
        response_time = entry_row[4]
        entry = rows[entry_node][0]
        http = info[entry_node].get("h")
    users, arns, instance_ids, azs = _segment_fields(rows, info)
    return {
        "v": FACTS_VERSION,
        "id": stored["id"],
        "start": start,
        "end": end,
        "duration": duration,
        "response_time": response_time,
        "flags": flags,
        "partial": bool(stored.get("p")),
        "http": [None] * 5 if http is None else list(http),
        "services": services,
        "entry": entry,
        "annotations": stored.get("a", {}),
        "users": users,
        "arns": arns,
        "instance_ids": instance_ids,
        "azs": azs,
        "fault_root_causes": stored.get("fr", []),
        "error_root_causes": stored.get("er", []),
        "revision": stored["r"],
        "nodes": nodes,
        "node_info": info,
        "edges": _edges(stored["e"], nodes, times[2 * len(nodes) :], services),
    }


def _nodes(
    rows: list[list[Any]], times: tuple[float, ...], services: list[list[str]]
) -> tuple[list[tuple[Any, ...]], float, float, float]:
    """Node rows, and the trace's start, end and duration (as trace_facts works them out)."""
    start = end = 0.0
    if rows:
        start, end = times[0], times[1]
    for number in range(len(rows)):  # as trace_facts takes min() and max(), in node order
        if times[2 * number] < start:  # noqa: PLR1730 - min()'s own comparison
            start = times[2 * number]
        if times[2 * number + 1] > end:  # noqa: PLR1730
            end = times[2 * number + 1]
    duration = round(end - start, 6)
    nodes: list[tuple[Any, ...]] = []
    for number, (service, flags, root, inferred) in enumerate(rows):
        name, type_ = services[service]
        row_start, row_end = times[2 * number], times[2 * number + 1]
        nodes.append(
            (name, type_, row_start, row_end, round(row_end - row_start, 6), duration, flags, root, inferred)
        )
    return nodes, start, end, duration


def _segment_fields(
    rows: list[list[Any]], info: list[dict[str, Any]]
) -> tuple[list[list[Any]], list[str], list[str], list[str]]:
    """Users (with the services they were seen on), ARNs, instance ids and zones, from the node info."""
    users: dict[str, set[int]] = {}
    arns: dict[str, None] = {}
    instance_ids: dict[str, None] = {}
    azs: dict[str, None] = {}
    for number, found in enumerate(info):
        if len(found) == 1 and "h" in found:  # a node with HTTP fields only, the common case
            continue
        if "u" in found:
            users.setdefault(found["u"], set()).add(rows[number][0])
        if "arn" in found:
            arns[found["arn"]] = None
        if "iid" in found:
            instance_ids[found["iid"]] = None
        if "az" in found:
            azs[found["az"]] = None
    return [[user, sorted(where)] for user, where in users.items()], list(arns), list(instance_ids), list(azs)


def _edges(
    stored: list[list[Any]], nodes: list[tuple[Any, ...]], times: tuple[float, ...], services: list[list[str]]
) -> list[tuple[Any, ...]]:
    edges: list[tuple[Any, ...]] = []
    explicit = 0
    for edge in stored:
        if len(edge) == 2:  # timed and flagged as its target node
            node = nodes[edge[1]]
            target_name, target_type, start, end, response_time, flags = (
                node[0],
                node[1],
                node[2],
                node[3],
                node[4],
                node[6],
            )
        else:
            target_name, target_type = services[edge[1]]
            start, end, flags = times[explicit], times[explicit + 1], edge[2]
            explicit += 2
            response_time = round(end - start, 6)
        source_name, source_type = services[edge[0]] if edge[0] >= 0 else (target_name, CLIENT)
        edges.append((source_name, source_type, target_name, target_type, start, end, response_time, flags))
    return edges
