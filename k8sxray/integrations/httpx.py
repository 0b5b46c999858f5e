"""Outgoing calls made with ``httpx``: one ``remote`` subsegment per ``Client.send``.

``Client.send`` and ``AsyncClient.send`` are patched on the classes: every request goes
through them (``get``, ``post``, ``request``, ``stream``), clients created before
``instrument()`` are traced, and custom transports (``MockTransport``, your own
``BaseTransport``) are covered because they sit below ``send``. Redirects and auth
round-trips of one ``send`` are part of its subsegment. A streamed response
(``client.stream(...)``, ``send(..., stream=True)``) ends its subsegment when the response
is closed (reading it to the end closes it); until then the caller's own trace context is
current again.

The trace headers (``X-Amzn-Trace-Id``, ``traceparent``, as ``K8SXRAY_PROPAGATORS`` says) go
on the wire, not on the request, when the client sends through httpx's own ``HTTPTransport``
(the usual client: no mounts, no proxies): that transport's ``handle_request`` adds them just
before the request is written and takes them off again after, on every hop. httpx's work
around the transport (its cookie handling looks every request header up by scanning them all)
never sees them, and a traced call adds a quarter fewer instructions;
``response.request.headers`` does not show them. Any other client (a custom transport, mounts)
gets them on the request, in ``Client.send``.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from .. import _guard, _recorder
from .._context import current_entity
from .._errors import ContextMissingError
from .._segment import Subsegment
from . import _outgoing

LIBRARY = "httpx"
"""The import this integration needs."""

_WHAT = "an httpx call"


def _begin(client: Any, request: Any) -> Any:
    """Begin the call's subsegment and see to its trace header: on the request, or, for a client
    that sends through httpx's own transport, on the wire (:func:`_patched_handle`, which finds
    it on the subsegment). ``None`` when there is nothing to end."""
    if hasattr(client, "_original_transport"):
        return None  # a client of the official SDK's httpx patch: it traces the call itself
    try:
        headers = request.headers
        fast = type(headers) is _fast_headers  # the usual case: httpx's own list, scanned in C
        if (
            (not _KEYS.isdisjoint(map(_lowercase_name, headers._list)))
            if fast
            else _outgoing.carries_trace(headers)
        ):
            return None  # already carries a trace header (another tracer, or the caller)
        url = request.url
        key = url._uri_reference if _parts_key else None  # the parts: cheaper than str(url)
        found = _outgoing._TARGETS.get(key) if key is not None else None
        if found is None:
            found = _outgoing.remember(key, str(url), url.host or "unknown")
        sub, added = _recorder.begin_call(_WHAT, found[0], request.method, found[1], True)
        if added is not None:  # as httpx.Headers keeps them, in bytes
            if (
                sub is not None
                and fast
                and type(client._transport) in _plain_transports
                and not client._mounts
            ):
                if added[-1][1] == _STATE_KEY and _STATE_KEY in map(_lowercase_name, headers._list):
                    del added[-1]  # the caller's own tracestate goes instead
                sub.wire = added
                return sub
            try:
                _add_headers(headers, added)
            except Exception:
                if sub is not None:
                    _recorder.end_subsegment(sub)
                raise
        return sub
    except ContextMissingError:  # outside any request, with AWS_XRAY_CONTEXT_MISSING=RUNTIME_ERROR
        raise
    except Exception:
        _guard.internal_error(f"{_WHAT} (begin)")
        return None


# --- the headers on the wire ------------------------------------------------------------------
Header = tuple[bytes, bytes, bytes]
"""A header as httpx.Headers keeps it: (name, lowercase name, value)."""
_current = current_entity.get
_plain_transports: tuple[type, ...] = ()
"""``(httpx.HTTPTransport, httpx.AsyncHTTPTransport)`` once :func:`_check_plain_transports` has
found that a client without mounts sends through its ``_transport``."""


def _check_plain_transports() -> tuple[type, ...]:
    import httpx

    try:
        transport = httpx.MockTransport(lambda request: httpx.Response(204))  # cheap to make, unlike TLS
        with httpx.Client(transport=transport, trust_env=False) as client:
            works = (
                client._transport is transport
                and not client._mounts
                and client._transport_for_url(httpx.URL("http://example/")) is transport
            )
    except Exception:
        return ()
    return (httpx.HTTPTransport, httpx.AsyncHTTPTransport) if works else ()


def _with_headers(request: Any, items: list[Header]) -> Any:
    """A hop whose headers are not httpx's own (an event hook replaced them) gets the headers
    through the public API, for good."""
    headers = request.headers
    if not _outgoing.carries_trace(headers):
        for name, _key, value in items:
            if name.decode() not in headers:
                headers[name.decode()] = value.decode()
    return request


def _without(found: list[Header], items: list[Header]) -> None:
    """Take the trace headers *items* off *found* again, wherever they are now (the usual case,
    still last, is handled inline)."""
    for item in items:
        if item in found:
            found.remove(item)


def _patched_handle(original: Any) -> Any:
    """What replaces ``HTTPTransport.handle_request``: the call's trace headers on this hop only."""
    call = _outgoing.caller(original)

    def handle_request(self: Any, request: Any) -> Any:
        call_ = _current()  # the call's subsegment, current from Client.send to its last hop
        items = call_.wire if type(call_) is Subsegment else None
        if items is None or not _patches.active:
            return call(self, request)
        headers = request.headers
        if type(headers) is not _fast_headers:
            return call(self, _with_headers(request, items))
        found = headers._list
        if not _KEYS.isdisjoint(map(_lowercase_name, found)):
            return call(self, request)
        count = len(items)
        found.extend(items)
        try:
            return call(self, request)
        finally:
            if found[-count:] == items:  # still last: compared in C, each item by identity first
                del found[-count:]
            else:
                _without(found, items)

    return handle_request


def _patched_handle_async(original: Any) -> Any:
    """What replaces ``AsyncHTTPTransport.handle_async_request``."""
    call = _outgoing.caller(original)

    async def handle_async_request(self: Any, request: Any) -> Any:
        call_ = _current()  # the call's subsegment, current from Client.send to its last hop
        items = call_.wire if type(call_) is Subsegment else None
        if items is None or not _patches.active:
            return await call(self, request)
        headers = request.headers
        if type(headers) is not _fast_headers:
            return await call(self, _with_headers(request, items))
        found = headers._list
        if not _KEYS.isdisjoint(map(_lowercase_name, found)):
            return await call(self, request)
        count = len(items)
        found.extend(items)
        try:
            return await call(self, request)
        finally:
            if found[-count:] == items:  # still last: compared in C, each item by identity first
                del found[-count:]
            else:
                _without(found, items)

    return handle_async_request


# --- adding the header ------------------------------------------------------------------------
# httpx.Headers.__setitem__ re-encodes the name and scans for duplicates, which we have just
# ruled out. When instrument() has checked that httpx.Headers keeps its headers as a list of
# (name, lowercase name, value) byte triples (every release since 0.18), the header is appended
# to that list; any other headers object, or a release laid out otherwise, uses the public API.
_KEY = _outgoing.HEADER.lower().encode()
_KEYS = frozenset(key.encode() for key in _outgoing.TRACE_KEYS)
_STATE_KEY = _recorder.TRACESTATE.encode()
_lowercase_name = itemgetter(1)  # of httpx.Headers' (name, lowercase name, value) triples
_NAME = _outgoing.HEADER.encode()
_fast_headers: Any = None
"""``httpx.Headers`` when its private layout passed :func:`_check_fast_headers`, else ``None``."""


def _add_headers(headers: Any, added: _recorder.Wire) -> None:
    """Set each of the trace headers *added* that *headers* does not carry."""
    if type(headers) is _fast_headers:
        present = set(map(_lowercase_name, headers._list))
        headers._list.extend(item for item in added if item[1] not in present)
    else:
        for name, _key, value in added:
            text = name.decode()
            if text not in headers:
                headers[text] = value.decode()


def _append(headers: Any, value: str) -> None:
    headers._list.append((_NAME, _KEY, value.encode()))  # a trace header is ASCII


def _listed(headers: Any) -> bool:
    return _KEY in map(_lowercase_name, headers._list)


def _check_fast_headers() -> Any:
    """``httpx.Headers`` if appending to its list has the same effect as setting the header."""
    import httpx

    try:
        value = "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=1"
        headers = httpx.Headers({"Host": "example", "Accept": "*/*"})
        if not isinstance(headers._list, list) or _listed(headers):
            return None
        _append(headers, value)
        copied = httpx.Headers(headers)
        works = (
            headers.get_list(_outgoing.HEADER) == [value]
            and headers.raw[-1] == (_NAME, value.encode())
            and copied.get(_outgoing.HEADER.lower()) == value
            and _listed(copied)
            and _listed(httpx.Headers({_outgoing.HEADER.upper(): "x"}))
        )
    except Exception:
        return None
    return httpx.Headers if works else None


_parts_key = False
"""Whether ``httpx.URL`` keeps its parts as a hashable tuple that makes its string
(:func:`_check_parts_key`): then the recorded URL is looked up by those parts."""


def _check_parts_key() -> bool:
    import httpx

    try:
        urls = [httpx.URL("http://user:pw@Example.com:8080/a?token=x"), httpx.URL("http://example.com/a")]
        parts = [url._uri_reference for url in urls]
        return all(type(p) is not tuple and isinstance(p, tuple) for p in parts) and (
            hash(parts[0]) != hash(parts[1])
            and str(urls[0]) == str(httpx.URL(str(urls[0])))
            and httpx.URL(str(urls[1]))._uri_reference == parts[1]
        )
    except Exception:
        return False


def _finish_stream(sub: Any, response: Any) -> Any:
    """A streamed response: its subsegment ends when the response is closed."""
    if not response.is_closed:
        done = _outgoing.Once(lambda: _end(sub, response))
        if _end_on_close(response, done):
            _outgoing.detach(sub)
            return response
    _end(sub, response)
    return response


def _end(sub: Any, response: Any) -> None:
    """End *sub* with the response's status and body length (the bytes read for a read
    response, else ``Content-Length``); never raises."""
    try:
        read = response.num_bytes_downloaded  # public, and cheaper than a header lookup
        status = response.status_code
        length = read if read else _outgoing.content_length(response.headers)
    except Exception:
        _guard.internal_error(f"{_WHAT} (response)")
        _recorder.end_subsegment(sub)
        return
    _recorder.end_subsegment(sub, status, length)


def _end_on_close(response: Any, done: _outgoing.Once) -> bool:
    """Put a stream that calls *done* when closed around the response's body."""
    try:
        import httpx

        inner = response.stream
        if isinstance(inner, httpx.SyncByteStream):
            response.stream = _sync_body_class()(inner, done)
        elif isinstance(inner, httpx.AsyncByteStream):
            response.stream = _async_body_class()(inner, done)
        else:
            return False
        return True
    except Exception:
        return False


_classes: dict[str, type] = {}


def _sync_body_class() -> type:
    cls = _classes.get("sync")
    if cls is None:
        import httpx

        class _SyncBody(httpx.SyncByteStream):
            def __init__(self, inner: Any, done: _outgoing.Once) -> None:
                self._inner = inner
                self._done = done

            def __iter__(self) -> Any:
                return iter(self._inner)

            def close(self) -> None:
                try:
                    self._inner.close()
                finally:
                    self._done()

        cls = _classes["sync"] = _SyncBody
    return cls


def _async_body_class() -> type:
    cls = _classes.get("async")
    if cls is None:
        import httpx

        class _AsyncBody(httpx.AsyncByteStream):
            def __init__(self, inner: Any, done: _outgoing.Once) -> None:
                self._inner = inner
                self._done = done

            def __aiter__(self) -> Any:
                return self._inner.__aiter__()

            async def aclose(self) -> None:
                try:
                    await self._inner.aclose()
                finally:
                    self._done()

        cls = _classes["async"] = _AsyncBody
    return cls


def _patched_send(original: Any) -> Any:
    """What replaces ``Client.send``: a plain function, so a call costs no wrapper object."""
    call = _outgoing.caller(original)

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        if not _patches.active:
            return call(self, request, **kwargs)
        sub = _begin(self, request)
        if sub is None:
            return call(self, request, **kwargs)
        try:
            response = call(self, request, **kwargs)
        except BaseException as exc:
            _outgoing.finish_error(_WHAT, sub, exc)
            raise
        if kwargs.get("stream"):
            return _finish_stream(sub, response)
        _end(sub, response)
        return response

    return send


def _patched_send_async(original: Any) -> Any:
    """What replaces ``AsyncClient.send``."""
    call = _outgoing.caller(original)

    async def send(self: Any, request: Any, **kwargs: Any) -> Any:
        if not _patches.active:
            return await call(self, request, **kwargs)
        sub = _begin(self, request)
        if sub is None:
            return await call(self, request, **kwargs)
        try:
            response = await call(self, request, **kwargs)
        except BaseException as exc:
            _outgoing.finish_error(_WHAT, sub, exc)
            raise
        if kwargs.get("stream"):
            return _finish_stream(sub, response)
        _end(sub, response)
        return response

    return send


_patches = _outgoing.Patches(
    "httpx",
    [
        ("httpx._client", "Client.send", _patched_send),
        ("httpx._client", "AsyncClient.send", _patched_send_async),
        ("httpx._transports.default", "HTTPTransport.handle_request", _patched_handle),
        ("httpx._transports.default", "AsyncHTTPTransport.handle_async_request", _patched_handle_async),
    ],
)


def instrument() -> bool:
    """Trace every ``httpx`` call; ``False`` when it already was (harmless)."""
    global _fast_headers, _parts_key, _plain_transports
    import httpx  # noqa: F401  # the patch targets must be imported

    if _fast_headers is None:
        _fast_headers = _check_fast_headers()
        _parts_key = _check_parts_key()
        _plain_transports = _check_plain_transports()
    return _patches.apply()


def uninstrument() -> None:
    """Restore ``Client.send``, ``AsyncClient.send`` and the two transports' methods."""
    _patches.remove()


def is_instrumented() -> bool:
    """Whether ``instrument()`` is in effect."""
    return _patches.active
