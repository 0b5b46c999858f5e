"""Outgoing calls made with ``httpx``: one ``remote`` subsegment per ``Client.send``.

``Client.send`` and ``AsyncClient.send`` are patched on the classes: every request goes
through them (``get``, ``post``, ``request``, ``stream``), clients created before
``instrument()`` are traced, and custom transports (``MockTransport``, your own
``BaseTransport``) are covered because they sit below ``send``. Redirects and auth
round-trips of one ``send`` are part of its subsegment. With ``stream=True`` (and
``client.stream(...)``) the subsegment ends when the response headers have arrived;
reading the body is not timed.
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


def _send(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    sub = _begin(instance, args, kwargs)
    if sub is None:
        return wrapped(*args, **kwargs)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as exc:
        _outgoing.finish_error(_WHAT, sub, exc)
        raise
    _outgoing.finish_http(_WHAT, sub, response.status_code, _length(response))
    return response


async def _send_async(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    sub = _begin(instance, args, kwargs)
    if sub is None:
        return await wrapped(*args, **kwargs)
    try:
        response = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _outgoing.finish_error(_WHAT, sub, exc)
        raise
    _outgoing.finish_http(_WHAT, sub, response.status_code, _length(response))
    return response


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
