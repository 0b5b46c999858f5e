"""X-Ray's published segment-document constraints, as a test helper (names, types, lengths)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_ORIGINS = {
    "AWS::EC2::Instance",
    "AWS::ECS::Container",
    "AWS::EKS::Container",
    "AWS::ElasticBeanstalk::Environment",
}
_NAME = re.compile(r"^[\w\s.:/%&#=+\\\-@]{1,200}$")


def validate_segment(doc: Mapping[str, Any]) -> None:
    """Check the fields X-Ray documents for a segment (names, types, lengths) and the plugin's."""
    assert _NAME.match(doc["name"])
    assert re.fullmatch(r"[0-9a-f]{16}", doc["id"])
    assert re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", doc["trace_id"])
    assert isinstance(doc["start_time"], float)
    assert isinstance(doc["end_time"], float)
    if "origin" in doc:
        assert doc["origin"] in _ORIGINS
    eks = doc.get("aws", {}).get("eks")
    if eks is not None:
        assert set(eks) <= {"pod", "cluster_name", "container_id"}
        assert all(isinstance(v, str) and 0 < len(v) <= 256 and v == v.strip() for v in eks.values())
        if "container_id" in eks:
            assert re.fullmatch(r"[0-9a-f]{64}", eks["container_id"])
    ec2 = doc.get("aws", {}).get("ec2")
    if ec2 is not None:
        assert set(ec2) <= {"instance_id", "availability_zone", "instance_type", "ami_id"}
        assert all(isinstance(v, str) and 0 < len(v) <= 256 for v in ec2.values())
    for namespace, values in doc.get("metadata", {}).items():
        assert not namespace.startswith("AWS.")
        assert isinstance(values, dict)
    k8s = doc.get("metadata", {}).get("k8s", {})
    for key in ("namespace", "node", "pod_uid", "pod_ip", "container_name"):
        if key in k8s:
            assert isinstance(k8s[key], str)
            assert 0 < len(k8s[key]) <= 256
    if "workload" in k8s:
        assert set(k8s["workload"]) == {"kind", "name", "source"}
        assert all(isinstance(v, str) and v for v in k8s["workload"].values())
    if "labels" in k8s:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in k8s["labels"].items())
    encoded = json.dumps(doc, ensure_ascii=False).encode()
    assert len(encoded) < 64_000
    assert json.loads(encoded) == doc
