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
from .._errors import ContextMissingError
from . import _outgoing

LIBRARY = "requests"
"""The import this integration needs."""

_WHAT = "a requests call"


def _patched_send(original: Any) -> Any:  # noqa: PLR0915  # the send below is one frame on purpose
    """What replaces ``Session.send``: a plain function (a call costs no wrapper object), with
    the usual call's steps inline (each further function it went through, in the middle of
    requests' own work, cost more than it does alone)."""
    call = _outgoing.caller(original)
    begin_call = _recorder.begin_call
    end_subsegment = _recorder.end_subsegment
    targets = _outgoing._TARGETS
    remember = _outgoing.remember

    def send(self: Any, request: Any, **kwargs: Any) -> Any:  # noqa: PLR0912  # one frame on purpose
        if not _patches.active:
            return call(self, request, **kwargs)
        sub = None
        try:
            headers = request.headers
            if type(headers) is _fast_headers:  # the usual case: its own dict, no KeyError
                store = headers._store
                if _KEY not in store and _TRACEPARENT not in store:  # else traced already: another
                    url = request.url or ""  # tracer, the caller, or this send (a redirect)
                    found = targets.get(url) or remember(url, url)
                    sub, added = begin_call(_WHAT, found[0], request.method or "GET", found[1])
                    if added is not None:  # set as CaseInsensitiveDict.__setitem__ does
                        if _TRACESTATE in store:  # the caller's own tracestate stays
                            added = tuple(item for item in added if item[0] != _TRACESTATE)
                        store.update(added)
            elif not _outgoing.carries_trace(headers):
                sub = _outgoing.begin_http(_WHAT, request.method or "GET", request.url or "", headers)
        except ContextMissingError:  # outside any request, with AWS_XRAY_CONTEXT_MISSING=RUNTIME_ERROR
            raise
        except Exception:  # a request object we do not understand: leave it alone
            pass
        if sub is None:
            return call(self, request, **kwargs)
        try:
            response = call(self, request, **kwargs)
        except BaseException as exc:
            _outgoing.finish_error(_WHAT, sub, exc)
            raise
        try:
            status = response.status_code
            found = response.headers
            if type(found) is _fast_headers:  # its own dict: no KeyError when there is no length
                item = found._store.get("content-length")
                value = item[1] if item is not None else None
            else:
                value = found.get("content-length")
        except Exception:  # a response object we do not understand: end the call here
            _guard.internal_error(f"{_WHAT} (response)")
            end_subsegment(sub)
            return response
        try:
            length = int(value) if value is not None else None
        except (TypeError, ValueError):  # a malformed Content-Length is left out
            length = None
        if kwargs.get("stream"):
            done = _outgoing.Once(lambda: end_subsegment(sub, status, length))
            if _end_with_body(response, done):
                _outgoing.detach(sub)
                return response
        end_subsegment(sub, status, length)
        return response

    return send


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
_TRACEPARENT = _outgoing.TRACEPARENT
_TRACESTATE = _recorder.TRACESTATE
_fast_headers: Any = None
"""``requests.structures.CaseInsensitiveDict`` when its layout passed :func:`_check_fast_headers`."""


def _check_fast_headers() -> Any:
    from requests.structures import CaseInsensitiveDict

    try:
        headers: Any = CaseInsensitiveDict({"Accept": "*/*"})
        missing = _KEY not in headers._store
        headers[_outgoing.HEADER] = "x"
        found = _KEY in headers._store and headers[_KEY.upper()] == "x"
        headers._store[_KEY] = (_outgoing.HEADER, "y")  # what the patch does instead of setting it
        works = missing and found and headers[_KEY] == "y" and (_outgoing.HEADER, "y") in headers.items()
    except Exception:
        return None
    return CaseInsensitiveDict if works else None


_patches = _outgoing.Patches("requests", [("requests.sessions", "Session.send", _patched_send)])


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
