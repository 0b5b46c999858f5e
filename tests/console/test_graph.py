"""The service graph, trace graph and time series from the recorded traces' node and edge rows."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from k8sxray.console.filters import FilterError
from k8sxray.console.graph import HISTOGRAM_BOUNDS, service_graph, time_series, trace_graph
from k8sxray.console.trace import trace_facts

from . import _traces
from ._shapes import assert_output

T = _traces.T
EKS = "AWS::EKS::Container"
FACTS = [
    json.loads(json.dumps(trace_facts(make()))) for make in _traces.ALL.values()
]  # as the store keeps them
NODES = [row for f in FACTS for row in f["nodes"]]
EDGES = [row for f in FACTS for row in f["edges"]]


def by_key(services: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["Name"], s.get("Type", "")): s for s in services}


def edge_to(
    services: list[dict[str, Any]], source: tuple[str, str], target: tuple[str, str]
) -> dict[str, Any]:
    graph = by_key(services)
    ref = graph[target]["ReferenceId"]
    [edge] = [e for e in graph[source]["Edges"] if e["ReferenceId"] == ref]
    return edge


def test_service_graph_nodes_types_and_states() -> None:
    services = service_graph(NODES, EDGES)
    assert_output("GetServiceGraph", {"Services": services, "StartTime": T, "EndTime": T + 60})
    graph = by_key(services)
    assert set(graph) == {
        ("Service-A", EKS),
        ("Service-A", "client"),
        ("Service-B", EKS),
        ("Service-B", "client"),  # the orphan stands in as entry
        ("Service-C", ""),
        ("Service-C", "client"),
        ("orders", "AWS::DynamoDB::Table"),
        ("api.payments.example", "remote"),
        ("api.weather.example", "remote"),
        ("jobs", "AWS::SQS::Queue"),
    }
    assert sorted(s["ReferenceId"] for s in services) == list(range(len(services)))
    assert (graph["Service-A", EKS]["State"], graph["Service-A", EKS]["Root"]) == ("active", True)
    assert (
        graph["orders", "AWS::DynamoDB::Table"]["State"],
        graph["orders", "AWS::DynamoDB::Table"]["Root"],
    ) == (
        "unknown",
        False,
    )
    assert graph["api.payments.example", "remote"]["State"] == "unknown"
    assert graph["Service-A", "client"]["State"] == "unknown"
    assert "SummaryStatistics" not in graph["Service-A", "client"]
    assert "Type" not in graph["Service-C", ""]
    assert all("AccountId" not in s for s in services)
    refs = {s["ReferenceId"] for s in services}
    assert all(e["ReferenceId"] in refs for s in services for e in s["Edges"])


def test_service_statistics_count_requests_by_class() -> None:
    graph = by_key(service_graph(NODES, EDGES))
    a = graph["Service-A", EKS]
    # checkout (500), throttled (429), weather (200)
    assert a["SummaryStatistics"] == {
        "OkCount": 1,
        "ErrorStatistics": {"ThrottleCount": 1, "OtherCount": 0, "TotalCount": 1},
        "FaultStatistics": {"OtherCount": 1, "TotalCount": 1},
        "TotalCount": 3,
        "TotalResponseTime": pytest.approx(0.25 + 0.08 + 0.3),
    }
    assert (a["StartTime"], a["EndTime"]) == (T, pytest.approx(T + 20.3))
    assert a["ResponseTimeHistogram"] == [
        {"Value": 0.08, "Count": 1},
        {"Value": 0.25, "Count": 1},
        {"Value": 0.3, "Count": 1},
    ]
    assert sum(h["Count"] for h in a["DurationHistogram"]) == 3
    b = graph["Service-B", EKS]
    assert (b["SummaryStatistics"]["OkCount"], b["SummaryStatistics"]["FaultStatistics"]["TotalCount"]) == (
        1,
        1,
    )
    assert b["Root"] is True  # the orphan's B segment is its trace's entry
    table = graph["orders", "AWS::DynamoDB::Table"]
    assert table["SummaryStatistics"]["OkCount"] == 1
    assert table["ResponseTimeHistogram"] == [{"Value": 0.04, "Count": 1}]


def test_edges_count_calls_from_the_callers_side() -> None:
    services = service_graph(NODES, EDGES)
    a_to_b = edge_to(services, ("Service-A", EKS), ("Service-B", EKS))
    assert a_to_b["SummaryStatistics"]["FaultStatistics"]["TotalCount"] == 1
    assert a_to_b["SummaryStatistics"]["TotalResponseTime"] == pytest.approx(0.23)
    assert a_to_b["ResponseTimeHistogram"] == [{"Value": 0.25, "Count": 1}]
    assert (a_to_b["StartTime"], a_to_b["EndTime"]) == (pytest.approx(T + 0.01), pytest.approx(T + 0.24))
    assert a_to_b["Aliases"] == []
    throttled = edge_to(services, ("Service-A", EKS), ("api.payments.example", "remote"))
    assert throttled["SummaryStatistics"]["ErrorStatistics"] == {
        "ThrottleCount": 1,
        "OtherCount": 0,
        "TotalCount": 1,
    }
    client = edge_to(services, ("Service-A", "client"), ("Service-A", EKS))
    assert client["SummaryStatistics"]["TotalCount"] == 3
    assert edge_to(services, ("Service-C", ""), ("jobs", "AWS::SQS::Queue"))["SummaryStatistics"][
        "FaultStatistics"
    ] == {
        "OtherCount": 1,
        "TotalCount": 1,
    }


def test_window_keeps_rows_that_overlap_it() -> None:
    services = service_graph(NODES, EDGES, T + 9, T + 10.01)  # only the throttled trace (T+10 .. T+10.08)
    assert {s["Name"] for s in services} == {"Service-A", "api.payments.example"}
    assert by_key(services)["Service-A", EKS]["SummaryStatistics"]["TotalCount"] == 1
    assert service_graph(NODES, EDGES, T + 1000, T + 2000) == []


@pytest.mark.parametrize(
    ("seconds", "value"),
    [(0.0, 0.0001), (0.0001, 0.0001), (0.00011, 0.00012), (0.2, 0.2), (0.2001, 0.25), (0.999, 1.0),
     (700, 800.0), (800.5, 1000.0), (5000, 1000.0)],
)  # fmt: skip
def test_histogram_buckets_are_upper_bounds(seconds: float, value: float) -> None:
    row = ["S", "", T, T + seconds, seconds, seconds, 0, 1, 0]
    [service] = service_graph([row], [])
    assert service["ResponseTimeHistogram"] == [{"Value": value, "Count": 1}]
    assert HISTOGRAM_BOUNDS[0] == 0.0001
    assert HISTOGRAM_BOUNDS[-1] == 1000.0
    assert list(HISTOGRAM_BOUNDS) == sorted(HISTOGRAM_BOUNDS)


def test_trace_graph_of_one_trace() -> None:
    services = trace_graph([FACTS[0]])
    assert_output("GetTraceGraph", {"Services": services})
    assert set(by_key(services)) == {
        ("Service-A", EKS),
        ("Service-A", "client"),
        ("Service-B", EKS),
        ("orders", "AWS::DynamoDB::Table"),
    }
    assert (
        edge_to(services, ("Service-B", EKS), ("orders", "AWS::DynamoDB::Table"))["SummaryStatistics"][
            "OkCount"
        ]
        == 1
    )
    assert trace_graph([]) == []


def test_time_series_of_a_service() -> None:
    series = time_series(NODES, EDGES, T, T + 60, period=10, entity='service("Service-A")')
    assert_output("GetTimeSeriesServiceStatistics", {"TimeSeriesServiceStatistics": series})
    assert [e["Timestamp"] for e in series] == [T, T + 10, T + 20]
    first, second, third = series
    assert first["ServiceSummaryStatistics"]["FaultStatistics"]["TotalCount"] == 1
    assert first["EdgeSummaryStatistics"]["TotalCount"] == 1  # the client's call
    assert second["ServiceSummaryStatistics"]["ErrorStatistics"]["ThrottleCount"] == 1
    assert third["ServiceSummaryStatistics"]["OkCount"] == 1
    assert third["ResponseTimeHistogram"] == [{"Value": 0.3, "Count": 1}]


def test_time_series_of_an_edge_and_of_everything() -> None:
    edge = time_series(NODES, EDGES, T, T + 60, period=60, entity='edge("Service-A", "Service-B")')
    assert_output("GetTimeSeriesServiceStatistics", {"TimeSeriesServiceStatistics": edge})
    [entry] = edge
    assert "ServiceSummaryStatistics" not in entry
    assert entry["EdgeSummaryStatistics"]["FaultStatistics"]["TotalCount"] == 1
    assert entry["ResponseTimeHistogram"] == [{"Value": 0.25, "Count": 1}]
    queue = time_series(NODES, EDGES, T, T + 60, entity='service(id(name: "jobs", type: "AWS::SQS::Queue"))')
    assert queue[0]["ServiceSummaryStatistics"]["FaultStatistics"]["TotalCount"] == 1
    everything = time_series(NODES, EDGES, T, T + 60, period=60)
    assert [e["Timestamp"] for e in everything] == [T - 20, T + 40]  # periods are aligned to the epoch
    assert sum(e["ServiceSummaryStatistics"]["TotalCount"] for e in everything) == len(NODES)
    assert sum(e["EdgeSummaryStatistics"]["TotalCount"] for e in everything) == len(EDGES)
    assert time_series(NODES, EDGES, T + 500, T + 600) == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"period": 0}, ValueError),
        ({"period": 1.5}, ValueError),
        ({"period": True}, ValueError),
        ({"entity": "fault"}, FilterError),
        ({"entity": 'service("a") { fault }'}, FilterError),
        ({"entity": "service()"}, FilterError),
    ],
)
def test_time_series_refuses_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        time_series(NODES, EDGES, T, T + 60, **kwargs)
    with pytest.raises(ValueError, match="ends before"):
        time_series(NODES, EDGES, T + 60, T)
    with pytest.raises(ValueError, match="periods"):
        time_series(NODES, EDGES, 0, T, period=60)


def test_three_hundred_thousand_traces_of_rows_add_up() -> None:
    # how fast: benchmarks/bench_console.py (GetServiceGraph over a million segments)
    shapes = [trace_facts(make()) for make in _traces.ALL.values()]
    nodes = []
    edges = []
    for i, facts in zip(range(300_000), itertools.cycle(shapes)):
        shift = i * 0.01
        nodes.extend((r[0], r[1], r[2] + shift, r[3] + shift, *r[4:]) for r in facts["nodes"])
        edges.extend((*r[:4], r[4] + shift, r[5] + shift, r[6], r[7]) for r in facts["edges"])
    services = by_key(service_graph(nodes, edges, T, T + 3600))
    assert services["Service-A", EKS]["SummaryStatistics"]["TotalCount"] == 180_000
    # every service and edge counts its share of the cycle: the graph of one cycle, scaled
    once = service_graph(
        [r for f in shapes for r in f["nodes"]], [r for f in shapes for r in f["edges"]], T, T + 3600
    )
    assert 300_000 % len(shapes) == 0
    scaled = {key: count * (300_000 // len(shapes)) for key, count in _counts(once).items()}
    assert _counts(list(services.values())) == scaled


def _counts(services: list[dict[str, Any]]) -> dict[tuple[Any, ...], int]:
    names = {s["ReferenceId"]: (s["Name"], s.get("Type", "")) for s in services}
    counts = {}
    for s in services:
        key = (s["Name"], s.get("Type", ""))
        if "SummaryStatistics" in s:
            counts[key] = s["SummaryStatistics"]["TotalCount"]
        for edge in s.get("Edges", []):
            counts[(*key, *names[edge["ReferenceId"]])] = edge["SummaryStatistics"]["TotalCount"]
    assert counts
    return counts
