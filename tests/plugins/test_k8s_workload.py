"""Workload from the Pod name's shape and from owner references."""

from __future__ import annotations

import pytest

from k8sxray.plugins._workload import (
    DAEMONSET_OR_JOB,
    Workload,
    controller_of,
    deployment_from_replicaset_name,
    from_pod_name,
)


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        ("checkout-7d9f8b6c5d-x7k2p", ("Deployment", "checkout")),
        ("my-web-app-5c8f9b7d64-qz4nw", ("Deployment", "my-web-app")),
        ("redis-0", ("StatefulSet", "redis")),
        ("kafka-broker-12", ("StatefulSet", "kafka-broker")),
        ("fluent-bit-x7k2p", ("DaemonSet|Job", "fluent-bit")),
        ("nightly-report-29384720-b5wq2", ("CronJob", "nightly-report")),
        ("standalone", None),
        ("web-01", None),  # ordinals have no leading zero
        ("checkout-7d9f8b6c5d-x7k2", None),  # 4-char suffix: no controller makes it
        ("Checkout-7d9f8b6c5d-x7k2p", None),  # Pod names are lowercase
        ("ds-aeiou", None),  # vowels are never in Kubernetes' random suffixes
    ],
)
def test_from_pod_name(pod: str, expected: tuple[str, str] | None) -> None:
    found = from_pod_name(pod)
    if expected is None:
        assert found is None
    else:
        assert found == Workload(expected[0], expected[1], "pod-name")


def test_daemonset_or_job_constant() -> None:
    assert DAEMONSET_OR_JOB == "DaemonSet|Job"


def test_controller_of_prefers_the_controller() -> None:
    pod = {
        "metadata": {
            "ownerReferences": [
                {"kind": "ConfigMap", "name": "other"},
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "checkout-7d9f8b6c5d",
                    "controller": True,
                },
            ]
        }
    }
    assert controller_of(pod) == ("ReplicaSet", "checkout-7d9f8b6c5d")
    assert controller_of({"metadata": {"ownerReferences": [{"kind": "Node", "name": "n1"}]}}) == (
        "Node",
        "n1",
    )


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"metadata": None},
        {"metadata": {"ownerReferences": "x"}},
        {"metadata": {"ownerReferences": [1, {}]}},
    ],
)
def test_controller_of_garbage(obj: dict[str, object]) -> None:
    assert controller_of(obj) is None


def test_deployment_from_replicaset_name() -> None:
    labels = {"pod-template-hash": "7d9f8b6c5d"}
    assert deployment_from_replicaset_name("checkout-7d9f8b6c5d", labels) == "checkout"
    assert deployment_from_replicaset_name("checkout-7d9f8b6c5d", {}) is None
    assert deployment_from_replicaset_name("other-abc", labels) is None
