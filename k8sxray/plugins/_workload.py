"""Which workload (Deployment, StatefulSet, ...) a Pod belongs to.

Without the API the answer is a guess from the Pod name's shape, and says so
(``source="pod-name"``). With the API it follows the Pod's controller owner reference
(``source="api"``), one level further for a ReplicaSet's Deployment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Kubernetes' random suffixes and ReplicaSet hashes use this alphabet (no vowels, no 0/1/3).
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
_DEPLOYMENT = re.compile(rf"^(?P<name>[a-z0-9][a-z0-9.-]*?)-(?P<hash>{_SAFE}{{6,10}})-{_SAFE}{{5}}$")
_CRONJOB = re.compile(rf"^(?P<name>[a-z0-9][a-z0-9.-]*?)-(?P<minutes>[0-9]{{8,10}})-{_SAFE}{{5}}$")
_STATEFULSET = re.compile(r"^(?P<name>[a-z0-9][a-z0-9.-]*?)-(?P<ordinal>0|[1-9][0-9]{0,3})$")
_SUFFIXED = re.compile(rf"^(?P<name>[a-z0-9][a-z0-9.-]*?)-{_SAFE}{{5}}$")

DAEMONSET_OR_JOB = "DaemonSet|Job"
"""The kind reported when a ``<name>-<5 chars>`` Pod name cannot tell a DaemonSet from a Job."""


@dataclass(frozen=True)
class Workload:
    """A workload's kind and name, and how we know (``"api"``, ``"pod-name"``, ...)."""

    kind: str
    name: str
    source: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "source": self.source}


def from_pod_name(pod_name: str) -> Workload | None:
    """Guess the workload from a Pod name; ``None`` when the name fits no controller's pattern."""
    for pattern, kind in (
        (_CRONJOB, "CronJob"),
        (_DEPLOYMENT, "Deployment"),
        (_STATEFULSET, "StatefulSet"),
        (_SUFFIXED, DAEMONSET_OR_JOB),
    ):
        match = pattern.match(pod_name)
        if match:
            return Workload(kind, match.group("name"), "pod-name")
    return None


def controller_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """The ``(kind, name)`` of an API object's controller owner reference, if any."""
    metadata = obj.get("metadata")
    refs = metadata.get("ownerReferences") if isinstance(metadata, Mapping) else None
    if not isinstance(refs, list):
        return None
    fallback: tuple[str, str] | None = None
    for ref in refs:
        if not isinstance(ref, Mapping):
            continue
        kind, name = ref.get("kind"), ref.get("name")
        if not (isinstance(kind, str) and isinstance(name, str) and kind and name):
            continue
        if ref.get("controller") is True:
            return kind, name
        fallback = fallback or (kind, name)
    return fallback


def deployment_from_replicaset_name(replicaset: str, labels: Mapping[str, str]) -> str | None:
    """A Deployment's name from its ReplicaSet's (``<deployment>-<pod-template-hash>``)."""
    template_hash = labels.get("pod-template-hash")
    if template_hash and replicaset.endswith("-" + template_hash):
        return replicaset[: -len(template_hash) - 1] or None
    return None
