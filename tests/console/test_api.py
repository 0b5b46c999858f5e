"""X-Ray's own API, answered by the console over a real HTTP server, called with boto3's real client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from k8sxray.console.app import Console, Web, open_store
from k8sxray.console.store import Store
from k8sxray.daemon.ops import OpsServer

from . import _traces
from ._shapes import assert_output

T = _traces.T


class Running:
    def __init__(self, store: Store, token: str | None = None) -> None:
        self.store = store
        self.web = Web(Console(store, clock=lambda: T + 60), token=token)
        self.server = OpsServer(("127.0.0.1", 0), lambda: True, lambda: "", app=self.web.handle)
        self.server.start()
        self.url = "http://{}:{}".format(*self.server.address)

    def client(self) -> Any:
        return boto3.client(
            "xray",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}),
        )

    def raw(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST", headers=headers or {}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Running]:
    store = open_store(tmp_path / "traces.db", settle=0.0)
    store.clock = lambda: T + 60
    running = Running(store)
    yield running
    running.server.close()
    store.close()


def split(trace: list[dict[str, Any]]) -> list[str]:
    """The trace's documents as an SDK streams them: every first-level subsegment sent on its own."""
    out = []
    for segment in trace:
        top = {k: v for k, v in segment.items() if k != "subsegments"}
        out.append(json.dumps(top))
        for sub in segment.get("subsegments", []):
            alone = {**sub, "type": "subsegment", "trace_id": segment["trace_id"], "parent_id": segment["id"]}
            out.append(json.dumps(alone))
    return out


def load(console: Running) -> None:
    documents = []
    for trace in (
        _traces.checkout(),
        _traces.throttled(),
        _traces.weather(),
        _traces.orphan(),
        _traces.sqs_fault(),
    ):
        documents += split(trace)
    documents.reverse()  # out of order: subsegments before their parents
    answer = console.client().put_trace_segments(TraceSegmentDocuments=documents)
    assert answer["UnprocessedTraceSegments"] == []
    console.store.flush(everything=True)


def test_put_then_batch_get_gives_each_trace_assembled(console: Running) -> None:
    load(console)
    client = console.client()
    answer = client.batch_get_traces(TraceIds=[_traces.CHECKOUT_ID, "1-6553f1ff-000000000000000000000000"])
    assert answer["UnprocessedTraceIds"] == ["1-6553f1ff-000000000000000000000000"]
    (trace,) = answer["Traces"]
    assert trace["Id"] == _traces.CHECKOUT_ID
    documents = {s["Id"]: json.loads(s["Document"]) for s in trace["Segments"]}
    expected = {s["id"]: s for s in _traces.checkout()}
    assert documents.keys() == expected.keys()
    for doc_id, doc in documents.items():
        assert [s["id"] for s in doc.get("subsegments", [])] == [
            s["id"] for s in expected[doc_id].get("subsegments", [])
        ]
    assert trace["Duration"] == pytest.approx(0.25)
    assert_output("BatchGetTraces", console.raw("/Traces", {"TraceIds": [_traces.CHECKOUT_ID]}))


def test_put_reports_each_bad_document_and_keeps_the_good_ones(console: Running) -> None:
    good = json.dumps(
        {
            "trace_id": "1-6553f110-000000000000000000000001",
            "id": "1" * 16,
            "name": "ok",
            "start_time": T,
            "end_time": T + 1,
        }
    )
    answer = console.client().put_trace_segments(
        TraceSegmentDocuments=[good, "{not json", json.dumps({"id": "2" * 16, "name": "x", "start_time": T})]
    )
    problems = {(u.get("Id", ""), u["Message"]) for u in answer["UnprocessedTraceSegments"]}
    assert problems == {("", "not valid JSON"), ("2" * 16, "missing trace_id")}
    console.store.flush(everything=True)
    assert console.store.trace("1-6553f110-000000000000000000000001") is not None


def test_summaries_cover_the_window_and_fit_botocores_model(console: Running) -> None:
    load(console)
    client = console.client()
    answer = client.get_trace_summaries(StartTime=T - 10, EndTime=T + 60)
    ids = {s["Id"] for s in answer["TraceSummaries"]}
    assert ids == {
        _traces.CHECKOUT_ID,
        _traces.THROTTLED_ID,
        _traces.WEATHER_ID,
        _traces.ORPHAN_ID,
        _traces.SQS_ID,
    }
    checkout = next(s for s in answer["TraceSummaries"] if s["Id"] == _traces.CHECKOUT_ID)
    assert checkout["HasFault"] is True
    assert checkout["Http"]["HttpStatus"] == 500
    assert checkout["Annotations"]["customer_tier"][0]["AnnotationValue"] == {"StringValue": "gold"}
    assert client.get_trace_summaries(StartTime=T + 3000, EndTime=T + 4000)["TraceSummaries"] == []
    assert_output(
        "GetTraceSummaries", console.raw("/TraceSummaries", {"StartTime": T - 10, "EndTime": T + 60})
    )


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('service("Service-B") { fault }', {"CHECKOUT_ID"}),
        ("http.status = 429", {"THROTTLED_ID"}),
        ('annotation.customer_tier = "gold"', {"CHECKOUT_ID"}),
        ("responsetime > 0.2 AND !fault", {"WEATHER_ID"}),
        ("responsetime > 0.2 AND responsetime < 0.26", {"CHECKOUT_ID"}),
        ('edge("Service-A", "Service-B") { fault }', {"CHECKOUT_ID"}),
        ('service("Service-A") { error } OR annotation.missing', {"THROTTLED_ID"}),
    ],
)
def test_filter_expressions_narrow_the_summaries(
    console: Running, expression: str, expected: set[str]
) -> None:
    load(console)
    answer = console.client().get_trace_summaries(
        StartTime=T - 10, EndTime=T + 60, FilterExpression=expression
    )
    assert {s["Id"] for s in answer["TraceSummaries"]} == {getattr(_traces, name) for name in expected}


def test_an_expression_it_cannot_evaluate_is_a_400_not_a_wrong_answer(console: Running) -> None:
    load(console)
    for expression in ('service("a" {', "nosuchkeyword = 3", "http.status CONTAINS 5"):
        with pytest.raises(ClientError) as caught:
            console.client().get_trace_summaries(
                StartTime=T - 10, EndTime=T + 60, FilterExpression=expression
            )
        assert caught.value.response["Error"]["Code"] == "InvalidRequestException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "FilterExpression" in caught.value.response["Error"]["Message"]


def test_pages_of_a_hundred_follow_next_token_with_botocores_paginator(console: Running) -> None:
    documents = [
        json.dumps(
            {
                "trace_id": f"1-6553f100-{i:024x}",
                "id": f"{i:016x}",
                "name": "many",
                "start_time": T + i / 100,
                "end_time": T + i / 100 + 0.01,
            }
        )
        for i in range(250)
    ]
    client = console.client()
    for i in range(0, 250, 50):
        client.put_trace_segments(TraceSegmentDocuments=documents[i : i + 50])
    console.store.flush(everything=True)
    pages = list(client.get_paginator("get_trace_summaries").paginate(StartTime=T - 1, EndTime=T + 60))
    assert [len(p["TraceSummaries"]) for p in pages] == [100, 100, 50]
    ids = [s["Id"] for p in pages for s in p["TraceSummaries"]]
    assert ids == [f"1-6553f100-{i:024x}" for i in reversed(range(250))]


def test_service_graph_has_inferred_nodes_edges_and_statistics(console: Running) -> None:
    load(console)
    answer = console.client().get_service_graph(StartTime=T - 10, EndTime=T + 60)
    names = {(s["Name"], s.get("Type")) for s in answer["Services"]}
    assert ("Service-A", "AWS::EKS::Container") in names
    assert ("Service-B", "AWS::EKS::Container") in names
    assert ("orders", "AWS::DynamoDB::Table") in names
    assert ("api.payments.example", "remote") in names
    by_ref = {s["ReferenceId"]: s for s in answer["Services"]}
    a = next(s for s in answer["Services"] if s["Name"] == "Service-A")
    callees = {by_ref[e["ReferenceId"]]["Name"] for e in a["Edges"]}
    assert {"Service-B", "api.payments.example"} <= callees
    b = next(s for s in answer["Services"] if s["Name"] == "Service-B")
    assert b["SummaryStatistics"]["FaultStatistics"]["TotalCount"] >= 1
    assert_output("GetServiceGraph", console.raw("/ServiceGraph", {"StartTime": T - 10, "EndTime": T + 60}))


def test_trace_graph_and_time_series_fit_botocores_model(console: Running) -> None:
    load(console)
    graph = console.client().get_trace_graph(TraceIds=[_traces.CHECKOUT_ID])
    assert {s["Name"] for s in graph["Services"]} >= {"Service-A", "Service-B"}
    assert_output("GetTraceGraph", console.raw("/TraceGraph", {"TraceIds": [_traces.CHECKOUT_ID]}))
    series = console.raw(
        "/TimeSeriesServiceStatistics", {"StartTime": T - 60, "EndTime": T + 60, "Period": 60}
    )
    assert_output("GetTimeSeriesServiceStatistics", series)
    assert series["TimeSeriesServiceStatistics"]


def test_bad_requests_get_xrays_error_shape(console: Running) -> None:
    client = console.client()
    with pytest.raises(ClientError) as caught:
        client.get_trace_summaries(StartTime=T + 10, EndTime=T)
    assert caught.value.response["Error"]["Code"] == "InvalidRequestException"
    with pytest.raises(ClientError, match="at most 5"):
        client.batch_get_traces(TraceIds=[f"1-6553f100-{i:024x}" for i in range(6)])
    with pytest.raises(urllib.error.HTTPError) as http:
        console.raw("/TraceSummaries", [])  # type: ignore[arg-type]
    assert http.value.code == 400
    http.value.close()


def test_a_token_is_asked_for_when_set(tmp_path: Path) -> None:
    store = open_store(tmp_path / "t.db", settle=0.0)
    running = Running(store, token="s3cret-token")
    try:
        with pytest.raises(urllib.error.HTTPError) as denied:
            running.raw("/TraceSummaries", {"StartTime": 0, "EndTime": 1})
        assert denied.value.code == 401
        denied.value.close()
        with pytest.raises(urllib.error.HTTPError) as wrong:
            running.raw("/TraceSummaries", {"StartTime": 0, "EndTime": 1}, {"X-K8sxray-Token": "wrong"})
        wrong.value.close()
        ok = running.raw(
            "/TraceSummaries", {"StartTime": 0, "EndTime": 1}, {"X-K8sxray-Token": "s3cret-token"}
        )
        assert ok["TraceSummaries"] == []
        bearer = running.raw(
            "/TraceSummaries", {"StartTime": 0, "EndTime": 1}, {"Authorization": "Bearer s3cret-token"}
        )
        assert bearer["TracesProcessedCount"] == 0
        with urllib.request.urlopen(running.url + "/healthz", timeout=5) as health:  # health stays open
            assert health.status == 200
    finally:
        running.server.close()
        store.close()
