"""The optional EC2 node identity (K8SXRAY_EC2_NODE=1) against a fake IMDSv2 on loopback."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from _imds_fake import TOKEN, FakeImds
from _xray_schema import validate_segment

from k8sxray.plugins import PluginData
from k8sxray.plugins._imds import node_identity
from k8sxray.plugins.kubernetes import Sources, detect

FIXTURES = Path(__file__).parent / "fixtures"


def _detect(imds: FakeImds, **extra: str) -> PluginData:
    env = {
        "KUBERNETES_SERVICE_HOST": "10.100.0.1",
        "POD_NAME": "checkout-7d9f8b6c5d-x7k2p",
        "K8SXRAY_PODINFO_DIR": "/nonexistent-podinfo",
        "K8SXRAY_EC2_NODE": "1",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{imds.port}/",
        **extra,
    }
    sources = Sources(
        cgroup=str(FIXTURES / "cgroup-v1-docker.txt"),
        mountinfo=str(FIXTURES / "mountinfo-docker.txt"),
        service_account_dir="/nonexistent-sa",
    )
    data = detect(env, sources)
    assert data is not None
    return data


def test_node_identity_in_aws_ec2(imds: FakeImds) -> None:
    data = _detect(imds)
    assert data.origin == "AWS::EKS::Container"  # EKS wins over EC2
    assert data.aws["ec2"] == {
        "instance_id": "i-0123456789abcdef0",
        "availability_zone": "eu-west-1b",
        "instance_type": "m6i.large",
        "ami_id": "ami-0abcdef1234567890",
    }
    assert data.aws["eks"]["pod"] == "checkout-7d9f8b6c5d-x7k2p"
    now = time.time()
    validate_segment(
        {
            "name": "checkout",
            "id": "53995c3f42cd8ad8",
            "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
            "start_time": now,
            "end_time": now + 0.01,
            "origin": data.origin,
            "aws": dict(data.aws),
        }
    )
    (put, put_path, put_headers), (get, get_path, get_headers) = imds.requests
    assert (put, put_path) == ("PUT", "/latest/api/token")
    assert put_headers["X-aws-ec2-metadata-token-ttl-seconds"] == "60"
    assert (get, get_path) == ("GET", "/latest/dynamic/instance-identity/document")
    assert get_headers["X-aws-ec2-metadata-token"] == TOKEN


@pytest.mark.parametrize(
    ("put_status", "document", "reason"),
    [
        (403, b"{}", "HTTP 403"),  # IMDS off, or the hop limit stops the answer
        (200, b"<html>", "not JSON"),
        (200, b"[]", "not a JSON object"),
        (200, b'{"region": "eu-west-1"}', "no instanceId"),
    ],
)
def test_failures_leave_ec2_out_with_one_warning(
    imds: FakeImds, caplog: pytest.LogCaptureFixture, put_status: int, document: bytes, reason: str
) -> None:
    imds.put_status = put_status
    imds.document = document
    data = _detect(imds)
    assert "ec2" not in data.aws
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert reason in warnings[0]
    assert "hop" in warnings[0]


def test_slow_imds_is_bounded(imds: FakeImds) -> None:
    imds.delay = 5.0
    start = time.monotonic()
    found, reason = node_identity(f"http://127.0.0.1:{imds.port}", timeout=0.3)
    assert time.monotonic() - start < 0.8
    assert found is None
    assert reason


def test_off_by_default_and_when_disabled(imds: FakeImds, caplog: pytest.LogCaptureFixture) -> None:
    assert "ec2" not in _detect(imds, K8SXRAY_EC2_NODE="").aws
    assert "ec2" not in _detect(imds, AWS_EC2_METADATA_DISABLED="true").aws
    assert imds.requests == []
    assert "AWS_EC2_METADATA_DISABLED" in caplog.text


def test_bad_endpoint_is_a_reason_not_a_crash() -> None:
    found, reason = node_identity("https://127.0.0.1:1", timeout=0.2)
    assert found is None
    assert "unsupported endpoint" in reason
