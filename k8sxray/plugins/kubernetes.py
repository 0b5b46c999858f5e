"""The Kubernetes plugin: Pod, node, container and workload on every segment.

``detect()`` runs once per ``configure()`` and returns the data the recorder attaches to every
segment: X-Ray's own ``aws.eks`` fields and ``origin`` ``AWS::EKS::Container``, plus a ``k8s``
metadata namespace. Sources, cheapest first: Downward API env vars, the Downward API volume's
``labels`` file, the service-account namespace file, the hostname, ``/proc/self/cgroup`` and
``/proc/self/mountinfo``; then, only with ``K8SXRAY_KUBE_API=1``, the Kubernetes API.

Outside Kubernetes (no ``KUBERNETES_SERVICE_HOST``) it returns ``None`` at once: no file read,
no network. It never raises; problems are logged once per ``configure()``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from . import PluginData
from ._sources import SERVICE_ACCOUNT_DIR, Sources

log = logging.getLogger(__name__)


def detect(environ: Mapping[str, str] | None = None, sources: Sources | None = None) -> PluginData | None:
    """The Kubernetes plugin's data, or ``None`` when not running on Kubernetes. Never raises."""
    env = os.environ if environ is None else environ
    if not env.get("KUBERNETES_SERVICE_HOST"):
        return None
    try:
        from ._gather import gather  # imported here: nothing of it is needed outside Kubernetes

        return gather(env, sources or Sources())
    except Exception:  # a bug here must not break configure()
        log.warning("k8sxray: the Kubernetes plugin failed; segments carry no Kubernetes data", exc_info=True)
        return None


__all__ = ["SERVICE_ACCOUNT_DIR", "Sources", "detect"]
