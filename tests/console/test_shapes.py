"""The botocore output-shape checker the console's tests rely on rejects what does not fit."""

from __future__ import annotations

import pytest

from ._shapes import assert_fits, assert_output, problems, shape

GOOD_SERVICE = {
    "ReferenceId": 0,
    "Name": "A",
    "Names": ["A"],
    "Root": True,
    "State": "active",
    "StartTime": 1.5,
    "Edges": [{"ReferenceId": 1, "ResponseTimeHistogram": [{"Value": 0.1, "Count": 2}]}],
    "SummaryStatistics": {"OkCount": 1, "ErrorStatistics": {"ThrottleCount": 0}, "TotalResponseTime": 0.5},
}


def test_a_fitting_response_passes() -> None:
    assert_output("GetServiceGraph", {"Services": [GOOD_SERVICE], "StartTime": 1, "EndTime": 2})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Colour": "red"}, "'Colour' is not a member of Service"),
        ({"ReferenceId": "0"}, "$.ReferenceId: expected an integer, got str"),
        ({"ReferenceId": True}, "expected an integer, got bool"),
        ({"Root": 1}, "expected a boolean, got int"),
        ({"StartTime": "2024-01-01"}, "expected a number (timestamp), got str"),
        ({"Names": "A"}, "expected a list"),
        (
            {"Edges": [{"ResponseTimeHistogram": [{"Value": 0.1, "Count": 1.5}]}]},
            "Count: expected an integer",
        ),
        ({"SummaryStatistics": {"OkCount": 1, "Fault": 2}}, "'Fault' is not a member of ServiceStatistics"),
    ],
)
def test_a_wrong_shape_is_rejected_with_where(change: dict[str, object], message: str) -> None:
    found = problems({**GOOD_SERVICE, **change}, shape("Service"))
    assert any(message in p for p in found), found
    with pytest.raises(AssertionError):
        assert_fits({**GOOD_SERVICE, **change}, "Service")


def test_maps_and_required_members_are_checked() -> None:
    annotations = {"k": [{"AnnotationValue": {"NumberValue": "1"}}]}
    assert any("NumberValue: expected a number" in p for p in problems(annotations, shape("Annotations")))
    # SamplingRule has required members.
    assert any("required member" in p for p in problems({}, shape("SamplingRule")))


def test_botocore_parses_the_console_shapes_from_json() -> None:
    """What the checker passes, botocore's own restJson parser reads back (timestamps become datetimes)."""
    import datetime
    import json

    from botocore.parsers import RestJSONParser

    from k8sxray.console.graph import service_graph
    from k8sxray.console.trace import trace_facts, trace_summary

    from . import _traces
    from ._shapes import output_shape

    facts = trace_facts(_traces.checkout())
    bodies = {
        "GetTraceSummaries": {"TraceSummaries": [trace_summary(facts)], "ApproximateTime": _traces.T},
        "GetServiceGraph": {
            "Services": service_graph(facts["nodes"], facts["edges"]),
            "StartTime": _traces.T,
        },
    }
    for operation, body in bodies.items():
        assert_output(operation, body)
        response = {"status_code": 200, "headers": {}, "body": json.dumps(body).encode()}
        parsed = RestJSONParser().parse(response, output_shape(operation))
        assert "Error" not in parsed, parsed
    summary = RestJSONParser().parse(
        {"status_code": 200, "headers": {}, "body": json.dumps(bodies["GetTraceSummaries"]).encode()},
        output_shape("GetTraceSummaries"),
    )["TraceSummaries"][0]
    assert isinstance(summary["StartTime"], datetime.datetime)
    assert summary["StartTime"].timestamp() == _traces.T
    assert summary["Annotations"]["express"][0]["AnnotationValue"] == {"BooleanValue": True}
