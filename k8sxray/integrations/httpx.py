"""Outgoing calls made with ``httpx``: one ``remote`` subsegment per ``Client.send``.

``Client.send`` and ``AsyncClient.send`` are patched on the classes: every request goes
through them (``get``, ``post``, ``request``, ``stream``), clients created before
``instrument()`` are traced, and custom transports (``MockTransport``, your own
``BaseTransport``) are covered because they sit below ``send``. Redirects and auth
round-trips of one ``send`` are part of its subsegment. A streamed response
(``client.stream(...)``, ``send(..., stream=True)``) ends its subsegment when the response
is closed (reading it to the end closes it); until then the caller's own trace context is
current again.
"""

from __future__ import annotations

from typing import Any

from . import _outgoing

LIBRARY = "httpx"
"""The import this integration needs."""

_WHAT = "an httpx call"


def _begin(client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if hasattr(client, "_original_transport"):
        return None  # a client of the official SDK's httpx patch: it traces the call itself
    request: Any = args[0] if args else kwargs.get("request")
    try:
        url = request.url
        return _outgoing.begin_http(_WHAT, request.method, str(url), request.headers, url.host)
    except Exception:  # a request object we do not understand: leave it alone
        return None


def _length(response: Any) -> int | None:
    """The body's length: the bytes read for a read response, else ``Content-Length``."""
    read = response.num_bytes_downloaded  # public, and cheaper than a header lookup
    return read if read else _outgoing.content_length(response.headers)


def _finish(sub: Any, response: Any, kwargs: dict[str, Any]) -> Any:
    if kwargs.get("stream") and not response.is_closed:
        done = _outgoing.Once(
            lambda: _outgoing.finish_http(_WHAT, sub, response.status_code, _length(response))
        )
        if _end_on_close(response, done):
            _outgoing.detach(sub)
            return response
    _outgoing.finish_http(_WHAT, sub, response.status_code, _length(response))
    return response


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


def _send(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    sub = _begin(instance, args, kwargs)
    if sub is None:
        return wrapped(*args, **kwargs)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as exc:
        _outgoing.finish_error(_WHAT, sub, exc)
        raise
    return _finish(sub, response, kwargs)


async def _send_async(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    sub = _begin(instance, args, kwargs)
    if sub is None:
        return await wrapped(*args, **kwargs)
    try:
        response = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _outgoing.finish_error(_WHAT, sub, exc)
        raise
    return _finish(sub, response, kwargs)


_patches = _outgoing.Patches(
    "httpx", [("httpx._client", "Client.send", _send), ("httpx._client", "AsyncClient.send", _send_async)]
)


def instrument() -> bool:
    """Trace every ``httpx`` call; ``False`` when it already was (harmless)."""
    import httpx  # noqa: F401  # the patch targets must be imported

    return _patches.apply()


def uninstrument() -> None:
    """Restore ``httpx.Client.send`` and ``httpx.AsyncClient.send``."""
    _patches.remove()


def is_instrumented() -> bool:
    """Whether ``instrument()`` is in effect."""
    return _patches.active
