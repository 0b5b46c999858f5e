"""Helpers for the deploy tests: the manifests as ``kubectl kustomize`` renders them."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
EXPECTED: dict[str, set[tuple[str, str]]] = {
    "base": {
        ("ServiceAccount", "xray-daemon"),
        ("ConfigMap", "xray-daemon-config"),
        ("DaemonSet", "xray-daemon"),
        ("Service", "xray-service"),
    },
    "overlays/local": {
        ("ServiceAccount", "xray-daemon"),
        ("ConfigMap", "xray-daemon-config"),
        ("DaemonSet", "xray-daemon"),
        ("Service", "xray-service"),
        ("Deployment", "xray-console"),
        ("Service", "xray-console"),
    },
    "overlays/node-local-service": {
        ("ServiceAccount", "xray-daemon"),
        ("ConfigMap", "xray-daemon-config"),
        ("DaemonSet", "xray-daemon"),
        ("Service", "xray-service"),
    },
    "examples/base": {
        ("ServiceAccount", "k8sxray-examples"),
        ("Deployment", "service-a"),
        ("Service", "service-a"),
        ("Deployment", "service-b"),
        ("Service", "service-b"),
    },
    "examples/with-kube-api": {
        ("ServiceAccount", "k8sxray-examples"),
        ("Deployment", "service-a"),
        ("Service", "service-a"),
        ("Deployment", "service-b"),
        ("Service", "service-b"),
        ("Role", "k8sxray-pod-reader"),
        ("RoleBinding", "k8sxray-pod-reader"),
    },
    "examples/sidecar": {
        ("ServiceAccount", "k8sxray-examples"),
        ("Deployment", "service-a"),
        ("Service", "service-a"),
        ("Deployment", "service-b"),
        ("Service", "service-b"),
    },
}
"""The objects each kustomization under deploy/kubernetes renders, by kind and name (generated names
without their hash suffix). A test keeps the list of kustomizations complete."""
KUSTOMIZATIONS = tuple(EXPECTED)
WORKLOADS = sorted(
    (k, kind, name)
    for k, objects in EXPECTED.items()
    for kind, name in objects
    if kind in ("DaemonSet", "Deployment")
)
"""Every workload, as (kustomization, kind, name)."""
VERSIONS = ("1.30.0", "1.33.0")
"""Kubernetes versions every rendered manifest is validated against: a recent one and a current one."""

Doc = dict[str, Any]


def needs(tool: str) -> None:
    """Skip the calling test, with the reason, when ``tool`` is not on PATH."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (kubectl ships kustomize; hadolint comes from the dev extra)")


@functools.cache
def rendered_text(kustomization: str) -> str:
    """``kubectl kustomize`` of one directory; a failure is an assertion naming kubectl's message."""
    needs("kubectl")
    done = subprocess.run(
        ["kubectl", "kustomize", str(KUBE / kustomization)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {kustomization} failed:\n{done.stderr}"
    return done.stdout


def render(kustomization: str) -> list[Doc]:
    docs = [d for d in yaml.safe_load_all(rendered_text(kustomization)) if d]
    assert docs, f"{kustomization} renders nothing"
    return docs


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def named(docs: list[Doc], kind: str, prefix: str) -> Doc:
    """The one ``kind`` whose name starts with ``prefix`` (generated ConfigMaps carry a hash suffix)."""
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix)]
    assert len(found) == 1, f"expected one {kind}/{prefix}*, found {len(found)}"
    return found[0]


def workloads(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d["kind"] in ("DaemonSet", "Deployment", "StatefulSet", "Job")]


def all_containers(workload: Doc) -> list[Doc]:
    """The Pod's containers and init containers (sidecars among them)."""
    pod = workload["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def container(workload: Doc, name: str | None = None) -> Doc:
    """The workload's only container, or the one called ``name`` (init containers included)."""
    containers = workload["spec"]["template"]["spec"]["containers"]
    if name is not None:
        containers = all_containers(workload)
    if name is None:
        assert len(containers) == 1, f"{workload['metadata']['name']}: more than one container"
        return dict(containers[0])
    return dict(next(c for c in containers if c["name"] == name))


def env_values(c: Doc) -> dict[str, Any]:
    """Each variable's literal ``value``, or its ``valueFrom`` mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def expand(args: list[str], environ: dict[str, str]) -> list[str]:
    """Kubernetes' ``$(VAR)`` expansion in ``args``, from ``environ``."""
    out = []
    for arg in args:
        text = arg
        for name, value in environ.items():
            text = text.replace(f"$({name})", value)
        assert "$(" not in text, f"unexpanded variable in {arg!r}"
        out.append(text)
    return out
