"""Environment variable names the Kubernetes plugin reads (beside those in ``k8sxray._env``).

The coordinator moves these into ``k8sxray/_env.py`` and ``docs/configuration.md``.
"""

from __future__ import annotations

# --- Downward API variables (set them in the Pod spec; see docs/kubernetes.md) --------------
POD_NAME = "POD_NAME"
"""``metadata.name``: the Pod's name (default: the hostname)."""
POD_NAMESPACE = "POD_NAMESPACE"
"""``metadata.namespace`` (default: the service-account ``namespace`` file)."""
POD_UID = "POD_UID"
"""``metadata.uid``."""
POD_IP = "POD_IP"
"""``status.podIP``."""
NODE_NAME = "NODE_NAME"
"""``spec.nodeName``."""
CONTAINER_NAME = "CONTAINER_NAME"
"""The container's name as written in the Pod spec (no Downward API field exists: set it literally)."""

# --- k8sxray's own ----------------------------------------------------------------------------
K8SXRAY_CLUSTER_NAME = "K8SXRAY_CLUSTER_NAME"
"""The cluster's name for ``aws.eks.cluster_name`` (default: from the API when enabled, else omitted)."""
K8SXRAY_PODINFO_DIR = "K8SXRAY_PODINFO_DIR"
"""Directory of a Downward API volume with ``labels`` (and ``annotations``) files (default /etc/podinfo)."""
K8SXRAY_K8S_LABELS = "K8SXRAY_K8S_LABELS"
"""Comma-separated Pod label keys copied to the ``k8s`` metadata (default: see ``DEFAULT_LABELS``);
``none`` copies no labels."""
K8SXRAY_KUBE_API = "K8SXRAY_KUBE_API"
"""``1``/``true``: ask the Kubernetes API (service-account token) for the workload, labels and cluster
name, within about one second. Default off."""
K8SXRAY_KUBE_API_TIMEOUT = "K8SXRAY_KUBE_API_TIMEOUT"
"""Seconds the whole Kubernetes API lookup may take (default 1.0, at most 10)."""
KUBERNETES_SERVICE_PORT = "KUBERNETES_SERVICE_PORT"
"""Set by the kubelet: the API server's port (with ``KUBERNETES_SERVICE_HOST``)."""

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

# --- the optional EC2 node lookup -------------------------------------------------------------
K8SXRAY_EC2_NODE = "K8SXRAY_EC2_NODE"
"""``1``/``true``: add the node's EC2 identity (``aws.ec2``) from IMDSv2, within 0.5 s. Default off."""
AWS_EC2_METADATA_SERVICE_ENDPOINT = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
"""The AWS SDKs' override of the instance metadata endpoint (default ``http://169.254.169.254``)."""
AWS_EC2_METADATA_DISABLED = "AWS_EC2_METADATA_DISABLED"
"""The AWS SDKs' switch: ``true`` means never call the instance metadata service."""
