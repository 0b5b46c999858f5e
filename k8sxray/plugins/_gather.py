"""Gather the Kubernetes plugin's sources into one :class:`PluginData` (see ``kubernetes.py``).

Imported only on Kubernetes; the API client (``http.client``, ``ssl``) only when
``K8SXRAY_KUBE_API`` is on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import _env as names
from . import PluginData
from ._container_id import is_container_id, read_container_id
from ._downward import PodEnv, clean, from_env, hostname, namespace_from_file, read_labels
from ._sources import Sources
from ._workload import Workload, from_pod_name

if TYPE_CHECKING:
    from ._kubeapi import ApiFacts

log = logging.getLogger(__name__)

ORIGIN = "AWS::EKS::Container"
DEFAULT_PODINFO_DIR = "/etc/podinfo"
DEFAULT_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app",
    "version",
)
"""Pod labels copied into the ``k8s`` metadata unless ``K8SXRAY_K8S_LABELS`` says otherwise."""
_TRUE = frozenset({"1", "true", "yes", "on"})
_MAX_API_TIMEOUT = 10.0


def gather(env: Mapping[str, str], sources: Sources) -> PluginData:
    """Read every applicable source (files, env, optionally the API) and build the plugin data."""
    pod = from_env(env)
    namespace = pod.namespace or namespace_from_file(sources.service_account_dir)
    pod_name = pod.pod_name or (sources.hostname or hostname)()
    labels = read_labels(env.get(names.K8SXRAY_PODINFO_DIR) or DEFAULT_PODINFO_DIR)
    container_id = read_container_id(sources.cgroup, sources.mountinfo)
    facts = None
    if _on(env, names.K8SXRAY_KUBE_API):
        facts = _ask_api(env, sources, pod, namespace, pod_name)
    # The Downward API and local files win; the API fills the gaps.
    workload = (facts.workload if facts else None) or (from_pod_name(pod_name) if pod_name else None)
    return build(
        pod_name=pod_name,
        namespace=namespace,
        cluster_name=pod.cluster_name or (facts.cluster_name if facts else None),
        container_id=container_id or (facts.container_id if facts else None),
        node=pod.node_name or (facts.node_name if facts else None),
        pod_uid=pod.pod_uid or (facts.pod_uid if facts else None),
        pod_ip=pod.pod_ip or (facts.pod_ip if facts else None),
        container_name=pod.container_name,
        workload=workload,
        labels=select_labels(
            labels or (facts.labels if facts else None) or {}, env.get(names.K8SXRAY_K8S_LABELS)
        ),
        ec2=_ec2_node(env) if _on(env, names.K8SXRAY_EC2_NODE) else None,
    )


def _on(env: Mapping[str, str], name: str) -> bool:
    return (env.get(name) or "").strip().lower() in _TRUE


def _ec2_node(env: Mapping[str, str]) -> dict[str, str] | None:
    """The node's ``aws.ec2`` fields from IMDSv2, or ``None`` (logged once per configure)."""
    if _on(env, names.AWS_EC2_METADATA_DISABLED):
        log.warning(
            "k8sxray: %s is set but %s is true; no aws.ec2",
            names.K8SXRAY_EC2_NODE,
            names.AWS_EC2_METADATA_DISABLED,
        )
        return None
    from ._imds import DEFAULT_ENDPOINT, node_identity

    endpoint = (env.get(names.AWS_EC2_METADATA_SERVICE_ENDPOINT) or DEFAULT_ENDPOINT).strip().rstrip("/")
    found, reason = node_identity(endpoint)
    if found is None:
        log.warning(
            "k8sxray: the node's EC2 identity is unavailable from %s (%s); from a Pod IMDSv2 needs a hop "
            "limit of 2. Segments carry no aws.ec2",
            endpoint,
            reason,
        )
    return found


def _ask_api(
    env: Mapping[str, str], sources: Sources, pod: PodEnv, namespace: str | None, pod_name: str | None
) -> ApiFacts | None:
    from ._kubeapi import default_settings, lookup

    settings = sources.api or default_settings(env, sources.service_account_dir, _api_timeout(env))
    if settings is None or not namespace or not pod_name:
        log.warning(
            "k8sxray: %s is set but the Kubernetes API cannot be asked (API address, namespace or Pod "
            "name unknown); using the Downward API only",
            names.K8SXRAY_KUBE_API,
        )
        return None
    facts = lookup(
        settings,
        namespace,
        pod_name,
        container_name=pod.container_name,
        node_name=pod.node_name,
        want_cluster=pod.cluster_name is None,
    )
    if facts.denied:
        log.warning(
            "k8sxray: the Kubernetes API refused the service account: grant %s (see docs/kubernetes.md), "
            "or unset %s; segments carry what the Downward API gives",
            "; ".join(str(p) for p in facts.denied),
            names.K8SXRAY_KUBE_API,
        )
    if facts.problems:
        log.warning("k8sxray: Kubernetes API lookup incomplete: %s", "; ".join(facts.problems))
    return facts


def _api_timeout(env: Mapping[str, str]) -> float:
    raw = (env.get(names.K8SXRAY_KUBE_API_TIMEOUT) or "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= _MAX_API_TIMEOUT:
        log.warning(
            "k8sxray: %s=%r is not a number of seconds in (0, 10]; using 1.0",
            names.K8SXRAY_KUBE_API_TIMEOUT,
            raw,
        )
        return 1.0
    return value


def select_labels(labels: Mapping[str, str], spec: str | None) -> dict[str, str]:
    """The labels named by *spec* (``K8SXRAY_K8S_LABELS``: comma-separated keys, or ``none``)."""
    if spec is None or not spec.strip():
        keys: tuple[str, ...] = DEFAULT_LABELS
    elif spec.strip().lower() == "none":
        return {}
    else:
        keys = tuple(k.strip() for k in spec.split(",") if k.strip())
    return {key: labels[key] for key in keys if labels.get(key)}


def build(
    *,
    pod_name: str | None,
    namespace: str | None,
    cluster_name: str | None,
    container_id: str | None,
    node: str | None,
    pod_uid: str | None,
    pod_ip: str | None,
    container_name: str | None,
    workload: Workload | None,
    labels: Mapping[str, str],
    ec2: Mapping[str, str] | None = None,
) -> PluginData:
    """Assemble :class:`PluginData` with only the fields that are known."""
    eks = _present(
        {
            "pod": clean(pod_name),
            "cluster_name": clean(cluster_name),
            "container_id": container_id if container_id and is_container_id(container_id) else None,
        }
    )
    k8s: dict[str, Any] = _present(
        {
            "namespace": clean(namespace),
            "node": clean(node),
            "pod_uid": clean(pod_uid),
            "pod_ip": clean(pod_ip),
            "container_name": clean(container_name),
        }
    )
    if workload is not None:
        k8s["workload"] = workload.as_dict()
    if labels:
        k8s["labels"] = dict(labels)
    aws: dict[str, Any] = {"eks": eks} if eks else {}
    if ec2:
        aws["ec2"] = dict(ec2)
    return PluginData(
        origin=ORIGIN,
        aws=aws,
        metadata={"k8s": k8s} if k8s else {},
    )


def _present(values: Mapping[str, str | None]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value}
