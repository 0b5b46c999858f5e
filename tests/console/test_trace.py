"""The trace model: recorded multi-service traces reduced to facts, node and edge rows, and TraceSummary."""

from __future__ import annotations

import json
from typing import Any

import pytest

from k8sxray.console.trace import (
    CLIENT,
    EDGE_COLUMNS,
    ERROR,
    FAULT,
    NODE_COLUMNS,
    THROTTLE,
    trace_facts,
    trace_summary,
)

from . import _traces
from ._shapes import assert_fits

EKS = "AWS::EKS::Container"


def _nodes(facts: Any) -> list[dict[str, Any]]:
    return [dict(zip(NODE_COLUMNS, row, strict=True)) for row in facts["nodes"]]


def _edges(facts: Any) -> set[tuple[str, str, str, str, int]]:
    return {(e[0], e[1], e[2], e[3], e[7]) for e in facts["edges"]}


def test_checkout_nodes_edges_and_inferred_dynamodb_table_three_levels_down() -> None:
    facts = trace_facts(_traces.checkout())
    nodes = {(n["name"], n["type"]): n for n in _nodes(facts)}
    assert set(nodes) == {("Service-A", EKS), ("Service-B", EKS), ("orders", "AWS::DynamoDB::Table")}
    a, b, table = nodes["Service-A", EKS], nodes["Service-B", EKS], nodes["orders", "AWS::DynamoDB::Table"]
    assert (a["root"], a["inferred"], a["flags"]) == (1, 0, FAULT)
    assert (b["root"], b["inferred"], b["flags"]) == (0, 0, FAULT)
    assert (table["root"], table["inferred"], table["flags"]) == (0, 1, 0)
    assert b["response_time"] == pytest.approx(0.210)
    assert table["start"] == pytest.approx(_traces.T + 0.040)
    assert table["response_time"] == pytest.approx(0.040)
    assert all(n["duration"] == pytest.approx(0.250) for n in nodes.values())
    # The call to service-b was answered by Service-B's segment: an edge, not an inferred "service-b" node.
    assert _edges(facts) == {
        ("Service-A", CLIENT, "Service-A", EKS, FAULT),
        ("Service-A", EKS, "Service-B", EKS, FAULT),
        ("Service-B", EKS, "orders", "AWS::DynamoDB::Table", 0),
    }
    a_to_b = next(e for e in facts["edges"] if e[2] == "Service-B")
    assert (a_to_b[4], a_to_b[6]) == (
        pytest.approx(_traces.T + 0.010),
        pytest.approx(0.230),
    )  # the caller's view
    assert all(len(row) == len(NODE_COLUMNS) for row in facts["nodes"])
    assert all(len(row) == len(EDGE_COLUMNS) for row in facts["edges"])


def test_checkout_summary_fields() -> None:
    facts = trace_facts(_traces.checkout())
    summary = trace_summary(facts)
    assert_fits(summary, "TraceSummary")
    assert summary["Id"] == _traces.CHECKOUT_ID
    assert summary["StartTime"] == _traces.T
    assert summary["Duration"] == pytest.approx(0.25)
    assert summary["ResponseTime"] == pytest.approx(0.25)
    assert (summary["HasFault"], summary["HasError"], summary["HasThrottle"], summary["IsPartial"]) == (
        True,
        False,
        False,
        False,
    )
    assert summary["Http"] == {
        "HttpURL": "http://shop.example/checkout?cart=42",
        "HttpMethod": "POST",
        "HttpStatus": 500,
        "UserAgent": "curl/8.5.0",
        "ClientIp": "10.0.0.7",
    }
    a = {"Name": "Service-A", "Names": ["Service-A"], "Type": EKS}
    b = {"Name": "Service-B", "Names": ["Service-B"], "Type": EKS}
    assert summary["EntryPoint"] == a
    assert summary["ServiceIds"] == [
        a,
        b,
        {"Name": "orders", "Names": ["orders"], "Type": "AWS::DynamoDB::Table"},
    ]
    assert summary["Annotations"] == {
        "customer_tier": [{"AnnotationValue": {"StringValue": "gold"}, "ServiceIds": [a]}],
        "cart_items": [{"AnnotationValue": {"NumberValue": 3.0}, "ServiceIds": [a, b]}],
        "express": [{"AnnotationValue": {"BooleanValue": True}, "ServiceIds": [a]}],
        "retry": [{"AnnotationValue": {"BooleanValue": False}, "ServiceIds": [b]}],
        "order_value": [{"AnnotationValue": {"NumberValue": 99.5}, "ServiceIds": [b]}],  # on a subsegment
    }
    assert summary["Users"] == [{"UserName": "alice", "ServiceIds": [a]}]
    assert summary["ResourceARNs"] == [{"ARN": "arn:aws:eks:eu-west-1:123456789012:cluster/shop"}]
    assert summary["InstanceIds"] == [{"Id": "i-0b1c2d3e4f5a6b7c8"}]
    assert summary["AvailabilityZones"] == [{"Name": "eu-west-1b"}]
    assert summary["Revision"] == 2


def test_checkout_fault_root_cause_is_the_deepest_failing_service_and_subsegment() -> None:
    summary = trace_summary(trace_facts(_traces.checkout()))
    assert summary["ErrorRootCauses"] == []
    [cause] = summary["FaultRootCauses"]
    assert cause["ClientImpacting"] is True
    [service] = cause["Services"]
    assert (service["Name"], service["Type"], service["Inferred"]) == ("Service-B", EKS, False)
    assert [e["Name"] for e in service["EntityPath"]] == ["Service-B", "handler", "save"]
    assert service["EntityPath"][-1]["Exceptions"] == [{"Name": "KeyError", "Message": "'sku'"}]


def test_throttled_remote_call_is_an_inferred_remote_node() -> None:
    facts = trace_facts(_traces.throttled())
    summary = trace_summary(facts)
    assert_fits(summary, "TraceSummary")
    assert (summary["HasError"], summary["HasThrottle"], summary["HasFault"]) == (True, True, False)
    assert facts["flags"] == ERROR | THROTTLE
    assert _edges(facts) == {
        ("Service-A", CLIENT, "Service-A", EKS, ERROR | THROTTLE),
        ("Service-A", EKS, "api.payments.example", "remote", ERROR | THROTTLE),
    }
    inferred = [n for n in _nodes(facts) if n["inferred"]]
    assert [(n["name"], n["type"]) for n in inferred] == [("api.payments.example", "remote")]
    [cause] = summary["ErrorRootCauses"]
    assert cause["Services"][0]["Name"] == "api.payments.example"
    assert cause["Services"][0]["Inferred"] is True
    assert cause["Services"][0]["EntityPath"][0]["Remote"] is True


def test_weather_ok_trace_with_an_uninstrumented_host() -> None:
    facts = trace_facts(_traces.weather())
    summary = trace_summary(facts)
    assert_fits(summary, "TraceSummary")
    assert facts["flags"] == 0
    assert [summary[k] for k in ("HasError", "HasFault", "HasThrottle", "IsPartial")] == [False] * 4
    assert ("Service-A", EKS, "api.weather.example", "remote", 0) in _edges(facts)
    assert summary["InstanceIds"] == [{"Id": "i-0a1a2a3a4a5a6a7a8"}]
    assert summary["AvailabilityZones"] == [{"Name": "eu-west-1a"}]
    assert summary["Users"] == [
        {"UserName": "bob", "ServiceIds": [{"Name": "Service-A", "Names": ["Service-A"], "Type": EKS}]}
    ]
    assert summary["FaultRootCauses"] == summary["ErrorRootCauses"] == []


def test_missing_parent_makes_the_trace_partial_and_the_orphan_its_entry() -> None:
    facts = trace_facts(_traces.orphan())
    summary = trace_summary(facts)
    assert_fits(summary, "TraceSummary")
    assert summary["IsPartial"] is True
    assert summary["EntryPoint"]["Name"] == "Service-B"
    assert _edges(facts) == {("Service-B", CLIENT, "Service-B", EKS, 0)}


def test_missing_parent_beside_a_root_is_partial_without_an_edge() -> None:
    docs = _traces.weather() + _traces.orphan()
    for doc in docs:
        doc["trace_id"] = _traces.WEATHER_ID
    facts = trace_facts(docs)
    assert facts["partial"] is True
    assert facts["services"][facts["entry"]] == ["Service-A", EKS]
    orphan = next(n for n in _nodes(facts) if n["name"] == "Service-B")
    assert orphan["root"] == 0
    assert not any(e[2] == "Service-B" for e in facts["edges"])


def test_aws_call_to_a_queue_is_named_after_the_queue_and_is_the_fault_root_cause() -> None:
    facts = trace_facts(_traces.sqs_fault())
    summary = trace_summary(facts)
    assert_fits(summary, "TraceSummary")
    # A segment without origin has no Type.
    assert summary["EntryPoint"] == {"Name": "Service-C", "Names": ["Service-C"]}
    assert ("Service-C", "", "jobs", "AWS::SQS::Queue", FAULT) in _edges(facts)
    [cause] = summary["FaultRootCauses"]
    [service] = cause["Services"]
    assert (service["Name"], service["Type"], service["Inferred"]) == ("jobs", "AWS::SQS::Queue", True)
    assert service["EntityPath"][0]["Exceptions"] == [{"Name": "ServiceUnavailable", "Message": "slow down"}]


@pytest.mark.parametrize(
    ("name", "aws", "expected"),
    [
        ("DynamoDB", {"operation": "ListTables"}, ("DynamoDB", "AWS::DynamoDB")),
        ("S3", {"bucket_name": "photos", "key": "a.png"}, ("photos", "AWS::S3::Bucket")),
        ("S3", {"operation": "ListBuckets"}, ("S3", "AWS::S3")),
        ("SNS", {"topic_arn": "arn:aws:sns:eu-west-1:1:t"}, ("SNS", "AWS::SNS")),
        ("Lambda", {"function_name": "resize"}, ("resize", "AWS::Lambda")),
        ("STS", {"operation": "GetCallerIdentity"}, ("STS", "AWS::STS")),
    ],
)
def test_inferred_aws_node_names(name: str, aws: dict[str, Any], expected: tuple[str, str]) -> None:
    doc = _segment("s000000000000001", subsegments=[_call("s000000000000002", name, "aws", aws=aws)])
    facts = trace_facts([doc])
    assert [tuple(n[:2]) for n in facts["nodes"] if n[8]] == [expected]


def test_calling_the_same_service_twice_counts_two_requests() -> None:
    a = _segment(
        "a000000000000001",
        subsegments=[_call("a000000000000002", "b", "remote"), _call("a000000000000003", "b", "remote")],
    )
    b1 = _segment("b000000000000001", name="B", parent="a000000000000002")
    b2 = _segment("b000000000000002", name="B", parent="a000000000000003")
    facts = trace_facts([a, b1, b2])
    assert [n[0] for n in facts["nodes"]].count("B") == 2
    assert [(e[0], e[2]) for e in facts["edges"]].count(("A", "B")) == 2
    assert facts["services"] == [["A", ""], ["B", ""]]


def test_parent_id_naming_a_segment_links_to_that_segment() -> None:
    gateway = _segment("g000000000000001", name="gateway")
    lam = _segment("l000000000000001", name="fn", parent="g000000000000001")
    facts = trace_facts([lam, gateway])
    assert ("gateway", "", "fn", "", 0) in _edges(facts)
    assert facts["partial"] is False


def test_in_progress_document_makes_the_trace_partial_and_ends_at_its_latest_child() -> None:
    doc = _segment("a000000000000001", subsegments=[_call("a000000000000002", "x", "local")])
    del doc["end_time"]
    doc["in_progress"] = True
    facts = trace_facts([doc])
    assert facts["partial"] is True
    assert facts["end"] == pytest.approx(_traces.T + 0.5)


def test_status_codes_set_flags_when_the_sdk_did_not() -> None:
    def flags(status: int) -> int:
        doc = _segment("a000000000000001")
        doc["http"] = {"response": {"status": status}}
        return int(trace_facts([doc])["nodes"][0][6])

    assert (flags(200), flags(404), flags(429), flags(503)) == (0, ERROR, ERROR | THROTTLE, FAULT)


def test_facts_do_not_depend_on_document_order_and_survive_json() -> None:
    docs = _traces.checkout()
    facts = trace_facts(docs)
    assert trace_facts(list(reversed(docs))) == facts
    again = json.loads(json.dumps(facts))
    assert trace_summary(again) == trace_summary(facts)


def test_junk_fields_are_ignored_and_an_empty_trace_is_refused() -> None:
    doc = _segment("a000000000000001")
    doc.update(
        annotations={"ok": 1, "nested": {"x": 1}, "list": [1]},
        http={"response": {"status": "500"}},
        user=7,
        aws="nope",
        subsegments=["x", {"name": "s"}],
    )
    facts = trace_facts([doc, "not a document", {"id": "b"}])  # type: ignore[list-item]
    assert facts["annotations"] == {"ok": [[1.0, [0]]]}
    assert facts["flags"] == 0
    assert facts["users"] == []
    with pytest.raises(ValueError, match="at least one segment"):
        trace_facts([])
    with pytest.raises(ValueError, match="at least one segment"):
        trace_facts([{"name": "no id", "start_time": 1.0}])


def test_very_deep_nesting_does_not_crash() -> None:
    leaf: dict[str, Any] = _call("d000000000000000", "db", "remote")
    for level in range(1, 500):
        leaf = {"name": f"l{level}", "id": f"d{level:015x}", "start_time": _traces.T, "subsegments": [leaf]}
    facts = trace_facts([_segment("a000000000000001", subsegments=[leaf])])
    assert facts["nodes"][0][0] == "A"


def _segment(
    seg_id: str, name: str = "A", parent: str | None = None, subsegments: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "id": seg_id,
        "trace_id": "1-6553f1ff-000000000000000000000001",
        "start_time": _traces.T,
        "end_time": _traces.T + 0.5,
    }
    if parent:
        doc["parent_id"] = parent
    if subsegments:
        doc["subsegments"] = subsegments
    return doc


def _call(sub_id: str, name: str, namespace: str, aws: dict[str, Any] | None = None) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "name": name,
        "id": sub_id,
        "start_time": _traces.T + 0.1,
        "end_time": _traces.T + 0.2,
        "namespace": namespace,
    }
    if aws is not None:
        sub["aws"] = aws
    return sub
