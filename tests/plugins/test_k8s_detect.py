"""detect(): outside Kubernetes (fast, no I/O), inside with fixtures, and the segment fields it yields."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _xray_schema import validate_segment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8sxray.plugins import PluginData, collect
from k8sxray.plugins._gather import select_labels
from k8sxray.plugins.kubernetes import Sources, detect

FIXTURES = Path(__file__).parent / "fixtures"
OWN = "3f1a9c2e8b7d4f60a5e1c9b8d7f6e5a4c3b2a1908f7e6d5c4b3a29180f7e6d5c"
POD = "checkout-7d9f8b6c5d-x7k2p"

DOWNWARD_ENV = {
    "KUBERNETES_SERVICE_HOST": "10.100.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
    "POD_NAME": POD,
    "POD_NAMESPACE": "shop",
    "POD_UID": "8d1e2a9f-4b5c-4e0b-9a6e-1c2d3e4f5a6b",
    "POD_IP": "10.0.3.17",
    "NODE_NAME": "ip-10-0-3-5.eu-west-1.compute.internal",
    "CONTAINER_NAME": "app",
    "K8SXRAY_CLUSTER_NAME": "prod-eu",
    "K8SXRAY_PODINFO_DIR": str(FIXTURES / "podinfo"),
}


def _sources(
    tmp_path: Path, cgroup: str = "cgroup-v2-namespaced.txt", mountinfo: str = "mountinfo-crio.txt"
) -> Sources:
    return Sources(
        cgroup=str(FIXTURES / cgroup),
        mountinfo=str(FIXTURES / mountinfo),
        service_account_dir=str(tmp_path / "no-service-account"),
        hostname=lambda: "host-name-fallback-0",
    )


# --- outside Kubernetes -------------------------------------------------------------------------

_WATCHED = ("open", "os.listdir", "os.scandir", "socket.connect", "socket.getaddrinfo", "socket.sendto")
_audit: dict[str, Any] = {"on": False, "seen": []}


def _audit_hook(event: str, args: tuple[Any, ...]) -> None:
    if _audit["on"] and event in _WATCHED:
        _audit["seen"].append((event, args[:1]))


@pytest.fixture(scope="module")
def audit() -> Iterator[dict[str, Any]]:
    sys.addaudithook(_audit_hook)  # cannot be removed; inert unless "on"
    yield _audit
    _audit["on"] = False


def test_outside_kubernetes_returns_none_without_io(audit: dict[str, Any]) -> None:
    env = {"HOME": "/root", "POD_NAME": "ignored-without-the-marker"}
    audit["seen"].clear()
    audit["on"] = True
    try:
        result = detect(env, Sources(hostname=lambda: pytest.fail("hostname read outside Kubernetes")))
    finally:
        audit["on"] = False
    assert result is None
    assert audit["seen"] == []


def test_inside_kubernetes_the_audit_hook_sees_file_reads(audit: dict[str, Any], tmp_path: Path) -> None:
    # The hook really observes reads, so the test above can fail.
    audit["seen"].clear()
    audit["on"] = True
    try:
        detect(DOWNWARD_ENV, _sources(tmp_path))
    finally:
        audit["on"] = False
    assert any(event == "open" for event, _ in audit["seen"])


def test_outside_kubernetes_startup_cost_under_5ms() -> None:
    # A fresh interpreter: import the plugin module and run detect(), best of three runs.
    code = (
        "import sys, time\n"
        "import k8sxray.plugins\n"
        "before = set(sys.modules)\n"
        "t = time.perf_counter()\n"
        "from k8sxray.plugins.kubernetes import detect\n"
        "result = detect()\n"
        "elapsed = time.perf_counter() - t\n"
        "new = sorted(set(sys.modules) - before)\n"
        "print(repr((elapsed, result, new)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        runs.append(ast.literal_eval(out.stdout))
    elapsed, result, new = min(runs)
    assert result is None
    assert elapsed < 0.005, runs
    assert not {"ssl", "http.client", "k8sxray.plugins._gather"} & set(new), new


def test_detect_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> str | None:
        raise RuntimeError("boom")

    env = {"KUBERNETES_SERVICE_HOST": "10.100.0.1"}
    sources = Sources(
        cgroup=str(tmp_path),  # a directory: unreadable as a file
        mountinfo=str(tmp_path / "missing"),
        service_account_dir=str(tmp_path),
        hostname=broken,
    )
    assert detect(env, sources) is None
    assert "Kubernetes plugin failed" in caplog.text


# --- inside Kubernetes, no API ------------------------------------------------------------------


def test_downward_api_env_volume_and_mountinfo(tmp_path: Path) -> None:
    data = detect(DOWNWARD_ENV, _sources(tmp_path))
    assert data == PluginData(
        origin="AWS::EKS::Container",
        aws={"eks": {"pod": POD, "cluster_name": "prod-eu", "container_id": OWN}},
        metadata={
            "k8s": {
                "namespace": "shop",
                "node": "ip-10-0-3-5.eu-west-1.compute.internal",
                "pod_uid": "8d1e2a9f-4b5c-4e0b-9a6e-1c2d3e4f5a6b",
                "pod_ip": "10.0.3.17",
                "container_name": "app",
                "workload": {"kind": "Deployment", "name": "checkout", "source": "pod-name"},
                "labels": {
                    "app.kubernetes.io/name": "checkout",
                    "app.kubernetes.io/version": "1.4.2",
                    "app.kubernetes.io/component": "api",
                    "app.kubernetes.io/part-of": "shop",
                    "app": "checkout",
                },
            }
        },
    )


def test_minimal_pod_uses_fallbacks_and_omits_unknowns(tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "namespace").write_text("batch")
    sources = Sources(
        cgroup=str(FIXTURES / "cgroup-v2-namespaced.txt"),
        mountinfo=str(FIXTURES / "mountinfo-containerd.txt"),  # sandbox id only: must not be used
        service_account_dir=str(sa),
        hostname=lambda: "db-0",
    )
    env = {"KUBERNETES_SERVICE_HOST": "10.100.0.1", "K8SXRAY_PODINFO_DIR": str(tmp_path / "none")}
    data = detect(env, sources)
    assert data == PluginData(
        origin="AWS::EKS::Container",
        aws={"eks": {"pod": "db-0"}},
        metadata={
            "k8s": {
                "namespace": "batch",
                "workload": {"kind": "StatefulSet", "name": "db", "source": "pod-name"},
            }
        },
    )


def test_cgroup_v1_wins_over_mountinfo(tmp_path: Path) -> None:
    data = detect(DOWNWARD_ENV, _sources(tmp_path, cgroup="cgroup-v1-docker.txt", mountinfo="missing.txt"))
    assert data is not None
    assert data.aws["eks"]["container_id"] == OWN


def test_labels_allow_list_from_env(tmp_path: Path) -> None:
    env = dict(DOWNWARD_ENV, K8SXRAY_K8S_LABELS="team, pod-template-hash ,absent")
    data = detect(env, _sources(tmp_path))
    assert data is not None
    assert data.metadata["k8s"]["labels"] == {
        "team": 'payments "core" \\ ops',
        "pod-template-hash": "7d9f8b6c5d",
    }
    data = detect(dict(DOWNWARD_ENV, K8SXRAY_K8S_LABELS="none"), _sources(tmp_path))
    assert data is not None
    assert "labels" not in data.metadata["k8s"]


def test_select_labels() -> None:
    labels = {"app": "a", "version": "", "other": "x"}
    assert select_labels(labels, None) == {"app": "a"}
    assert select_labels(labels, "  ") == {"app": "a"}
    assert select_labels(labels, "NONE") == {}
    assert select_labels(labels, "other,app") == {"other": "x", "app": "a"}


def test_registered_as_kubernetes_in_the_plugin_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DOWNWARD_ENV.items():
        monkeypatch.setenv(name, value)
    merged = collect(["kubernetes"])
    assert merged.origin == "AWS::EKS::Container"
    assert merged.aws["eks"]["pod"] == POD
    assert merged.metadata["k8s"]["namespace"] == "shop"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert collect(["kubernetes"]) == PluginData()


# --- the segment fields validate against X-Ray's published constraints ---------------------------


def _segment(data: PluginData) -> dict[str, Any]:
    """A segment document carrying *data* the way the recorder attaches it."""
    now = time.time()
    segment: dict[str, Any] = {
        "name": "checkout",
        "id": "53995c3f42cd8ad8",
        "trace_id": f"1-{int(now):08x}-bd862e3fe1be46a994272793",
        "start_time": now,
        "end_time": now + 0.01,
        "aws": {"xray": {"sdk": "k8sxray", "sdk_version": "0.1.0"}, **data.aws},
    }
    if data.origin:
        segment["origin"] = data.origin
    if data.metadata:
        segment["metadata"] = {ns: dict(values) for ns, values in data.metadata.items()}
    return segment


def test_segment_with_plugin_data_validates(tmp_path: Path) -> None:
    data = detect(DOWNWARD_ENV, _sources(tmp_path))
    assert data is not None
    validate_segment(_segment(data))


_env_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            name: _env_text
            for name in (
                "POD_NAME",
                "POD_NAMESPACE",
                "POD_UID",
                "POD_IP",
                "NODE_NAME",
                "CONTAINER_NAME",
                "K8SXRAY_CLUSTER_NAME",
                "K8SXRAY_K8S_LABELS",
            )
        },
    )
)
def test_any_environment_yields_a_valid_segment(tmp_path: Path, values: dict[str, str]) -> None:
    env = {
        "KUBERNETES_SERVICE_HOST": "10.100.0.1",
        "K8SXRAY_PODINFO_DIR": str(FIXTURES / "podinfo"),
        **values,
    }
    data = detect(env, _sources(tmp_path))
    assert data is not None
    assert data.origin == "AWS::EKS::Container"
    validate_segment(_segment(data))
