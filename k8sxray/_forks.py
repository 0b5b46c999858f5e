"""Objects whose threads, sockets or locks must be renewed in a forked child.

Threads do not survive ``fork()``: a gunicorn or uWSGI worker forked after k8sxray was
configured would otherwise keep a dead emitter flusher, a dead sampling poller and a dead
discovery refresher. An object registers itself with :func:`track` when it starts such
work; in the child, its ``_after_fork_in_child()`` runs before any user code.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)


class Renewable(Protocol):
    def _after_fork_in_child(self) -> None: ...


_objects: weakref.WeakSet[Renewable] = weakref.WeakSet()
_callbacks: list[Callable[[], None]] = []
_lock = threading.Lock()
_installed = False


def track(obj: Renewable) -> None:
    """Renew *obj* in every forked child (held weakly; installs the fork hook on first use)."""
    with _lock:
        _objects.add(obj)
        _install()


def on_fork(callback: Callable[[], None]) -> None:
    """Call *callback* in every forked child, before the tracked objects are renewed."""
    with _lock:
        _callbacks.append(callback)
        _install()


def _install() -> None:
    global _installed
    if not _installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_renew)
        _installed = True


def renew_in_child() -> None:
    """Renew everything now: for servers that fork in C without Python's at-fork hooks (uWSGI)."""
    _renew()


def forget(obj: Renewable) -> None:
    """Stop renewing *obj* (it was closed)."""
    with _lock:
        _objects.discard(obj)


def _renew() -> None:
    global _lock
    _lock = threading.Lock()  # the parent's may have been held by another thread at fork time
    for callback in list(_callbacks):
        try:
            callback()
        except Exception:  # a child must start even if one renewal fails
            log.warning("k8sxray: %r after fork failed", callback, exc_info=True)
    for obj in list(_objects):
        try:
            obj._after_fork_in_child()
        except Exception:  # a child must start even if one renewal fails
            log.warning("k8sxray: renewing %r after fork failed", obj, exc_info=True)
