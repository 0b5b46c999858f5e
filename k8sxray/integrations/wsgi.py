"""Trace any WSGI app: one segment per request, ended when the response body is done.

The segment ends when the response iterable is exhausted or closed (so streaming
bodies are timed whole); an exception from the app is recorded as the ``cause``
and propagates unchanged. Unsampled requests only get the response header.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from .. import _context, _guard, _recorder
from .._segment import Segment, UnsampledTrace
from ._http import MAX_URL, fill_request

__all__ = ["TracedBody", "wrap"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]

_HEADER = "X-Amzn-Trace-Id"


def wrap(app: WSGIApp) -> WSGIApp:  # noqa: PLR0915  # the request path, inlined on purpose
    """A WSGI app that traces *app*; ``wrap(wrap(app))`` traces once."""
    if getattr(app, "_k8sxray_traced", False):
        return app
    start_request = _recorder.start_request
    end_segment = _recorder.end_segment
    now = time.time

    def traced(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            method = environ.get("REQUEST_METHOD", "GET")
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
            trace = start_request(environ.get("HTTP_X_AMZN_TRACE_ID"), host, method, path, now())
        except Exception:
            _guard.internal_error("wsgi.start")
            return app(environ, start_response)
        if type(trace) is not Segment:
            if trace is None:
                return app(environ, start_response)
            return _unsampled(app, environ, start_response, trace)  # type: ignore[arg-type]  # not a Segment
        try:
            query = environ.get("QUERY_STRING")
            forwarded = environ.get("HTTP_X_FORWARDED_FOR")
            if query or forwarded or "@" in host:
                _fill(trace, environ, method, host, path, query, forwarded)
            else:  # the common case, inline
                url = environ.get("wsgi.url_scheme", "http") + "://" + host + path
                trace.method = method
                trace.url = url if len(url) <= MAX_URL else url[:MAX_URL]
                trace.user_agent = environ.get("HTTP_USER_AGENT")
                trace.client_ip = environ.get("REMOTE_ADDR")
        except Exception:
            _guard.internal_error("wsgi.request")
        header = (_HEADER, trace.response_header)

        def traced_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Any:
            try:
                code = int(status[:3])
                if code < 400:
                    trace.status = code
                else:
                    trace.set_status(code)
                for name, value in headers:
                    if len(name) == 14 and name.lower() == "content-length":
                        trace.content_length = int(value)
                headers = [*headers, header]
            except Exception:
                _guard.internal_error("wsgi.start_response")
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            result = app(environ, traced_start_response)
        except BaseException as exc:
            _record_failure(trace, exc)
            end_segment(trace)
            raise
        if type(result) is list or type(result) is tuple:
            if trace.content_length is None:
                trace.content_length = sum(len(chunk) for chunk in result)
            end_segment(trace)
            return result
        return TracedBody(result, trace)

    traced._k8sxray_traced = True  # type: ignore[attr-defined]
    traced.__wrapped__ = app  # type: ignore[attr-defined]
    return traced


def _fill(  # noqa: PLR0917
    trace: Segment,
    environ: dict[str, Any],
    method: str,
    host: str,
    path: str,
    query: str | None,
    forwarded: str | None,
) -> None:
    fill_request(
        trace,
        method,
        environ.get("wsgi.url_scheme", "http"),
        host,
        path,
        query or "",
        environ.get("HTTP_USER_AGENT"),
        environ.get("REMOTE_ADDR"),
        forwarded,
    )


def _unsampled(
    app: WSGIApp, environ: dict[str, Any], start_response: Callable[..., Any], trace: UnsampledTrace
) -> Iterable[bytes]:
    header = (_HEADER, trace.response_header)

    def unsampled_start_response(
        status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Any:
        return (
            start_response(status, [*headers, header], exc_info)
            if exc_info
            else start_response(status, [*headers, header])
        )

    try:
        result = app(environ, unsampled_start_response)
    except BaseException:
        _context.restore(trace._token, trace._previous)
        raise
    if type(result) is list or type(result) is tuple:
        _context.restore(trace._token, trace._previous)
        return result
    return _UnsampledBody(result, trace)  # keeps Sampled=0 current while the body is produced


class _UnsampledBody:
    """An unsampled request's body: its trace stays current until the server closes it."""

    __slots__ = ("_result", "_trace")

    def __init__(self, result: Iterable[bytes], trace: UnsampledTrace) -> None:
        self._result = result
        self._trace = trace

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            trace = self._trace
            if trace._token is not None:
                _context.restore(trace._token, trace._previous)
                trace._token = None


def _record_failure(segment: Segment, exc: BaseException) -> None:
    try:
        if segment.status is None:
            segment.set_status(500)
        segment.add_exception(exc)
    except Exception:
        _guard.internal_error("wsgi.exception")


class TracedBody:
    """The app's response iterable; ends the segment when exhausted or closed.

    With a Content-Length the body is handed to the server as it is (no per-chunk work)
    and the segment ends on ``close()``; without one, the chunks are counted on their way
    out (``content_length``) and an exception raised while producing them is recorded.
    """

    __slots__ = ("_result", "_segment")

    def __init__(self, result: Iterable[bytes], segment: Segment) -> None:
        self._result = result
        self._segment = segment

    def __iter__(self) -> Iterator[bytes]:
        if self._segment.content_length is not None:
            return iter(self._result)
        return self._counting()

    def _counting(self) -> Iterator[bytes]:
        segment = self._segment
        sent = 0
        try:
            for chunk in self._result:
                sent += len(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            _record_failure(segment, exc)
            raise
        finally:
            segment.content_length = sent
        _recorder.end_segment(segment)

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        try:
            if close is not None:
                close()
        except BaseException as exc:
            _record_failure(self._segment, exc)
            raise
        finally:
            _recorder.end_segment(self._segment)
