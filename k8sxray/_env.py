"""Every environment variable k8sxray reads, in one place.

Each name is documented in ``docs/configuration.md``; a test keeps the two in step.
The ``AWS_XRAY_*`` names keep the meaning and format the official X-Ray SDKs give them.
"""

from __future__ import annotations

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
"""What a boolean variable's value (lowercased) says for true ..."""
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
"""... and for false."""

# --- names shared with the official AWS X-Ray SDKs ---------------------------------------
AWS_XRAY_DAEMON_ADDRESS = "AWS_XRAY_DAEMON_ADDRESS"
"""``host:port`` for UDP and TCP alike, or ``tcp:host:port udp:host:port`` in either order."""
AWS_XRAY_TRACING_NAME = "AWS_XRAY_TRACING_NAME"
"""The service name written on every segment."""
AWS_XRAY_SDK_ENABLED = "AWS_XRAY_SDK_ENABLED"
"""``false`` turns all tracing off (instrumentation becomes a no-op)."""
AWS_XRAY_CONTEXT_MISSING = "AWS_XRAY_CONTEXT_MISSING"
"""``RUNTIME_ERROR`` | ``LOG_ERROR`` | ``IGNORE_ERROR``: what a call outside a traced request does."""

# --- k8sxray's own names --------------------------------------------------------------
K8SXRAY_SAMPLING_RATE = "K8SXRAY_SAMPLING_RATE"
"""Fraction 0..1 sampled beyond the reservoir of 1 request per second; ``1`` traces everything."""
K8SXRAY_SAMPLING_RULES = "K8SXRAY_SAMPLING_RULES"
"""Path to local sampling rules in the X-Ray SDK's JSON format (version 2)."""
K8SXRAY_SAMPLING_CENTRAL = "K8SXRAY_SAMPLING_CENTRAL"
"""``true``/``false``: poll centralized sampling rules through the daemon's TCP port."""
K8SXRAY_UDP_GSO = "K8SXRAY_UDP_GSO"
"""``true``/``false``: send bursts of segments with UDP segmentation offload (Linux; default on)."""
K8SXRAY_NATIVE = "K8SXRAY_NATIVE"
"""``true``/``false``: use k8sxray's C modules when they are built (default on): unsampled WSGI
requests served in C, and the daemon's OTLP sink writing spans in C."""
K8SXRAY_PROPAGATORS = "K8SXRAY_PROPAGATORS"
"""Comma-separated trace header formats read from requests and sent on outgoing calls: ``xray``
(``X-Amzn-Trace-Id``), ``tracecontext`` (W3C ``traceparent``/``tracestate``); default both."""
K8SXRAY_DAEMON_SERVICE = "K8SXRAY_DAEMON_SERVICE"
"""Kubernetes Service name of the daemon, looked up in the Pod's namespace then ``default``."""
K8SXRAY_PLUGINS = "K8SXRAY_PLUGINS"
"""Comma-separated plugin names (``kubernetes``), or ``none``."""
K8SXRAY_DISABLED_INTEGRATIONS = "K8SXRAY_DISABLED_INTEGRATIONS"
"""Comma-separated integration names to leave off (``requests``, ``httpx``, ``botocore``, ...)."""
K8SXRAY_NODE_IP = "K8SXRAY_NODE_IP"
"""The node's IP (Downward API ``status.hostIP``): the node-local daemon is reached there."""
K8SXRAY_DISCOVERY_TIMEOUT = "K8SXRAY_DISCOVERY_TIMEOUT"
"""Seconds one DNS lookup of the daemon's Service may take (default 0.5)."""
K8SXRAY_DISCOVERY_INTERVAL = "K8SXRAY_DISCOVERY_INTERVAL"
"""Seconds between re-resolutions of the daemon's DNS name (default 30; 0 turns it off)."""

# --- Kubernetes' own names, read for discovery and the Kubernetes plugin ---------------------
KUBERNETES_SERVICE_HOST = "KUBERNETES_SERVICE_HOST"
"""Set by the kubelet in every Pod: the marker that we run on Kubernetes."""
HOST_IP = "HOST_IP"
"""Conventional Downward API name for ``status.hostIP`` (``K8SXRAY_NODE_IP`` wins over it)."""
POD_NAMESPACE = "POD_NAMESPACE"
"""Downward API ``metadata.namespace``."""
POD_NAME = "POD_NAME"
"""Downward API ``metadata.name``."""

# --- other programs' names, read for the default service name --------------------------------
FLASK_APP = "FLASK_APP"
"""Flask's name for the app ``flask run`` serves."""
DJANGO_SETTINGS_MODULE = "DJANGO_SETTINGS_MODULE"
"""Django's settings module: its package names the service under ``manage.py``."""

# --- read by the Kubernetes plugin (see docs/kubernetes.md) ---------------------------------
POD_UID = "POD_UID"
"""``metadata.uid``."""
POD_IP = "POD_IP"
"""``status.podIP``."""
NODE_NAME = "NODE_NAME"
"""``spec.nodeName``."""
CONTAINER_NAME = "CONTAINER_NAME"
"""The container's name as written in the Pod spec (no Downward API field exists: set it literally)."""
KUBERNETES_SERVICE_PORT = "KUBERNETES_SERVICE_PORT"
"""Set by the kubelet: the API server's port (with ``KUBERNETES_SERVICE_HOST``)."""
K8SXRAY_CLUSTER_NAME = "K8SXRAY_CLUSTER_NAME"
"""The cluster's name for ``aws.eks.cluster_name`` (default: from the API when enabled, else omitted)."""
K8SXRAY_PODINFO_DIR = "K8SXRAY_PODINFO_DIR"
"""Directory of a Downward API volume with ``labels`` (and ``annotations``) files (default /etc/podinfo)."""
K8SXRAY_K8S_LABELS = "K8SXRAY_K8S_LABELS"
"""Comma-separated Pod label keys copied to the ``k8s`` metadata; ``none`` copies no labels."""
K8SXRAY_KUBE_API = "K8SXRAY_KUBE_API"
"""``1``/``true``: ask the Kubernetes API (service-account token) for the workload, labels and cluster
name, within about one second. Default off."""
K8SXRAY_KUBE_API_TIMEOUT = "K8SXRAY_KUBE_API_TIMEOUT"
"""Seconds the whole Kubernetes API lookup may take (default 1.0, at most 10)."""
K8SXRAY_EC2_NODE = "K8SXRAY_EC2_NODE"
"""``1``/``true``: add the node's EC2 identity (``aws.ec2``) from IMDSv2, within 0.5 s. Default off."""
AWS_EC2_METADATA_SERVICE_ENDPOINT = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
"""The AWS SDKs' override of the instance metadata endpoint (default ``http://169.254.169.254``)."""
AWS_EC2_METADATA_DISABLED = "AWS_EC2_METADATA_DISABLED"
"""The AWS SDKs' switch: ``true`` means never call the instance metadata service."""

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where the kubelet mounts the service-account token, CA and namespace files."""
K8SXRAY_CONSOLE = "K8SXRAY_CONSOLE"
"""``python -m k8sxray traces``: the console's address (default ``http://127.0.0.1:2020``)."""
K8SXRAY_CONSOLE_TOKEN = "K8SXRAY_CONSOLE_TOKEN"
"""``python -m k8sxray traces``: the token of a console bound beyond loopback."""
