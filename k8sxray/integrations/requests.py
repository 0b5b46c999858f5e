"""Outgoing calls made with ``requests``: one ``remote`` subsegment per ``Session.send``.

``Session.send`` is patched on the class, so sessions created before ``instrument()``
are traced too, whatever transport adapter they mount. Redirects followed by the same
``send`` are part of its subsegment. A streamed response (``stream=True``) ends its
subsegment when the body has been read to the end or the response is closed; until then
the caller's own trace context is current again. A streamed body that is never read nor
closed leaves the subsegment in progress.
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
    length = _outgoing.content_length(response.headers)
    if kwargs.get("stream"):
        done = _outgoing.Once(lambda: _outgoing.finish_http(_WHAT, sub, response.status_code, length))
        if _end_with_body(response, done):
            _outgoing.detach(sub)
            return response
    _outgoing.finish_http(_WHAT, sub, response.status_code, length)
    return response


def _end_with_body(response: Any, done: _outgoing.Once) -> bool:
    """Call *done* when urllib3 releases the connection (body read or response closed)."""
    try:
        raw = response.raw
        release = raw.release_conn
        if raw.closed:  # no body left to read (HEAD, 204, empty)
            return False

        def release_conn() -> None:
            try:
                release()
            finally:
                done()

        raw.release_conn = release_conn
        return True
    except Exception:  # not urllib3 (a custom adapter): end at the headers
        return False


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
