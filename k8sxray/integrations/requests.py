"""Outgoing calls made with ``requests``: one ``remote`` subsegment per ``Session.send``.

``Session.send`` is patched on the class, so sessions created before ``instrument()``
are traced too, whatever transport adapter they mount. Redirects followed by the same
``send`` are part of its subsegment. With ``stream=True`` the subsegment ends when the
response headers have arrived (``send`` returns); reading the body is not timed.
"""

from __future__ import annotations

from typing import Any

from . import _outgoing

LIBRARY = "requests"
"""The import this integration needs."""

_WHAT = "a requests call"


def _send(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    request: Any = args[0] if args else kwargs.get("request")
    try:
        sub = _outgoing.begin_http(_WHAT, request.method or "GET", request.url or "", request.headers)
    except Exception:  # a request object we do not understand: leave it alone
        sub = None
    if sub is None:
        return wrapped(*args, **kwargs)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as exc:
        _outgoing.finish_error(_WHAT, sub, exc)
        raise
    _outgoing.finish_http(_WHAT, sub, response.status_code, _outgoing.content_length(response.headers))
    return response


_patches = _outgoing.Patches("requests", [("requests.sessions", "Session.send", _send)])


def instrument() -> bool:
    """Trace every ``requests`` call; ``False`` when it already was (harmless)."""
    import requests.sessions  # noqa: F401  # the patch target must be imported

    return _patches.apply()


def uninstrument() -> None:
    """Restore ``requests.Session.send``."""
    _patches.remove()


def is_instrumented() -> bool:
    """Whether ``instrument()`` is in effect."""
    return _patches.active
