"""Plugins describe where the process runs (Kubernetes Pod, EC2 instance, ...).

A plugin is detected **once**, at configure time, off the request path. It returns a
:class:`PluginData`; the recorder turns the merged data into a pre-serialised JSON
fragment once, so attaching it to every segment costs a string concatenation.

Registry: :data:`PLUGINS` maps a plugin name (as written in ``K8SXRAY_PLUGINS``) to
the import path of its ``detect`` function. ``detect()`` must never raise, never hang
(short timeouts on any I/O) and return ``None`` when the plugin does not apply.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# Origin priority when several plugins apply (as the AWS SDKs order them).
_ORIGIN_PRIORITY = (
    "AWS::ElasticBeanstalk::Environment",
    "AWS::EKS::Container",
    "AWS::ECS::Container",
    "AWS::EC2::Instance",
)


@dataclass(frozen=True)
class PluginData:
    """What one plugin adds to every segment.

    ``aws`` is merged into the segment's ``aws`` object (for example
    ``{"eks": {"pod": ..., "cluster_name": ..., "container_id": ...}}``);
    ``metadata`` maps a metadata namespace (for example ``"k8s"``) to its values.
    """

    origin: str | None = None
    aws: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


Detector = Callable[[], "PluginData | None"]

PLUGINS: Mapping[str, str] = {
    "kubernetes": "k8sxray.plugins.kubernetes:detect",
}
"""Known plugin names and the ``module:function`` that detects each."""


def load(name: str) -> Detector:
    """Import the detector of plugin *name* (a key of :data:`PLUGINS`)."""
    module_name, _, func = PLUGINS[name].partition(":")
    detector: Detector = getattr(importlib.import_module(module_name), func)
    return detector


def merge(items: Iterable[PluginData]) -> PluginData:
    """Merge several plugins' data; the origin follows the AWS SDKs' priority."""
    origins: list[str] = []
    aws: dict[str, Any] = {}
    metadata: dict[str, Mapping[str, Any]] = {}
    for item in items:
        if item.origin:
            origins.append(item.origin)
        aws.update(item.aws)
        metadata.update(item.metadata)
    origin = None
    for candidate in _ORIGIN_PRIORITY:
        if candidate in origins:
            origin = candidate
            break
    if origin is None and origins:
        origin = origins[0]
    return PluginData(origin=origin, aws=aws, metadata=metadata)


def collect(names: Iterable[str]) -> PluginData:
    """Run the named plugins' detectors (never raises) and merge what they found."""
    found: list[PluginData] = []
    for name in names:
        try:
            data = load(name)()
        except Exception:  # a plugin must never break configure()
            log.warning("k8sxray plugin %r failed; its data is left out", name, exc_info=True)
            continue
        if data is not None:
            found.append(data)
    return merge(found)


__all__ = ["PLUGINS", "Detector", "PluginData", "collect", "load", "merge"]
