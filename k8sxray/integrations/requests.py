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

from .. import _guard, _recorder
from . import _outgoing

LIBRARY = "requests"
"""The import this integration needs."""

_WHAT = "a requests call"


def _send(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _patches.active:
        return wrapped(*args, **kwargs)
    request: Any = args[0] if args else kwargs.get("request")
    try:
        headers = request.headers
        # the usual case: one look in its dict, no KeyError
        fast = type(headers) is _fast_headers
        if (_KEY in headers._store) if fast else (_outgoing.HEADER in headers):
            sub = None  # already carries it: another tracer, or the caller
        else:
            sub = _outgoing.begin_http(_WHAT, request.method or "GET", request.url or "", headers)
    except Exception:  # a request object we do not understand: leave it alone
        sub = None
    if sub is None:
        return wrapped(*args, **kwargs)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as exc:
        _outgoing.finish_error(_WHAT, sub, exc)
        raise
    try:
        status = response.status_code
        found = response.headers
        if type(found) is _fast_headers:  # its own dict: no KeyError when there is no length
            item = found._store.get("content-length")
            length = _outgoing.as_length(item[1] if item is not None else None)
        else:
            length = _outgoing.content_length(found)
    except Exception:  # a response object we do not understand: end the call here
        _guard.internal_error(f"{_WHAT} (response)")
        _recorder.end_subsegment(sub)
        return response
    if kwargs.get("stream"):
        done = _outgoing.Once(lambda: _outgoing.finish_http(_WHAT, sub, status, length))
        if _end_with_body(response, done):
            _outgoing.detach(sub)
            return response
    _outgoing.finish_http(_WHAT, sub, status, length)
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


# ``"x-amzn-trace-id" in headers`` on requests' CaseInsensitiveDict goes through Mapping's
# __contains__, which raises and catches a KeyError when the header is missing (every call).
# When instrument() has checked that it keeps lowercased names as the keys of its ``_store``
# dict (every release since 2012), that dict is asked instead.
_KEY = _outgoing.HEADER.lower()
_fast_headers: Any = None
"""``requests.structures.CaseInsensitiveDict`` when its layout passed :func:`_check_fast_headers`."""


def _check_fast_headers() -> Any:
    from requests.structures import CaseInsensitiveDict

    try:
        headers: Any = CaseInsensitiveDict({"Accept": "*/*"})
        missing = _KEY not in headers._store
        headers[_outgoing.HEADER] = "x"
        works = missing and _KEY in headers._store and headers[_KEY.upper()] == "x"
    except Exception:
        return None
    return CaseInsensitiveDict if works else None


_patches = _outgoing.Patches("requests", [("requests.sessions", "Session.send", _send)], self_gated=True)


def instrument() -> bool:
    """Trace every ``requests`` call; ``False`` when it already was (harmless)."""
    global _fast_headers
    import requests.sessions  # noqa: F401  # the patch target must be imported

    if _fast_headers is None:
        _fast_headers = _check_fast_headers()
    return _patches.apply()


def uninstrument() -> None:
    """Restore ``requests.Session.send``."""
    _patches.remove()


def is_instrumented() -> bool:
    """Whether ``instrument()`` is in effect."""
    return _patches.active
