"""Trace any ASGI app: one segment per HTTP request or websocket connection.

Lifespan (and any other scope type) passes through untouched. An HTTP segment ends
when the last body chunk has been sent, not when the handler returns; a client
disconnect, an exception or a cancellation still ends and emits it. A websocket gets
one segment for the whole connection. No subsegment is made per send/receive. The trace is
continued from ``X-Amzn-Trace-Id``, else from W3C ``traceparent`` (with its ``tracestate``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .. import _context, _guard, _header, _recorder
from .._segment import Segment, UnsampledTrace
from ._http import fill_request, names_header

__all__ = ["wrap"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HEADER = b"x-amzn-trace-id"
_UNSAMPLED_DIGITS = _header.UNSAMPLED_DIGITS
_WANTED = frozenset({b"host", b"user-agent", _HEADER, b"x-forwarded-for", b"traceparent", b"tracestate"})


def _headers(scope: Scope) -> tuple[str | None, str, str | None, str | None, str | None, str | None]:
    """(trace header, host, user agent, x-forwarded-for, traceparent, tracestate) from the
    scope's headers; a W3C header sent more than once is joined with commas, as a WSGI server
    joins it (several ``traceparent`` make an invalid one, several ``tracestate`` one list)."""
    trace = ua = xff = parent = state = None
    host = ""
    for name, value in scope.get("headers") or ():
        if name not in _WANTED:  # most headers: one set lookup, not a comparison with each name
            continue
        if name == b"host":
            host = value.decode("latin-1")
        elif name == b"user-agent":
            ua = value.decode("latin-1")
        elif name == _HEADER:
            trace = value.decode("latin-1")
        elif name == b"x-forwarded-for":
            xff = value.decode("latin-1")
        elif name == b"traceparent":
            text = value.decode("latin-1")
            parent = text if parent is None else parent + "," + text
        elif name == b"tracestate":
            text = value.decode("latin-1")
            state = text if state is None else state + "," + text
    return trace, host, ua, xff, parent, state


def wrap(app: ASGIApp) -> ASGIApp:
    """An ASGI app that traces *app*; ``wrap(wrap(app))`` traces once."""
    if getattr(app, "_k8sxray_traced", False):
        return app
    start_request = _recorder.start_request
    continue_unsampled = _recorder.continue_unsampled
    continue_unsampled_traceparent = _recorder.continue_unsampled_traceparent
    now = time.time

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:  # noqa: PLR0912  # one frame
        kind = scope["type"]
        if kind != "http" and kind != "websocket":  # noqa: PLR1714  # faster than a set on the hot path
            return await app(scope, receive, send)
        try:
            header, host, user_agent, forwarded, traceparent, tracestate = _headers(scope)
            trace: Segment | UnsampledTrace | None = None
            if tracestate is None:  # not sampled upstream? (a tracestate to pass on: the longer way)
                if header:
                    if header[-1:] == "0":
                        trace = continue_unsampled(header)
                elif traceparent and len(traceparent) == 55 and traceparent[54] in _UNSAMPLED_DIGITS:
                    trace = continue_unsampled_traceparent(traceparent)  # None for another form
            if trace is None:
                method = scope.get("method", "GET")
                path = scope.get("path", "")
                root = scope.get("root_path")
                if root and not path.startswith(root):  # servers differ on whether path includes it
                    path = root + path
                trace = start_request(header, host, method, path, now(), False, traceparent, tracestate)
        except Exception:
            _guard.internal_error("asgi.start")
            return await app(scope, receive, send)
        if trace is None:
            return await app(scope, receive, send)
        response_header = (_HEADER, trace.response_header.encode())
        if type(trace) is UnsampledTrace:  # inline: no second coroutine per request

            async def unsampled_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = _with_header(message, response_header)
                await send(message)

            try:
                return await app(scope, receive, unsampled_send)
            finally:
                _context.restore(trace._token)
        assert isinstance(trace, Segment)
        try:
            client = scope.get("client")
            scheme = scope.get("scheme") or ("ws" if kind == "websocket" else "http")
            fill_request(
                trace,
                method,
                scheme,
                host or _server_host(scope),
                path,
                (scope.get("query_string") or b"").decode("latin-1"),
                user_agent,
                client[0] if client else None,
                forwarded,
            )
        except Exception:
            _guard.internal_error("asgi.request")
        if kind == "websocket":
            await _websocket(app, scope, receive, send, trace, response_header)
            return None

        await _http(app, scope, receive, send, trace, response_header)
        return None

    traced._k8sxray_traced = True  # type: ignore[attr-defined]
    traced.__wrapped__ = app  # type: ignore[attr-defined]
    return traced


async def _websocket(  # noqa: PLR0917  # private, on the hot path
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, trace: Segment, header: tuple[bytes, bytes]
) -> None:
    async def websocket_send(message: Message) -> None:
        message_type = message["type"]
        if message_type == "websocket.accept" and trace.status is None:
            trace.set_status(101)
            message = _with_header(message, header)
        elif message_type == "websocket.close" and trace.status is None:
            trace.set_status(403)  # closed before accepting: the server answers 403
        await send(message)

    try:
        await app(scope, receive, websocket_send)
    except BaseException as exc:
        _record_failure(trace, exc)
        raise
    finally:
        _recorder.end_segment(trace)


async def _http(  # noqa: PLR0917  # private, on the hot path
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    trace: Segment,
    response_header: tuple[bytes, bytes],
) -> None:
    end_segment = _recorder.end_segment
    now = time.time

    async def traced_send(message: Message) -> None:
        message_type = message["type"]
        if message_type == "http.response.start":
            try:
                trace.set_status(int(message["status"]))
                headers = list(message.get("headers") or ())
                for name, value in headers:
                    if len(name) == 14 and name.lower() == b"content-length":
                        trace.content_length = int(value)
                if not names_header(headers, _HEADER):  # the app's own (an SDK middleware's) stays
                    headers.append(response_header)
                message = {**message, "headers": headers}
            except Exception:
                _guard.internal_error("asgi.response_start")
            await send(message)
        elif message_type == "http.response.body" and not message.get("more_body", False):
            try:
                await send(message)
            finally:
                trace.end_time = now()  # emitted when the app returns, with any late error
        else:
            await send(message)

    try:
        await app(scope, receive, traced_send)
    except BaseException as exc:
        _record_failure(trace, exc)
        raise
    finally:
        end_segment(trace, trace.end_time)


def _with_header(message: Message, header: tuple[bytes, bytes]) -> Message:
    """*message* (a response start or websocket accept) with the trace header added, unless the
    app set one itself."""
    headers = message.get("headers") or ()
    if names_header(headers, _HEADER):
        return message
    return {**message, "headers": [*headers, header]}


def _server_host(scope: Scope) -> str:
    server = scope.get("server")
    if not server:
        return ""
    host, port = server[0], server[1]
    return f"{host}:{port}" if port is not None else str(host)


def _record_failure(segment: Segment, exc: BaseException) -> None:
    try:
        if segment._sent:
            return
        if segment.status is None and isinstance(exc, Exception):
            segment.set_status(500)  # the server answers 500 (a cancellation answers nothing)
        segment.add_exception(exc)
    except Exception:
        _guard.internal_error("asgi.exception")
