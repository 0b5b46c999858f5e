"""Integrations with outgoing-call libraries (and the official SDK's recorder).

:data:`INTEGRATIONS` maps an integration's name (as written in
``K8SXRAY_DISABLED_INTEGRATIONS``) to its module. Each module has idempotent
``instrument()`` and ``uninstrument()`` functions and a ``LIBRARY`` naming the import it
needs; an integration whose library is missing is skipped when auto-enabled and raises
a clear error when asked for by name. The WSGI/ASGI middlewares are not listed here:
they wrap an app, see :func:`k8sxray.instrument`. Turning integrations on is
``k8sxray._autoinstrument``'s job; this package only names and loads them, and imports
nothing of k8sxray (its configuration reads the names).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from types import ModuleType

INTEGRATIONS: Mapping[str, str] = {
    "botocore": "k8sxray.integrations.botocore",
    "httpx": "k8sxray.integrations.httpx",
    "requests": "k8sxray.integrations.requests",
    "xray_sdk": "k8sxray.integrations.xray_sdk",
}
"""Known integration names and the module that implements each."""


class IntegrationNotAvailable(ImportError):
    """An integration was asked for by name but its library is not installed."""


def module(name: str) -> ModuleType:
    """The integration module *name*, its library not checked.

    Raises ``ValueError`` for an unknown name and :class:`IntegrationNotAvailable` when the
    module cannot be imported.
    """
    if name not in INTEGRATIONS:
        raise ValueError(f"k8sxray: unknown integration {name!r}; known: {', '.join(sorted(INTEGRATIONS))}")
    try:
        return importlib.import_module(INTEGRATIONS[name])
    except ImportError as exc:
        raise IntegrationNotAvailable(f"k8sxray: the {name} integration cannot be loaded: {exc}") from exc


def library_installed(integration: ModuleType) -> bool:
    """Whether the library an integration module needs (its ``LIBRARY``) can be imported."""
    library = str(integration.LIBRARY)
    try:
        return importlib.util.find_spec(library) is not None
    except (ImportError, ValueError):
        return False


def load(name: str) -> ModuleType:
    """The integration module *name*, its library checked.

    Raises ``ValueError`` for an unknown name and :class:`IntegrationNotAvailable` (an
    ``ImportError``) naming the missing library when it is not installed.
    """
    integration = module(name)
    if not library_installed(integration):
        raise IntegrationNotAvailable(
            f"k8sxray: the {name} integration needs the {integration.LIBRARY!r} package, which is not "
            f"installed (pip install {integration.LIBRARY})"
        )
    return integration


__all__ = ["INTEGRATIONS", "IntegrationNotAvailable", "library_installed", "load", "module"]
