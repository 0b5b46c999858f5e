"""The K8SXRAY_KUBE_API path against a real HTTPS server on loopback (trustme CA, token file)."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from _kube_fake import TOKEN, FakeKubeAPI, Route

from k8sxray.plugins import PluginData
from k8sxray.plugins._kubeapi import ApiSettings, lookup
from k8sxray.plugins.kubernetes import Sources, detect

FIXTURES = Path(__file__).parent / "fixtures"
OWN = "3f1a9c2e8b7d4f60a5e1c9b8d7f6e5a4c3b2a1908f7e6d5c4b3a29180f7e6d5c"
POD = "checkout-7d9f8b6c5d-x7k2p"
POD_PATH = f"/api/v1/namespaces/shop/pods/{POD}"
RS_PATH = "/apis/apps/v1/namespaces/shop/replicasets/checkout-7d9f8b6c5d"
CLUSTER_INFO_PATH = "/api/v1/namespaces/amazon-cloudwatch/configmaps/cluster-info"
NODE = "ip-10-0-3-5.eu-west-1.compute.internal"
NODE_PATH = f"/api/v1/nodes/{NODE}"


def pod_json() -> dict[str, Any]:
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": POD,
            "generateName": "checkout-7d9f8b6c5d-",
            "namespace": "shop",
            "uid": "8d1e2a9f-4b5c-4e0b-9a6e-1c2d3e4f5a6b",
            "resourceVersion": "123456",
            "labels": {
                "app.kubernetes.io/name": "checkout",
                "app.kubernetes.io/version": "1.4.2",
                "pod-template-hash": "7d9f8b6c5d",
                "secret-ish": "not-selected",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "checkout-7d9f8b6c5d",
                    "uid": "0b0c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "shop/checkout:1.4.2"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.0.3.17",
            "containerStatuses": [
                {"name": "app", "containerID": f"containerd://{OWN}", "ready": True},
                {"name": "sidecar", "containerID": "containerd://" + "b" * 64, "ready": True},
            ],
        },
    }


def replicaset_json() -> dict[str, Any]:
    return {
        "kind": "ReplicaSet",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": "checkout-7d9f8b6c5d",
            "namespace": "shop",
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout", "controller": True}
            ],
        },
    }


def cluster_info_json(name: str = "prod-eu") -> dict[str, Any]:
    return {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "cluster-info", "namespace": "amazon-cloudwatch"},
        "data": {"cluster.name": name, "logs.region": "eu-west-1"},
    }


def node_json(labels: dict[str, str]) -> dict[str, Any]:
    return {"kind": "Node", "apiVersion": "v1", "metadata": {"name": NODE, "labels": labels}}


def _env(api: FakeKubeAPI, **extra: str) -> dict[str, str]:
    env = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(api.port),
        "K8SXRAY_KUBE_API": "1",
        "K8SXRAY_PODINFO_DIR": "/nonexistent-podinfo",
        "POD_NAME": POD,
    }
    env.update(extra)
    return env


def _sources(service_account: Path) -> Sources:
    return Sources(
        cgroup=str(FIXTURES / "cgroup-v2-namespaced.txt"),
        mountinfo=str(FIXTURES / "mountinfo-containerd.txt"),  # only the sandbox id: no answer
        service_account_dir=str(service_account),
    )


def _detect(api: FakeKubeAPI, service_account: Path, **extra: str) -> PluginData:
    data = detect(_env(api, **extra), _sources(service_account))
    assert data is not None
    return data


def test_pod_replicaset_deployment_and_cluster_info(kube_api: FakeKubeAPI, service_account: Path) -> None:
    kube_api.json(POD_PATH, pod_json())
    kube_api.json(RS_PATH, replicaset_json())
    kube_api.json(CLUSTER_INFO_PATH, cluster_info_json())
    data = _detect(kube_api, service_account, CONTAINER_NAME="app")
    assert data.origin == "AWS::EKS::Container"
    assert data.aws == {"eks": {"pod": POD, "cluster_name": "prod-eu", "container_id": OWN}}
    assert data.metadata == {
        "k8s": {
            "namespace": "shop",
            "node": NODE,
            "pod_uid": "8d1e2a9f-4b5c-4e0b-9a6e-1c2d3e4f5a6b",
            "pod_ip": "10.0.3.17",
            "container_name": "app",
            "workload": {"kind": "Deployment", "name": "checkout", "source": "api"},
            "labels": {"app.kubernetes.io/name": "checkout", "app.kubernetes.io/version": "1.4.2"},
        }
    }
    assert [path for path, _ in kube_api.requests] == [POD_PATH, RS_PATH, CLUSTER_INFO_PATH]
    assert {auth for _, auth in kube_api.requests} == {f"Bearer {TOKEN}"}


def test_cluster_name_from_node_labels_when_no_cluster_info(
    kube_api: FakeKubeAPI, service_account: Path
) -> None:
    kube_api.json(POD_PATH, pod_json())
    kube_api.json(RS_PATH, replicaset_json())
    kube_api.json(
        NODE_PATH, node_json({"alpha.eksctl.io/cluster-name": "staging", "kubernetes.io/os": "linux"})
    )
    data = _detect(kube_api, service_account)
    assert data.aws["eks"]["cluster_name"] == "staging"
    # Two containers and no CONTAINER_NAME: the status cannot tell which one we are.
    assert "container_id" not in data.aws["eks"]
    assert [p for p, _ in kube_api.requests] == [POD_PATH, RS_PATH, CLUSTER_INFO_PATH, NODE_PATH]


def test_cluster_name_env_skips_the_cluster_lookups(kube_api: FakeKubeAPI, service_account: Path) -> None:
    kube_api.json(POD_PATH, pod_json())
    kube_api.json(RS_PATH, replicaset_json())
    data = _detect(kube_api, service_account, K8SXRAY_CLUSTER_NAME="from-env")
    assert data.aws["eks"]["cluster_name"] == "from-env"
    assert [p for p, _ in kube_api.requests] == [POD_PATH, RS_PATH]


def test_forbidden_logs_one_warning_naming_each_permission(
    kube_api: FakeKubeAPI, service_account: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kube_api.forbid(POD_PATH, "pods", POD, "shop")
    kube_api.forbid(CLUSTER_INFO_PATH, "configmaps", "cluster-info", "amazon-cloudwatch")
    kube_api.forbid(NODE_PATH, "nodes", NODE, None)
    caplog.set_level(logging.DEBUG, logger="k8sxray")
    data = _detect(kube_api, service_account, NODE_NAME=NODE)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert 'get pods in namespace "shop"' in message
    assert 'get configmaps in namespace "amazon-cloudwatch"' in message
    assert "get nodes cluster-wide" in message
    assert "K8SXRAY_KUBE_API" in message
    assert TOKEN not in caplog.text
    # The Downward API data is still there; the workload is the Pod-name guess.
    assert data.aws == {"eks": {"pod": POD}}
    assert data.metadata["k8s"]["workload"] == {
        "kind": "Deployment",
        "name": "checkout",
        "source": "pod-name",
    }
    assert data.metadata["k8s"]["namespace"] == "shop"  # from the service-account file


def test_unauthorized_is_reported_like_forbidden(
    kube_api: FakeKubeAPI, service_account: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kube_api.json(POD_PATH, {"kind": "Status", "code": 401, "reason": "Unauthorized"}, status=401)
    kube_api.json(CLUSTER_INFO_PATH, cluster_info_json())
    data = _detect(kube_api, service_account)
    assert data.aws["eks"]["cluster_name"] == "prod-eu"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert 'get pods in namespace "shop"' in warnings[0]


def test_replicaset_forbidden_falls_back_to_its_name(
    kube_api: FakeKubeAPI, service_account: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kube_api.json(POD_PATH, pod_json())
    kube_api.forbid(RS_PATH, "replicasets", "checkout-7d9f8b6c5d", "shop")
    kube_api.json(CLUSTER_INFO_PATH, cluster_info_json())
    data = _detect(kube_api, service_account)
    assert data.metadata["k8s"]["workload"] == {
        "kind": "Deployment",
        "name": "checkout",
        "source": "api+replicaset-name",
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert 'get replicasets.apps in namespace "shop"' in warnings[0]


def test_statefulset_owner(kube_api: FakeKubeAPI, service_account: Path) -> None:
    pod = pod_json()
    pod["metadata"]["ownerReferences"] = [{"kind": "StatefulSet", "name": "checkout-db", "controller": True}]
    kube_api.json(POD_PATH, pod)
    data = _detect(kube_api, service_account)
    assert data.metadata["k8s"]["workload"] == {"kind": "StatefulSet", "name": "checkout-db", "source": "api"}


def test_pod_not_found_is_quiet_and_falls_back(
    kube_api: FakeKubeAPI, service_account: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _detect(kube_api, service_account)  # every path answers 404
    assert data.aws == {"eks": {"pod": POD}}
    assert data.metadata["k8s"]["workload"]["source"] == "pod-name"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_slow_answer_is_bounded_by_the_timeout(
    kube_api: FakeKubeAPI, service_account: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kube_api.json(POD_PATH, pod_json(), delay=5.0)
    start = time.monotonic()
    data = _detect(kube_api, service_account, K8SXRAY_KUBE_API_TIMEOUT="0.3")
    elapsed = time.monotonic() - start
    assert elapsed < 0.9, elapsed
    assert data.aws == {"eks": {"pod": POD}}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "Kubernetes API lookup incomplete" in warnings[0]


def test_default_timeout_is_about_one_second(kube_api: FakeKubeAPI, service_account: Path) -> None:
    kube_api.json(POD_PATH, pod_json(), delay=5.0)
    start = time.monotonic()
    _detect(kube_api, service_account)
    assert 0.9 < time.monotonic() - start < 1.6


@pytest.mark.parametrize(
    "case",
    [
        (b"{not json", 200, "not JSON"),
        (b"[1, 2]", 200, "not an object"),
        (b"\xff\xfe garbage", 200, "not JSON"),
        (b"{}", 500, "HTTP 500"),
    ],
)
def test_garbage_answers(
    kube_api: FakeKubeAPI,
    service_account: Path,
    caplog: pytest.LogCaptureFixture,
    case: tuple[bytes, int, str],
) -> None:
    body, status, problem = case
    kube_api.routes[POD_PATH] = Route(status, body)
    kube_api.json(CLUSTER_INFO_PATH, {"kind": "ConfigMap", "data": {"cluster.name": 42}})  # wrong type
    data = _detect(kube_api, service_account)
    assert data.aws == {"eks": {"pod": POD}}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert problem in warnings[0]


def test_untrusted_certificate_is_a_problem_not_a_crash(
    kube_api: FakeKubeAPI, service_account: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trustme.CA().cert_pem.write_to_path(str(service_account / "ca.crt"))  # a different CA
    kube_api.json(POD_PATH, pod_json())
    data = _detect(kube_api, service_account)
    assert data.aws == {"eks": {"pod": POD}}
    assert kube_api.requests == []
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text or "certificate verify failed" in caplog.text


def test_connection_refused(service_account: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # find a free port, then close it so nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(port),
        "K8SXRAY_KUBE_API": "true",
        "POD_NAME": POD,
        "K8SXRAY_PODINFO_DIR": "/nonexistent-podinfo",
    }
    start = time.monotonic()
    data = detect(env, _sources(service_account))
    assert time.monotonic() - start < 0.5
    assert data is not None
    assert data.aws == {"eks": {"pod": POD}}
    assert "ConnectionRefusedError" in caplog.text


def test_missing_token(
    kube_api: FakeKubeAPI, service_account: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (service_account / "token").unlink()
    data = _detect(kube_api, service_account)
    assert data.aws == {"eks": {"pod": POD}}
    assert kube_api.requests == []
    assert "cannot use the service account" in caplog.text


def test_api_off_by_default_makes_no_request(kube_api: FakeKubeAPI, service_account: Path) -> None:
    kube_api.json(POD_PATH, pod_json())
    env = _env(kube_api)
    del env["K8SXRAY_KUBE_API"]
    assert detect(env, _sources(service_account)) is not None
    assert kube_api.requests == []


def test_lookup_directly_with_injected_settings(kube_api: FakeKubeAPI, service_account: Path) -> None:
    kube_api.json(POD_PATH, pod_json())
    settings = ApiSettings(
        host="127.0.0.1",
        port=kube_api.port,
        token_path=str(service_account / "token"),
        ca_path=str(service_account / "ca.crt"),
        timeout=1.0,
    )
    facts = lookup(settings, "shop", POD, container_name="sidecar", want_cluster=False)
    assert facts.container_id == "b" * 64
    assert facts.workload is not None
    # The ReplicaSet GET answered 404: its name and the pod-template-hash label still tell.
    assert (facts.workload.kind, facts.workload.name) == ("Deployment", "checkout")
    assert facts.workload.source == "api+replicaset-name"
    assert facts.problems == []
    assert facts.denied == []


def test_default_settings_from_the_kubelets_variables() -> None:
    from k8sxray.plugins._kubeapi import default_settings

    settings = default_settings({"KUBERNETES_SERVICE_HOST": "10.100.0.1"}, "/sa", 1.0)
    assert settings == ApiSettings("10.100.0.1", 443, "/sa/token", "/sa/ca.crt", 1.0)
    assert (
        default_settings({"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "x"}, "/sa", 1.0) is None
    )
    assert (
        default_settings({"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "70000"}, "/sa", 1.0)
        is None
    )
    assert default_settings({}, "/sa", 1.0) is None


def test_api_cannot_be_asked_without_a_namespace(
    kube_api: FakeKubeAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sources = Sources(
        cgroup=str(FIXTURES / "cgroup-v2-namespaced.txt"),
        mountinfo=str(FIXTURES / "mountinfo-docker.txt"),
        service_account_dir=str(tmp_path),  # no namespace file
    )
    data = detect(_env(kube_api), sources)
    assert data is not None
    assert kube_api.requests == []
    assert "cannot be asked" in caplog.text


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "11", "nan"])
def test_bad_api_timeout_falls_back_to_one_second(
    kube_api: FakeKubeAPI, service_account: Path, caplog: pytest.LogCaptureFixture, raw: str
) -> None:
    kube_api.json(POD_PATH, pod_json())
    data = _detect(kube_api, service_account, K8SXRAY_KUBE_API_TIMEOUT=raw)
    assert data.metadata["k8s"]["pod_uid"] == "8d1e2a9f-4b5c-4e0b-9a6e-1c2d3e4f5a6b"
    assert "K8SXRAY_KUBE_API_TIMEOUT" in caplog.text
