"""The rendered workloads, field by field: Pod Security, ports, probes, resources, and the daemon's
own parser reading the arguments and the cfg.yaml the manifests give it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import (
    KUSTOMIZATIONS,
    WORKLOADS,
    Doc,
    all_containers,
    container,
    env_values,
    expand,
    find,
    named,
    render,
    workloads,
)

from k8sxray import _env
from k8sxray.daemon import settings as daemon_settings

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}  # fmt: skip
"""The volume types the "restricted" Pod Security profile allows."""


def _ids(item: tuple[str, str, str]) -> str:
    return f"{item[0]}:{item[1]}/{item[2]}"


def test_every_workload_is_checked() -> None:
    rendered = {(k, w["kind"], w["metadata"]["name"]) for k in KUSTOMIZATIONS for w in workloads(render(k))}
    assert rendered == set(WORKLOADS)


def _parse(args: list[str], config: Doc | None, tmp_path: Path, memory_limit: str = "max") -> Any:
    """The daemon's own settings for these arguments: the ConfigMap's cfg.yaml written where -c
    points, and a cgroup whose memory limit is the container's."""
    args = list(args)
    if "-c" in args:
        assert config is not None, "-c given but no ConfigMap"
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(config["data"]["cfg.yaml"])
        args[args.index("-c") + 1] = str(cfg)
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir(exist_ok=True)
    (cgroup / "memory.max").write_text(memory_limit)
    return daemon_settings.parse(args, environ={}, cgroup_root=cgroup)


def _bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return int(quantity.removesuffix(unit)) * factor
    return int(quantity)


@pytest.mark.parametrize("item", WORKLOADS, ids=_ids)
def test_every_workload_meets_the_restricted_profile(item: tuple[str, str, str]) -> None:
    kustomization, kind, name = item
    workload = find(render(kustomization), kind, name)
    pod = workload["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert isinstance(security["runAsUser"], int)
    assert security["runAsUser"] > 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    if name.startswith("xray-"):  # the daemon and the console never call the Kubernetes API
        assert pod["automountServiceAccountToken"] is False
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        assert kinds <= RESTRICTED_VOLUMES, volume
    for init in pod.get("initContainers", []):
        assert init.get("restartPolicy") == "Always", "init containers only as sidecars"
    for c in all_containers(workload):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc.get("privileged", False) is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert "runAsUser" not in sc or sc["runAsUser"] > 0
        assert c["resources"]["requests"]["cpu"]
        assert c["resources"]["requests"]["memory"]
        assert c["resources"]["limits"]["memory"]
        assert c["imagePullPolicy"] == "IfNotPresent"
        assert c["readinessProbe"]
        assert c["livenessProbe"]


@pytest.mark.parametrize("item", WORKLOADS, ids=_ids)
def test_only_the_node_local_daemonset_binds_host_ports(item: tuple[str, str, str]) -> None:
    kustomization, kind, name = item
    workload = find(render(kustomization), kind, name)
    ports = [p for c in all_containers(workload) for p in c.get("ports", [])]
    host = sorted((p["hostPort"], p["containerPort"], p["protocol"]) for p in ports if "hostPort" in p)
    if kind == "DaemonSet" and kustomization != "overlays/node-local-service":
        assert host == [(2000, 2000, "TCP"), (2000, 2000, "UDP"), (4318, 4318, "TCP")]
    else:
        assert host == []


@pytest.mark.parametrize("kustomization", ["base", "overlays/local", "overlays/node-local-service"])
def test_the_daemonset_as_the_daemon_reads_it(kustomization: str, tmp_path: Path) -> None:
    docs = render(kustomization)
    daemonset = find(docs, "DaemonSet", "xray-daemon")
    pod = daemonset["spec"]["template"]["spec"]
    c = container(daemonset, "xray-daemon")
    config = named(docs, "ConfigMap", "xray-daemon-config-")
    limit = c["resources"]["limits"]["memory"]
    assert limit == "96Mi"
    s = _parse(c["args"], config, tmp_path, str(_bytes(limit)))

    # what the ports and probes expect is what the daemon binds
    assert s.udp == ("0.0.0.0", 2000)
    assert s.tcp == ("0.0.0.0", 2000)
    assert s.http == ("0.0.0.0", 2020)
    assert s.otlp == ("0.0.0.0", 4318)
    by_name = {p["name"]: p for p in c["ports"]}
    assert (by_name["xray-udp"]["containerPort"], by_name["xray-udp"]["protocol"]) == (2000, "UDP")
    assert (by_name["xray-tcp"]["containerPort"], by_name["xray-tcp"]["protocol"]) == (2000, "TCP")
    assert (by_name["otlp-http"]["containerPort"], by_name["otlp-http"]["protocol"]) == (4318, "TCP")
    assert by_name["http"]["containerPort"] == 2020
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}

    # never the local store by accident, the buffer from the memory limit, a grace period
    # longer than the flush
    assert s.sink == "xray"
    assert s.buffer_bytes == 24 * 1024 * 1024
    assert pod["terminationGracePeriodSeconds"] >= s.shutdown_timeout + 5
    assert s.config_file is not None
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == mounts["/etc/amazon/xray"])
    assert volume["configMap"]["name"] == config["metadata"]["name"]

    # the Service reaches the ports by name
    service = find(docs, "Service", "xray-service")
    assert service["spec"]["selector"] == daemonset["spec"]["selector"]["matchLabels"]
    ports = {(p["port"], p["protocol"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {(2000, "UDP", "xray-udp"), (2000, "TCP", "xray-tcp"), (4318, "TCP", "otlp-http")}
    local = service["spec"].get("internalTrafficPolicy")
    assert local == ("Local" if kustomization == "overlays/node-local-service" else None)


def test_the_config_map_is_the_official_daemons_format(tmp_path: Path) -> None:
    config = named(render("base"), "ConfigMap", "xray-daemon-config-")
    path = tmp_path / "cfg.yaml"
    path.write_text(config["data"]["cfg.yaml"])
    data = daemon_settings.load_yaml(path)  # an unknown key raises
    assert data["Version"] == 2
    assert data["Socket"] == {"UDPAddress": "0.0.0.0:2000", "TCPAddress": "0.0.0.0:2000"}


def test_the_console_as_the_daemon_reads_it(tmp_path: Path) -> None:
    docs = render("overlays/local")
    console = find(docs, "Deployment", "xray-console")
    pod = console["spec"]["template"]["spec"]
    c = container(console)
    env = env_values(c)
    assert env["K8SXRAY_CONSOLE_TOKEN"] == {"secretKeyRef": {"name": "xray-console", "key": "token"}}
    s = _parse(expand(c["args"], {"K8SXRAY_CONSOLE_TOKEN": "the-token"}), None, tmp_path)
    assert s.sink == "local"
    assert s.http == ("0.0.0.0", 2020)
    assert s.console_token == "the-token"  # the Secret's, not one generated at each start
    # the store sits on a writable volume, and the volume holds more than the store may grow to
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    store_dir = str(Path(s.store_path).parent)
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[store_dir])
    assert _bytes(volume["emptyDir"]["sizeLimit"]) > s.store_max_bytes
    assert console["spec"]["replicas"] == 1
    assert console["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["terminationGracePeriodSeconds"] >= s.shutdown_timeout + 5
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = find(docs, "Service", "xray-console")
    assert {(p["port"], p["protocol"]) for p in service["spec"]["ports"]} >= {(2020, "TCP")}


def test_the_local_daemonset_ships_to_the_console(tmp_path: Path) -> None:
    docs = render("overlays/local")
    c = container(find(docs, "DaemonSet", "xray-daemon"), "xray-daemon")
    s = _parse(c["args"], named(docs, "ConfigMap", "xray-daemon-config-"), tmp_path)
    assert s.sink == "xray"
    assert s.endpoint_url == "http://xray-console:2020"
    assert s.region
    assert s.local_mode is True
    assert s.telemetry is False
    env = env_values(c)
    assert env["AWS_ACCESS_KEY_ID"]
    assert env["AWS_SECRET_ACCESS_KEY"]
    # the same Secret as the console's (see test_deploy_local_push for what the sink does with it)
    assert env["K8SXRAY_CONSOLE_TOKEN"] == {"secretKeyRef": {"name": "xray-console", "key": "token"}}


DOWNWARD = {
    _env.K8SXRAY_NODE_IP: "status.hostIP",
    _env.POD_NAME: "metadata.name",
    _env.POD_NAMESPACE: "metadata.namespace",
    _env.POD_UID: "metadata.uid",
    _env.POD_IP: "status.podIP",
    _env.NODE_NAME: "spec.nodeName",
}


@pytest.mark.parametrize("kustomization", ["examples/base", "examples/with-kube-api", "examples/sidecar"])
@pytest.mark.parametrize("name", ["service-a", "service-b"])
def test_the_examples_carry_what_the_kubernetes_plugin_reads(kustomization: str, name: str) -> None:
    docs = render(kustomization)
    deployment = find(docs, "Deployment", name)
    c = container(deployment, "app")
    env = env_values(c)
    for variable, field in DOWNWARD.items():
        assert env[variable] == {"fieldRef": {"fieldPath": field}}, variable
    assert env[_env.CONTAINER_NAME] == c["name"]
    assert env[_env.AWS_XRAY_TRACING_NAME] == name
    assert (env.get(_env.K8SXRAY_KUBE_API) == "1") == (kustomization == "examples/with-kube-api")
    # the labels file, where the plugin looks by default
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    podinfo = next(v for v in pod["volumes"] if "downwardAPI" in v)
    assert mounts[podinfo["name"]] == "/etc/podinfo"
    assert podinfo["downwardAPI"]["items"] == [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}
    ]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == name
    # a Service of the same name, so that service-a reaches service-b by it
    service = find(docs, "Service", name)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 8080


def test_service_a_calls_service_b_by_its_service() -> None:
    env = env_values(container(find(render("examples/base"), "Deployment", "service-a")))
    assert env["SERVICE_B_URL"] == "http://service-b:8080"


def test_the_api_lookups_have_exactly_their_permissions() -> None:
    docs = render("examples/with-kube-api")
    role = find(docs, "Role", "k8sxray-pod-reader")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["verbs"])) for r in role["rules"]}
    assert rules == {(("",), ("pods",), ("get",)), (("apps",), ("replicasets",), ("get",))}
    binding = find(docs, "RoleBinding", "k8sxray-pod-reader")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "k8sxray-examples", "namespace": "default"}
    ]
    assert find(docs, "ServiceAccount", "k8sxray-examples")["automountServiceAccountToken"] is True
    for name in ("service-a", "service-b"):
        assert find(docs, "Deployment", name)["spec"]["template"]["spec"]["serviceAccountName"] == (
            "k8sxray-examples"
        )


@pytest.mark.parametrize("name", ["service-a", "service-b"])
def test_the_sidecar_daemon_serves_its_own_pod(name: str, tmp_path: Path) -> None:
    deployment = find(render("examples/sidecar"), "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    sidecar = container(deployment, "xray-daemon")
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar: up before the app, down after it
    assert [c["name"] for c in pod["initContainers"]] == ["xray-daemon"]
    limit = sidecar["resources"]["limits"]["memory"]
    s = _parse(sidecar["args"], None, tmp_path, str(_bytes(limit)))
    assert s.sink == "xray"
    assert s.udp == ("127.0.0.1", 2000)
    assert s.tcp == ("127.0.0.1", 2000)
    assert s.http == ("0.0.0.0", 2020)
    assert s.buffer_bytes == 16 * 1024 * 1024
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert ports[sidecar[probe]["httpGet"]["port"]] == 2020
        assert sidecar[probe]["httpGet"]["path"] == "/healthz"
    # the application's SIGTERM, then the sidecar's full flush, fit in the grace period
    assert pod["terminationGracePeriodSeconds"] >= s.shutdown_timeout + 15
    # the application sends to its sidecar, whatever else discovery would find
    app = container(deployment, "app")
    env = {k: v for k, v in env_values(app).items() if isinstance(v, str)}
    env.update(KUBERNETES_SERVICE_HOST="10.100.0.1", K8SXRAY_NODE_IP="10.0.3.7", POD_NAMESPACE="default")
    shown = _k8sxray_config(env, tmp_path)
    assert re.search(r"daemon_udp\s+127\.0\.0\.1:2000\s+<- env", shown), shown


def _k8sxray_config(env: dict[str, str], home: Path) -> str:
    """What ``python -m k8sxray config`` prints with this environment (the troubleshooting command)."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "SYSTEMROOT")}
    done = subprocess.run(
        [sys.executable, "-m", "k8sxray", "config"],
        env={**keep, "HOME": str(home), "K8SXRAY_PODINFO_DIR": str(home / "podinfo"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
