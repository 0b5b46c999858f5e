"""Integrations with outgoing-call libraries (and the official SDK's recorder).

:data:`INTEGRATIONS` maps an integration's name (as written in
``K8SXRAY_DISABLED_INTEGRATIONS``) to its module. Each module has idempotent
``instrument()`` and ``uninstrument()`` functions and a ``LIBRARY`` naming the import it
needs; an integration whose library is missing is skipped when auto-enabled and raises
a clear error when asked for by name. The WSGI/ASGI middlewares are not listed here:
they wrap an app, see :func:`k8sxray.instrument`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

INTEGRATIONS: Mapping[str, str] = {
    "botocore": "k8sxray.integrations.botocore",
    "httpx": "k8sxray.integrations.httpx",
    "requests": "k8sxray.integrations.requests",
    "xray_sdk": "k8sxray.integrations.xray_sdk",
}
"""Known integration names and the module that implements each."""


def load(name: str) -> ModuleType:
    """The integration module *name*, its library imported.

    Raises ``ValueError`` for an unknown name and ``IntegrationNotAvailable`` (an
    ``ImportError``) naming the missing library when it is not installed.
    """
    from .._autoinstrument import load as _load  # at call time: _autoinstrument imports this package

    return _load(name)


__all__ = ["INTEGRATIONS", "load"]
