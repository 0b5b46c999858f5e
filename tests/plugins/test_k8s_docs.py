"""docs/kubernetes.md stays true: its manifests validate, its names are the ones the code reads."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from k8sxray import _env as names
from k8sxray._addresses import Address
from k8sxray._discovery import discover
from k8sxray._naming import default_service_name
from k8sxray.plugins._downward import from_env
from k8sxray.plugins._gather import DEFAULT_LABELS, DEFAULT_PODINFO_DIR
from k8sxray.plugins.kubernetes import Sources, detect

DOC = Path(__file__).parents[2] / "docs" / "kubernetes.md"


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)


def test_manifests_validate_against_the_kubernetes_schema() -> None:
    yaml = pytest.importorskip("yaml")
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    documents = [doc for block in _yaml_blocks() for doc in yaml.safe_load_all(block) if doc]
    kinds = sorted(doc["kind"] for doc in documents)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Role",
        "Role",
        "RoleBinding",
        "RoleBinding",
    ]
    for doc in documents:
        kubernetes_validate.validate(doc, "1.33.0", strict=True)


class _Recording(Mapping[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


# Read on Kubernetes but not for the Deployment to provide: settings with a default, names the
# kubelet sets, and HOST_IP, another name for K8SXRAY_NODE_IP.
NOT_IN_THE_SNIPPET = {
    names.KUBERNETES_SERVICE_HOST,
    names.KUBERNETES_SERVICE_PORT,
    names.HOST_IP,
    names.K8SXRAY_DISCOVERY_TIMEOUT,
    names.K8SXRAY_DISCOVERY_INTERVAL,
    names.K8SXRAY_PODINFO_DIR,
    names.K8SXRAY_K8S_LABELS,
    names.K8SXRAY_KUBE_API,
    names.K8SXRAY_KUBE_API_TIMEOUT,
    names.K8SXRAY_EC2_NODE,
    names.AWS_EC2_METADATA_DISABLED,
    names.AWS_EC2_METADATA_SERVICE_ENDPOINT,
}
FIELDS = {
    names.K8SXRAY_NODE_IP: "status.hostIP",
    names.POD_NAME: "metadata.name",
    names.POD_NAMESPACE: "metadata.namespace",
    names.POD_UID: "metadata.uid",
    names.POD_IP: "status.podIP",
    names.NODE_NAME: "spec.nodeName",
}


def _deployment_container() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    deployment = next(
        d for b in _yaml_blocks() for d in yaml.safe_load_all(b) if d and d["kind"] == "Deployment"
    )
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _names_read_on_kubernetes(tmp_path: Path) -> set[str]:
    """Every variable daemon discovery, the default service name and the plugin look up in a Pod."""
    env = _Recording({names.KUBERNETES_SERVICE_HOST: "10.100.0.1"})
    discover(env, namespace_file=str(tmp_path / "namespace"), resolver=lambda *_: None)
    default_service_name(env, ["app"], uwsgi_options={})
    sources = Sources(
        cgroup=str(tmp_path / "cgroup"),
        mountinfo=str(tmp_path / "mountinfo"),
        service_account_dir=str(tmp_path),
        hostname=lambda: None,
    )
    assert detect(env, sources) is not None
    return env.read


def test_the_deployment_provides_every_variable_discovery_and_the_plugin_read(tmp_path: Path) -> None:
    container = _deployment_container()
    provided = {e["name"]: e for e in container["env"]}
    read = _names_read_on_kubernetes(tmp_path)
    assert names.K8SXRAY_NODE_IP in read  # the recording sees what discovery reads
    assert read - NOT_IN_THE_SNIPPET == set(provided)
    for name, field_path in FIELDS.items():
        assert provided[name]["valueFrom"] == {"fieldRef": {"fieldPath": field_path}}, name
    assert provided[names.CONTAINER_NAME]["value"] == container["name"]
    assert provided[names.K8SXRAY_CLUSTER_NAME]["value"]
    assert container["volumeMounts"][0]["mountPath"] == DEFAULT_PODINFO_DIR


def test_with_the_snippet_segments_go_to_the_node_local_daemon(tmp_path: Path) -> None:
    # what the kubelet would put in the environment for the snippet's env entries
    downward = {"status.hostIP": "10.0.3.7", "metadata.name": "checkout-7d9f8b6c5d-x7k2p"}
    env = {names.KUBERNETES_SERVICE_HOST: "10.100.0.1"}
    for entry in _deployment_container()["env"]:
        field_path = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        env[entry["name"]] = (
            downward.get(field_path, f"value-of-{field_path}") if field_path else entry["value"]
        )
    endpoint = discover(env, resolver=lambda *_: pytest.fail("no DNS lookup with the node IP known"))
    assert endpoint.udp == Address("10.0.3.7", 2000)
    assert "K8SXRAY_NODE_IP" in endpoint.reason
    assert all(v is not None for v in vars(from_env(env)).values())
    assert default_service_name(env, ["gunicorn"], uwsgi_options={}).name == "checkout"


def test_settings_table_lists_every_variable_and_the_default_labels() -> None:
    text = DOC.read_text()
    for name in (
        names.K8SXRAY_NODE_IP,
        names.K8SXRAY_CLUSTER_NAME,
        names.K8SXRAY_PODINFO_DIR,
        names.K8SXRAY_K8S_LABELS,
        names.K8SXRAY_KUBE_API,
        names.K8SXRAY_KUBE_API_TIMEOUT,
        names.K8SXRAY_EC2_NODE,
        names.AWS_EC2_METADATA_SERVICE_ENDPOINT,
        names.AWS_EC2_METADATA_DISABLED,
    ):
        assert f"`{name}`" in text
    assert f"`{','.join(DEFAULT_LABELS)}`" in text
