"""The service graph and its statistics, aggregated from node and edge rows (:mod:`k8sxray.console.trace`).

Rows are flat tuples of scalars (:data:`~k8sxray.console.trace.NODE_COLUMNS`,
:data:`~k8sxray.console.trace.EDGE_COLUMNS`), as the facts record holds them and as the store can keep
them in SQLite tables, so a graph over any number of traces is one pass over two iterables, with no
JSON parsed and no object built per row: a dict lookup, a few additions and two histogram slots per
row.

- :func:`service_graph` gives ``GetServiceGraph``'s ``Services`` (and ``GetTraceGraph``'s, through
  :func:`trace_graph`): one service per distinct ``(name, type)`` of the rows (plus a ``client`` node
  for each entry service), ``State`` ``"active"`` for a service that sent segments, ``"unknown"`` for an
  inferred one and for clients; ``Root`` for entry services; ``AccountId`` is never given. A service's
  ``SummaryStatistics`` and ``ResponseTimeHistogram`` count its requests (its segments, or for an
  inferred service the calls made to it); its ``DurationHistogram`` counts the durations of the
  traces those requests were part of. An edge's statistics count calls from the caller's side.
- :func:`time_series` gives ``GetTimeSeriesServiceStatistics``' list, one entry per ``period`` that
  has data, for one service, one edge, or everything.

Statistics classify a request once: fault (5xx) before throttle (429) before other error (4xx) before
ok. Histograms bucket response times in seconds at the bounds of :data:`HISTOGRAM_BOUNDS` (1, 1.2, 1.5,
2, 2.5, 3, 4, 5, 6, 8 per decade, from 0.1 ms to 1,000 s): ``Value`` is the bucket's upper bound, so a
``{"Value": 0.25, "Count": 3}`` entry is three requests that took more than 0.2 s and at most 0.25 s;
a slower one than the last bound counts in the last bucket. Only buckets with requests are listed,
ordered by value. Timestamps are epoch seconds, as X-Ray's JSON carries them.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .filters import EntitySelector, parse_entity_selector
from .trace import CLIENT, ERROR, FAULT, THROTTLE

logger = logging.getLogger(__name__)

HISTOGRAM_BOUNDS: tuple[float, ...] = (
    *(
        round(step * 10.0**exponent, 6)
        for exponent in range(-4, 3)
        for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)
    ),
    1000.0,
)
"""Upper bounds of the response-time histogram buckets, in seconds."""

_WHOLE = 2**62
"""A rollup period no row's start reaches: every row lands in slot 0."""

MAX_PERIODS = 100_000
"""Most time-series buckets one call may ask for."""

_BUCKETS = len(HISTOGRAM_BOUNDS)

# Per service or edge: [ok, other error, throttle, fault, total response time, start, end,
#                       root, active, response-time histogram, duration histogram]
_OK, _ERR, _THR, _FLT, _RT, _START, _END, _ROOT, _ACTIVE, _HIST, _DUR = range(11)


_SEARCH = HISTOGRAM_BOUNDS[:-1]
"""Searched with ``bisect_left``: the index is the bucket; anything slower than all lands in the last."""
_CLASS = tuple(
    _FLT if flags & FAULT else _THR if flags & THROTTLE else _ERR if flags & ERROR else _OK
    for flags in range((ERROR | THROTTLE | FAULT) + 1)
)
"""Flags (``ERROR | THROTTLE | FAULT``) -> the one class a request counts in."""


def _new() -> list[Any]:
    return [0, 0, 0, 0, 0.0, math.inf, -math.inf, False, False, [0] * _BUCKETS, [0] * _BUCKETS]


def _histogram(counts: Sequence[int]) -> list[dict[str, Any]]:
    return [{"Value": HISTOGRAM_BOUNDS[i], "Count": count} for i, count in enumerate(counts) if count]


def _statistics(stats: Sequence[Any]) -> dict[str, Any]:
    ok, other, throttle, fault = stats[_OK], stats[_ERR], stats[_THR], stats[_FLT]
    return {
        "OkCount": ok,
        "ErrorStatistics": {"ThrottleCount": throttle, "OtherCount": other, "TotalCount": throttle + other},
        "FaultStatistics": {"OtherCount": fault, "TotalCount": fault},
        "TotalCount": ok + other + throttle + fault,
        "TotalResponseTime": round(stats[_RT], 6),
    }


def _limits(start: float | None, end: float | None) -> tuple[float, float]:
    return (-math.inf if start is None else start), (math.inf if end is None else end)


def service_graph(
    node_rows: Iterable[Sequence[Any]],
    edge_rows: Iterable[Sequence[Any]],
    start: float | None = None,
    end: float | None = None,
) -> list[dict[str, Any]]:
    """``GetServiceGraph``'s ``Services`` from node and edge rows overlapping ``[start, end]``."""
    low, high = _limits(start, end)
    nodes = (r for r in node_rows if r[3] >= low and r[2] <= high)
    edges = (r for r in edge_rows if r[5] >= low and r[4] <= high)
    whole = rollup(nodes, edges, _WHOLE)  # one slot: the rows' statistics, summed
    return render_services(*from_rollups((kind, key, stats) for (_, kind, key), stats in whole.items()))


def render_services(
    services: Mapping[tuple[str, str], Sequence[Any]],
    edges: Mapping[tuple[str, str, str, str], Sequence[Any]],
) -> list[dict[str, Any]]:
    """``Services`` from per-service and per-edge statistics, as :func:`from_rollups` merges them."""
    keys = set(services)
    for source_name, source_type, target_name, target_type in edges:
        keys.add((source_name, source_type))
        keys.add((target_name, target_type))
    ordered = sorted(keys, key=lambda k: (k[1] == CLIENT, k[0], k[1]))
    reference = {key: index for index, key in enumerate(ordered)}
    outgoing: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (source_name, source_type, target_name, target_type), stats in sorted(edges.items()):
        outgoing.setdefault((source_name, source_type), []).append(
            {
                "ReferenceId": reference[(target_name, target_type)],
                "StartTime": stats[_START],
                "EndTime": stats[_END],
                "SummaryStatistics": _statistics(stats),
                "ResponseTimeHistogram": _histogram(stats[_HIST]),
                "Aliases": [],
            }
        )
    out: list[dict[str, Any]] = []
    for key in ordered:
        name, type_ = key
        service: dict[str, Any] = {"ReferenceId": reference[key], "Name": name, "Names": [name]}
        if type_:
            service["Type"] = type_
        found = services.get(key)
        edges_out = outgoing.get(key, [])
        if found is None:  # a client, or a service seen only at an edge's end
            service["State"] = "unknown"
            times = [(e["StartTime"], e["EndTime"]) for e in edges_out]
            if times:
                service["StartTime"] = min(t[0] for t in times)
                service["EndTime"] = max(t[1] for t in times)
            service["Edges"] = edges_out
            out.append(service)
            continue
        service.update(
            Root=bool(found[_ROOT]),
            State="active" if found[_ACTIVE] else "unknown",
            StartTime=found[_START],
            EndTime=found[_END],
            Edges=edges_out,
            SummaryStatistics=_statistics(found),
            DurationHistogram=_histogram(found[_DUR]),
            ResponseTimeHistogram=_histogram(found[_HIST]),
        )
        out.append(service)
    return out


def trace_graph(facts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``GetTraceGraph``'s ``Services`` for the traces with these facts records."""
    records = list(facts)
    return service_graph(
        itertools.chain.from_iterable(f["nodes"] for f in records),
        itertools.chain.from_iterable(f["edges"] for f in records),
    )


def _matches(end: tuple[str, str], want: tuple[str | None, str | None]) -> bool:
    return (want[0] is None or end[0] == want[0]) and (want[1] is None or end[1] == want[1])


def _edge_selected(row: Sequence[Any], selector: EntitySelector) -> bool:
    """A service selects the calls made to it (its clients' too); an edge selects itself."""
    if selector.kind == "service":
        return _matches((row[2], row[3]), selector.source)
    if selector.target is None or (row[1] == CLIENT and selector.source[1] != CLIENT):
        return False
    return _matches((row[0], row[1]), selector.source) and _matches((row[2], row[3]), selector.target)


def time_series(
    node_rows: Iterable[Sequence[Any]],
    edge_rows: Iterable[Sequence[Any]],
    start: float,
    end: float,
    *,
    period: int = 60,
    entity: str | EntitySelector | None = None,
) -> list[dict[str, Any]]:
    """``GetTimeSeriesServiceStatistics``' list: one entry per ``period`` seconds (aligned to the epoch)
    between ``start`` and ``end`` that has requests, by the rows' start times.

    ``entity`` (an ``EntitySelectorExpression`` or its parse) narrows to one service (its requests as
    ``ServiceSummaryStatistics``, the calls made to it as ``EdgeSummaryStatistics``, its response times)
    or one edge (``EdgeSummaryStatistics`` and its response times); without it, every service and edge.
    Raises ``ValueError`` (``FilterError`` for the selector) on a bad period, window or selector.
    """
    if isinstance(period, bool) or not isinstance(period, int) or period <= 0:
        raise ValueError(f"period must be a positive number of seconds, not {period!r}")
    if not end >= start:
        raise ValueError("the window ends before it starts")
    if (end - start) / period > MAX_PERIODS:
        raise ValueError(
            f"more than {MAX_PERIODS} periods of {period} s in the window; choose a longer period"
        )
    nodes = (r for r in node_rows if start <= r[2] <= end)
    edges = (r for r in edge_rows if start <= r[4] <= end)
    entries = ((slot, kind, key, stats) for (slot, kind, key), stats in rollup(nodes, edges, period).items())
    return time_series_from_rollups(entries, rollup_period=period, period=period, entity=entity)


# --- Rollups: the statistics of every service and edge per period, kept by the store -----------------

NODE, EDGE = 0, 1
"""The kinds of rollup entries: a service's requests, or the calls along an edge."""

Rollup = dict[tuple[int, int, tuple[str, ...]], list[Any]]
"""``(slot, kind, key) -> statistics``: ``slot`` is ``start // period``; ``key`` a node's ``(name,
type)`` or an edge's ``(source name, source type, target name, target type)``."""


def rollup(
    node_rows: Iterable[Sequence[Any]],
    edge_rows: Iterable[Sequence[Any]],
    period: int = 60,
    into: Rollup | None = None,
) -> Rollup:
    """The statistics of the rows per ``period`` seconds (by each row's start), node and edge alike;
    added to ``into`` when given (which is returned)."""
    out: Rollup = {} if into is None else into
    get, new, find, bounds, classes = out.get, _new, bisect.bisect_left, _SEARCH, _CLASS
    # The hot loops (every trace stored goes through them): list slots by literal index (see _new).
    for name, type_, row_start, row_end, rt, duration, flags, root, inferred in node_rows:
        key: tuple[int, int, tuple[str, ...]] = (int(row_start // period), NODE, (name, type_))
        stats = get(key)
        if stats is None:
            stats = out[key] = new()
        stats[classes[flags & 7]] += 1
        stats[4] += rt
        if row_start < stats[5]:  # noqa: PLR1730 - min()'s comparison, without a call per row
            stats[5] = row_start
        if row_end > stats[6]:  # noqa: PLR1730
            stats[6] = row_end
        if root and not stats[7]:
            stats[7] = True
        if not inferred and not stats[8]:
            stats[8] = True
        stats[9][find(bounds, rt)] += 1
        stats[10][find(bounds, duration)] += 1
    for source_name, source_type, target_name, target_type, row_start, row_end, rt, flags in edge_rows:
        key = (int(row_start // period), EDGE, (source_name, source_type, target_name, target_type))
        stats = get(key)
        if stats is None:
            stats = out[key] = new()
        stats[classes[flags & 7]] += 1
        stats[4] += rt
        if row_start < stats[5]:  # noqa: PLR1730
            stats[5] = row_start
        if row_end > stats[6]:  # noqa: PLR1730
            stats[6] = row_end
        stats[9][find(bounds, rt)] += 1
    return out


def blank() -> list[Any]:
    """Statistics of no request, to :func:`merge` into."""
    return _new()


def merge(into: list[Any], other: Sequence[Any], sign: int = 1) -> None:
    """Add ``other``'s statistics to ``into`` (``sign=-1`` takes them away again: counts, times and
    histograms; first and last times only ever widen)."""
    for slot in (_OK, _ERR, _THR, _FLT):
        into[slot] += sign * other[slot]
    into[_RT] += sign * other[_RT]
    if sign > 0:
        into[_START] = min(into[_START], other[_START])
        into[_END] = max(into[_END], other[_END])
        into[_ROOT] = into[_ROOT] or other[_ROOT]
        into[_ACTIVE] = into[_ACTIVE] or other[_ACTIVE]
    for slot in (_HIST, _DUR):
        mine, theirs = into[slot], other[slot]
        for i, count in enumerate(theirs):
            if count:
                mine[i] += sign * count


def empty(stats: Sequence[Any]) -> bool:
    """Whether statistics count no request (after requests were taken away again)."""
    return bool(stats[_OK] + stats[_ERR] + stats[_THR] + stats[_FLT] <= 0)


def encode(stats: Sequence[Any]) -> str:
    """Statistics as compact JSON (histograms sparse), for the store's rollup table."""
    plain = list(stats[:_HIST])
    plain[_START] = None if math.isinf(plain[_START]) else plain[_START]
    plain[_END] = None if math.isinf(plain[_END]) else plain[_END]
    plain += [
        [[i, c] for i, c in enumerate(stats[_HIST]) if c],
        [[i, c] for i, c in enumerate(stats[_DUR]) if c],
    ]
    return json.dumps(plain, separators=(",", ":"))


def decode(text: str | bytes) -> list[Any]:
    """The statistics :func:`encode` wrote."""
    plain = json.loads(text)
    stats = _new()
    stats[:_HIST] = plain[:_HIST]
    stats[_START] = math.inf if plain[_START] is None else plain[_START]
    stats[_END] = -math.inf if plain[_END] is None else plain[_END]
    for slot, pairs in ((_HIST, plain[_HIST]), (_DUR, plain[_DUR])):
        for i, count in pairs:
            stats[slot][i] = count
    return stats


def from_rollups(
    entries: Iterable[tuple[int, tuple[str, ...], Sequence[Any]]],
) -> tuple[dict[tuple[str, str], list[Any]], dict[tuple[str, str, str, str], list[Any]]]:
    """Rollup entries ``(kind, key, statistics)`` merged over time, ready for :func:`render_services`."""
    services: dict[Any, list[Any]] = {}
    edges: dict[Any, list[Any]] = {}
    for kind, key, stats in entries:
        into = services if kind == NODE else edges
        held = into.get(key)
        if held is None:
            into[key] = held = _new()
        merge(held, stats)
    return services, edges


def time_series_from_rollups(
    entries: Iterable[tuple[int, int, tuple[str, ...], Sequence[Any]]],
    *,
    rollup_period: int,
    period: int,
    entity: str | EntitySelector | None = None,
) -> list[dict[str, Any]]:
    """``GetTimeSeriesServiceStatistics``' list from rollup entries ``(slot, kind, key, statistics)``
    kept per ``rollup_period`` seconds, regrouped per ``period`` (a multiple of it), as
    :func:`time_series` gives it from rows."""
    if isinstance(period, bool) or not isinstance(period, int) or period <= 0 or period % rollup_period:
        raise ValueError(f"period must be a multiple of {rollup_period} seconds, not {period!r}")
    selector = parse_entity_selector(entity) if isinstance(entity, str) else entity
    nodes: dict[int, list[Any]] = {}
    edges: dict[int, list[Any]] = {}
    for slot, kind, key, stats in entries:
        if kind == NODE:
            if selector is not None and (
                selector.kind != "service" or not _matches((key[0], key[1]), selector.source)
            ):
                continue
            into = nodes
        else:
            if selector is not None and not _edge_selected(key, selector):
                continue
            into = edges
        bucket = slot * rollup_period // period
        held = into.get(bucket)
        if held is None:
            into[bucket] = held = _new()
        merge(held, stats)
    out: list[dict[str, Any]] = []
    for bucket in sorted(set(nodes) | set(edges)):
        entry: dict[str, Any] = {"Timestamp": float(bucket * period)}
        edge_stats, node_stats = edges.get(bucket), nodes.get(bucket)
        if edge_stats is not None:
            entry["EdgeSummaryStatistics"] = _statistics(edge_stats)
        if node_stats is not None:
            entry["ServiceSummaryStatistics"] = _statistics(node_stats)
        histogram_from = node_stats if node_stats is not None else edge_stats
        entry["ResponseTimeHistogram"] = _histogram(histogram_from[_HIST] if histogram_from else [])
        out.append(entry)
    return out
