"""docs/kubernetes.md stays true: its manifests validate, its names are the ones the code reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from k8sxray import _env as names
from k8sxray.plugins._downward import from_env
from k8sxray.plugins._gather import DEFAULT_LABELS, DEFAULT_PODINFO_DIR

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


def test_deployment_env_is_what_the_plugin_reads() -> None:
    yaml = pytest.importorskip("yaml")
    deployment = next(
        d for b in _yaml_blocks() for d in yaml.safe_load_all(b) if d and d["kind"] == "Deployment"
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env_names = [e["name"] for e in container["env"]]
    assert env_names == [
        names.POD_NAME,
        names.POD_NAMESPACE,
        names.POD_UID,
        names.POD_IP,
        names.NODE_NAME,
        names.CONTAINER_NAME,
        names.K8SXRAY_CLUSTER_NAME,
    ]
    fake = {name: f"value-of-{name}" for name in env_names}
    assert all(v is not None for v in vars(from_env(fake)).values())
    mount = container["volumeMounts"][0]["mountPath"]
    assert mount == DEFAULT_PODINFO_DIR
    assert container["name"] == next(e["value"] for e in container["env"] if e["name"] == "CONTAINER_NAME")


def test_settings_table_lists_every_variable_and_the_default_labels() -> None:
    text = DOC.read_text()
    for name in (
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
