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
from typing import Protocol

log = logging.getLogger(__name__)


class Renewable(Protocol):
    def _after_fork_in_child(self) -> None: ...


_objects: weakref.WeakSet[Renewable] = weakref.WeakSet()
_lock = threading.Lock()
_installed = False


def track(obj: Renewable) -> None:
    """Renew *obj* in every forked child (held weakly; installs the fork hook on first use)."""
    global _installed
    with _lock:
        _objects.add(obj)
        if not _installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_renew)
            _installed = True


def forget(obj: Renewable) -> None:
    """Stop renewing *obj* (it was closed)."""
    with _lock:
        _objects.discard(obj)


def _renew() -> None:
    global _lock
    _lock = threading.Lock()  # the parent's may have been held by another thread at fork time
    for obj in list(_objects):
        try:
            obj._after_fork_in_child()
        except Exception:  # a child must start even if one renewal fails
            log.warning("k8sxray: renewing %r after fork failed", obj, exc_info=True)
