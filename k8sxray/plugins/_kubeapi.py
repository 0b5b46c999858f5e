"""The optional Kubernetes API path (``K8SXRAY_KUBE_API=1``): a few GETs with the service account.

Stdlib only (``http.client`` + ``ssl``), one keep-alive connection, and one budget (about a
second) for the whole lookup: it runs in a short-lived daemon thread that the caller waits for
at most that long, so a slow or silent API server can never hold up ``configure()``.
Nothing here raises; what went wrong is collected in :class:`ApiFacts` for the caller to log
once. The bearer token is sent to the API server only and never logged.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ._workload import Workload, controller_of, deployment_from_replicaset_name

_MAX_BODY = 8 * 1024 * 1024
CLUSTER_INFO = ("amazon-cloudwatch", "cluster-info", "cluster.name")
"""Namespace, name and data key of the CloudWatch agent's ConfigMap that names an EKS cluster."""
NODE_CLUSTER_LABELS = ("alpha.eksctl.io/cluster-name", "eks.amazonaws.com/cluster-name")
"""Node labels that carry the cluster name (eksctl node groups set the first)."""


@dataclass(frozen=True)
class ApiSettings:
    """Where the API is and how to authenticate (all injectable for tests)."""

    host: str
    port: int
    token_path: str
    ca_path: str
    timeout: float = 1.0


@dataclass(frozen=True)
class Permission:
    """An RBAC permission: ``verb`` on ``resource`` in ``namespace`` (``None``: cluster-wide)."""

    verb: str
    resource: str
    namespace: str | None

    def __str__(self) -> str:
        where = f'in namespace "{self.namespace}"' if self.namespace else "cluster-wide (a ClusterRole)"
        return f"{self.verb} {self.resource} {where}"


@dataclass
class ApiFacts:
    """What the API told us, and what it refused or failed to tell."""

    labels: dict[str, str] | None = None
    workload: Workload | None = None
    cluster_name: str | None = None
    node_name: str | None = None
    pod_uid: str | None = None
    pod_ip: str | None = None
    container_id: str | None = None
    denied: list[Permission] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class _Client:
    """GETs JSON over one HTTPS connection; every failure becomes ``None`` plus a note."""

    def __init__(self, settings: ApiSettings, token: str, context: ssl.SSLContext, deadline: float) -> None:
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._deadline = deadline
        self._conn = http.client.HTTPSConnection(
            settings.host, settings.port, timeout=max(0.01, settings.timeout), context=context
        )
        self.broken = False

    def close(self) -> None:
        self._conn.close()

    def get(self, path: str, permission: Permission, facts: ApiFacts) -> dict[str, Any] | None:
        """The JSON object at *path*, or ``None`` (404, refusal, error, garbage, out of time)."""
        answer = self._fetch(path, facts)
        if answer is None:
            return None
        status, body = answer
        if status in (401, 403):
            facts.denied.append(permission)
        elif status != 200:
            if status != 404:
                facts.problems.append(f"GET {path} answered HTTP {status}")
        elif len(body) > _MAX_BODY:
            facts.problems.append(f"GET {path} answered more than {_MAX_BODY} bytes")
            self.broken = True  # the rest of that answer is still on the connection
        else:
            return _json_object(path, body, facts)
        return None

    def _fetch(self, path: str, facts: ApiFacts) -> tuple[int, bytes] | None:
        if self.broken:
            return None
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            facts.problems.append(f"no time left for GET {path}")
            self.broken = True
            return None
        self._conn.timeout = remaining
        if self._conn.sock is not None:
            self._conn.sock.settimeout(remaining)
        try:
            self._conn.request("GET", path, headers=self._headers)
            response = self._conn.getresponse()
            return response.status, response.read(_MAX_BODY + 1)
        except (OSError, http.client.HTTPException) as exc:
            facts.problems.append(f"GET {path} failed: {type(exc).__name__}: {exc}")
            self.broken = True
            return None


def _json_object(path: str, body: bytes, facts: ApiFacts) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        facts.problems.append(f"GET {path} answered something that is not JSON")
        return None
    if not isinstance(data, dict):
        facts.problems.append(f"GET {path} answered JSON that is not an object")
        return None
    return data


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _get_str(obj: Any, *keys: str) -> str | None:
    value = _get(obj, *keys)
    return value if isinstance(value, str) and value else None


def _container_id_from_status(pod: Mapping[str, Any], container_name: str | None) -> str | None:
    statuses = _get(pod, "status", "containerStatuses")
    if not isinstance(statuses, list):
        return None
    candidates = [s for s in statuses if isinstance(s, Mapping)]
    if container_name:
        candidates = [s for s in candidates if s.get("name") == container_name]
    if len(candidates) != 1:
        return None  # several containers and no CONTAINER_NAME: we cannot tell which is us
    raw = candidates[0].get("containerID")
    if not isinstance(raw, str):
        return None
    return raw.rpartition("://")[2] or None


@dataclass(frozen=True)
class _Query:
    namespace: str
    pod_name: str
    container_name: str | None
    node_name: str | None
    want_cluster: bool


def _lookup(client: _Client, facts: ApiFacts, query: _Query) -> None:
    namespace = query.namespace
    pod = client.get(
        f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(query.pod_name, safe='')}",
        Permission("get", "pods", namespace),
        facts,
    )
    if pod is not None:
        facts.labels = _str_map(_get(pod, "metadata", "labels"))
        facts.pod_uid = _get_str(pod, "metadata", "uid")
        facts.node_name = _get_str(pod, "spec", "nodeName")
        facts.pod_ip = _get_str(pod, "status", "podIP")
        facts.container_id = _container_id_from_status(pod, query.container_name)
        owner = controller_of(pod)
        if owner is not None:
            facts.workload = _resolve_owner(client, facts, namespace, owner)
    if query.want_cluster:
        facts.cluster_name = _cluster_name(client, facts, query.node_name or facts.node_name)


def _resolve_owner(client: _Client, facts: ApiFacts, namespace: str, owner: tuple[str, str]) -> Workload:
    kind, name = owner
    if kind != "ReplicaSet":
        return Workload(kind, name, "api")
    replicaset = client.get(
        f"/apis/apps/v1/namespaces/{quote(namespace, safe='')}/replicasets/{quote(name, safe='')}",
        Permission("get", "replicasets.apps", namespace),
        facts,
    )
    if replicaset is not None:
        parent = controller_of(replicaset)
        return Workload(*parent, "api") if parent else Workload(kind, name, "api")
    deployment = deployment_from_replicaset_name(name, facts.labels or {})
    if deployment:
        return Workload("Deployment", deployment, "api+replicaset-name")
    return Workload(kind, name, "api")


def _cluster_name(client: _Client, facts: ApiFacts, node_name: str | None) -> str | None:
    namespace, name, key = CLUSTER_INFO
    config_map = client.get(
        f"/api/v1/namespaces/{namespace}/configmaps/{name}", Permission("get", "configmaps", namespace), facts
    )
    found = _get_str(config_map, "data", key) if config_map else None
    if found or not node_name:
        return found
    node = client.get(f"/api/v1/nodes/{quote(node_name, safe='')}", Permission("get", "nodes", None), facts)
    labels = _str_map(_get(node, "metadata", "labels"))
    for label in NODE_CLUSTER_LABELS:
        if labels.get(label):
            return labels[label]
    return None


def lookup(
    settings: ApiSettings,
    namespace: str,
    pod_name: str,
    *,
    container_name: str | None = None,
    node_name: str | None = None,
    want_cluster: bool = True,
) -> ApiFacts:
    """Ask the API about our Pod (and cluster), within ``settings.timeout`` seconds in all."""
    facts = ApiFacts()
    try:
        with open(settings.token_path, encoding="utf-8") as f:
            token = f.read(64 * 1024).strip()
        context = ssl.create_default_context(cafile=settings.ca_path)
    except (OSError, ssl.SSLError, ValueError) as exc:
        facts.problems.append(f"cannot use the service account ({type(exc).__name__}: {exc})")
        return facts
    if not token:
        facts.problems.append(f"the token file {settings.token_path} is empty")
        return facts
    deadline = time.monotonic() + settings.timeout
    result = ApiFacts()
    query = _Query(namespace, pod_name, container_name, node_name, want_cluster)

    def work() -> None:
        client = _Client(settings, token, context, deadline)
        try:
            _lookup(client, result, query)
        except Exception as exc:  # never let a surprise escape the thread
            result.problems.append(f"unexpected {type(exc).__name__}: {exc}")
        finally:
            client.close()
            done.set()

    done = threading.Event()
    thread = threading.Thread(target=work, name="k8sxray-kube-api", daemon=True)
    thread.start()
    if not done.wait(settings.timeout + 0.05):
        facts.problems.append(f"the API did not answer within {settings.timeout:g} s")
        return facts
    return result


def default_settings(
    environ: Mapping[str, str], service_account_dir: str, timeout: float
) -> ApiSettings | None:
    """Settings from the kubelet's ``KUBERNETES_SERVICE_HOST``/``_PORT``; ``None`` if unset."""
    host = environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    port_text = environ.get("KUBERNETES_SERVICE_PORT", "443").strip() or "443"
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return ApiSettings(
        host=host,
        port=int(port_text),
        token_path=os.path.join(service_account_dir, "token"),
        ca_path=os.path.join(service_account_dir, "ca.crt"),
        timeout=timeout,
    )
