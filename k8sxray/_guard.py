"""The one guard that keeps tracing from breaking the app: log each failure once."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("k8sxray")

_seen: set[str] = set()
_lock = threading.Lock()
_counts: dict[str, int] = {}


def internal_error(where: str) -> None:
    """Record that k8sxray failed at *where* (call inside ``except``); log it once."""
    with _lock:
        _counts[where] = _counts.get(where, 0) + 1
        first = where not in _seen
        _seen.add(where)
    if first:
        log.warning("k8sxray: internal error in %s; tracing skipped it (logged once)", where, exc_info=True)  # noqa: LOG014  # called inside except blocks


def warn_once(key: str, message: str, *args: object, exc_info: bool = False) -> None:
    """Log a warning the first time *key* is seen."""
    log_once(logging.WARNING, key, message, *args, exc_info=exc_info)


def log_once(level: int, key: str, message: str, *args: object, exc_info: bool = False) -> None:
    """Log at *level* the first time *key* is seen; later times are only counted."""
    with _lock:
        if key in _seen:
            _counts[key] = _counts.get(key, 0) + 1
            return
        _seen.add(key)
        _counts[key] = 1
    log.log(level, message, *args, exc_info=exc_info)


def counts() -> dict[str, int]:
    """How often each failure happened (for tests and diagnostics)."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    """Forget what was logged (tests)."""
    with _lock:
        _seen.clear()
        _counts.clear()
