"""Turn on the outgoing-call integrations: every installed one, or the ones asked for.

An integration whose library is not installed is skipped quietly when auto-enabled and is
an :class:`IntegrationNotAvailable` error when asked for by name. Names listed in
``K8SXRAY_DISABLED_INTEGRATIONS`` (``config.disabled_integrations``) are always left off.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from . import _config, _guard
from .integrations import INTEGRATIONS, IntegrationNotAvailable, library_installed, load
from .integrations import module as _module

log = logging.getLogger(__name__)

__all__ = [
    "IntegrationNotAvailable",
    "instrument_integrations",
    "instrument_when_imported",
    "library_installed",
    "load",
    "uninstrument_integrations",
]


def instrument_integrations(names: Iterable[str] | None = None, *, config: Any = None) -> list[str]:
    """Instrument integrations and return the names now on.

    *names* ``None`` means every known integration whose library is installed (failures are
    logged, never raised); explicit names must all be available (errors are raised).
    Disabled names (*config*, by default the current configuration) are skipped either way.
    """
    disabled = (config or _config.current()).disabled_integrations
    explicit = names is not None
    wanted = list(dict.fromkeys(names)) if names is not None else sorted(INTEGRATIONS)
    done: list[str] = []
    for name in wanted:
        if name in disabled:
            log.debug("k8sxray: the %s integration is disabled", name)
            continue
        if explicit:
            load(name).instrument()
            done.append(name)
            continue
        try:
            module = _module(name)
            if not library_installed(module):
                continue
            module.instrument()
        except Exception:
            _guard.internal_error(f"auto-instrumenting {name}")
            continue
        done.append(name)
    return done


def uninstrument_integrations(names: Iterable[str] | None = None) -> None:
    """Undo :func:`instrument_integrations` (every known integration by default)."""
    for name in sorted(INTEGRATIONS) if names is None else names:
        try:
            module = _module(name)
        except ImportError:
            continue
        uninstrument = getattr(module, "uninstrument", None)
        if uninstrument is not None:
            uninstrument()


def instrument_when_imported(disabled: Iterable[str] = ()) -> list[str]:
    """Instrument each enabled integration now if the app imported its library, else on import.

    Nothing is imported here (the zero-code bootstrap and ``instrument(app)`` use this: an app
    that never imports ``botocore`` pays nothing for it). Calling it again re-instruments what
    was uninstrumented and registers each import hook only once. Returns the names enabled now
    or on import.
    """
    import wrapt

    off = frozenset(disabled)
    enabled: list[str] = []
    for name in sorted(INTEGRATIONS):
        if name in off:
            continue
        try:
            module = _module(name)
        except ImportError:
            continue
        library = str(module.LIBRARY)
        if library in sys.modules:
            _hook(name, module)(sys.modules[library])
        elif name not in _hooked:
            if not library_installed(module):
                continue
            wrapt.register_post_import_hook(_hook(name, module), library)
            _hooked.add(name)
        enabled.append(name)
    return enabled


_hooked: set[str] = set()
"""Integrations whose import hook is registered (a hook cannot be removed, so once each)."""


def _hook(name: str, module: ModuleType) -> Any:
    def instrument_now(_library: ModuleType) -> None:
        try:
            if not getattr(module, "is_instrumented", lambda: False)():
                module.instrument()
        except Exception:  # never let our hook break the app's import
            _guard.internal_error(f"instrumenting {name} on import")

    return instrument_now
