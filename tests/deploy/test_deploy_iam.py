"""The IAM policy the daemon's role needs: exactly the X-Ray actions it calls, on every resource."""

from __future__ import annotations

import json

from deploy_helpers import ROOT

POLICY = ROOT / "deploy" / "iam" / "policy.json"
ACTIONS = {
    "xray:PutTraceSegments",  # the segments
    "xray:PutTelemetryRecords",  # the daemon's telemetry (off with --no-telemetry)
    "xray:GetSamplingRules",  # the sampling calls it forwards for the applications
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
    "xray:PutSpans",  # --sink otlp, to X-Ray's OTLP endpoint
}


def test_the_policy_allows_exactly_the_daemons_actions_on_every_resource() -> None:
    policy = json.loads(POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    statements = policy["Statement"]
    assert isinstance(statements, list)
    assert all(s["Effect"] == "Allow" for s in statements)
    # these actions name no resource type in IAM: only "*" grants them
    assert all(s["Resource"] == "*" for s in statements)
    assert all("Condition" not in s and "NotAction" not in s for s in statements)
    actions = [
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert sorted(actions) == sorted(ACTIONS)  # no wildcard, no duplicate, none missing
