"""Trace any WSGI app: one segment per request, ended when the response body is done.

The segment ends when the response body is complete (all of its Content-Length produced, or
the iterable exhausted) or closed, whichever comes first (so streaming bodies are timed
whole, and a test client that never closes the body still gets its segment); an exception
from the app is recorded as the ``cause`` and propagates unchanged. Unsampled requests only
get the response header; their trace stays current, for outgoing calls, until the app
returns a body that is ready (a list, or anything after a Content-Length), else until the
body is closed.

Each request allocates one :class:`Exchange`: its bound ``start_response`` is what the
app calls, and the object itself is the body handed to the server, so the request path
creates no closure and no second wrapper.

The trace is continued from ``X-Amzn-Trace-Id``, else from W3C ``traceparent`` (with its
``tracestate``), as :func:`k8sxray._recorder.start_request` says.

When k8sxray's C module (``k8sxray._native``) is built, the app is served by its
``Entry``: unsampled requests (an incoming ``Sampled=0`` in the usual form, or without
``X-Amzn-Trace-Id`` a ``traceparent`` whose sampled flag is off, either with no ``tracestate``;
or no valid trace header and the sampler says no) are served in C, everything else by the
Python entry below, which is the reference; ``wrap(app, native=False)`` serves everything in
Python.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from types import TracebackType
from typing import Any

from .. import _config, _context, _guard, _header, _ids, _recorder
from .._segment import Segment, UnsampledTrace
from ._http import MAX_URL, fill_request, names_header

try:
    from .. import _native
except ImportError:  # built without a C compiler: the Python entry serves every request
    _native = None  # type: ignore[assignment]

__all__ = ["NATIVE", "Exchange", "wrap"]

NATIVE: bool = _native is not None
"""Whether :func:`wrap` serves unsampled requests in C by default."""

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]

_HEADER = "X-Amzn-Trace-Id"
_HEADER_LOWER = _HEADER.lower()
_LENGTH = "Content-Length"
_LENGTH_LOWER = "content-length"
_UNSAMPLED_DIGITS = _header.UNSAMPLED_DIGITS
_name = itemgetter(0)  # of a (name, value) header
_new = object.__new__
_reset = _context.current_entity.reset


def wrap(app: WSGIApp, *, native: bool | None = None) -> WSGIApp:  # noqa: PLR0915  # traced: one frame
    """A WSGI app that traces *app*; ``wrap(wrap(app))`` traces once.

    *native*: serve unsampled requests in C; by default, when the C module is built and the
    configuration's ``native`` (``K8SXRAY_NATIVE``) is on.
    """
    if getattr(app, "_k8sxray_traced", False):
        return app
    start_request = _recorder.start_request
    continue_unsampled_traceparent = _recorder.continue_unsampled_traceparent
    canonical = _header.canonical
    set_current = _context.current_entity.set
    end_segment = _recorder.end_segment
    now = time.time

    def traced(
        environ: dict[str, Any], start_response: Callable[..., Any], decided: bool = False
    ) -> Iterable[bytes]:
        # decided: the native entry asked the sampler about a request without a header: yes
        try:
            header = environ.get("HTTP_X_AMZN_TRACE_ID")
            trace: Segment | UnsampledTrace | None = None
            traceparent = None if header else environ.get("HTTP_TRACEPARENT")
            if header and len(header) == 74 and header[73] == "0":
                # not sampled upstream: nothing else to read. _recorder.continue_unsampled, inline
                # (a call costs ~0.3 µs inside a framework): the usual form, checked whole by the
                # regular expression, read at fixed offsets
                # (a tracestate to pass on takes the longer way)
                state = _recorder._state
                usable = state is not None and state.config is _config._current and state.xray_in
                if usable and canonical(header) is not None and not environ.get("HTTP_TRACESTATE"):
                    trace = _new(UnsampledTrace)
                    trace.trace_id = header[5:40]
                    trace.parent_id = header[48:64]
                    trace.extra = ""
                    trace.tracestate = ""
                    trace.response_header = header[:40]
                    trace._token = set_current(trace)
            elif (
                traceparent
                and len(traceparent) == 55
                and traceparent[54] in _UNSAMPLED_DIGITS  # the sampled flag off, if it is the usual form
                and not environ.get("HTTP_TRACESTATE")
            ):  # W3C's alone: _recorder.continue_unsampled_traceparent (None for another form)
                trace = continue_unsampled_traceparent(traceparent)
            if trace is None:
                method = environ.get("REQUEST_METHOD", "GET")
                path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
                host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
                if header:  # an invalid one leaves the trace to a traceparent
                    traceparent = environ.get("HTTP_TRACEPARENT")
                tracestate = environ.get("HTTP_TRACESTATE") if traceparent else None
                trace = start_request(header, host, method, path, now(), decided, traceparent, tracestate)
                if trace is None:
                    return app(environ, start_response)
                if type(trace) is Segment:
                    _fill(trace, environ, method, host, path)
            exchange = _new(Exchange)
            exchange._trace = trace
            exchange._start_response = start_response
            exchange._done = False
        except Exception:
            _guard.internal_error("wsgi.start")
            return app(environ, start_response)
        try:
            result = app(environ, exchange.start_response)
        except BaseException as exc:
            _record_failure(trace, exc)
            end_segment(trace)
            raise
        if type(result) is list or type(result) is tuple:
            if trace.sampled and trace.content_length is None:  # type: ignore[union-attr]
                trace.content_length = sum(len(chunk) for chunk in result)  # type: ignore[union-attr]
            end_segment(trace)
            return result
        if exchange._done:  # unsampled, and its body is ready: the previous trace is current again
            _untrace(trace)
            return result
        exchange._result = result
        return exchange

    return _entry(app, traced, native)


_hooked = False


def _entry(app: WSGIApp, traced: Callable[..., Iterable[bytes]], native: bool | None) -> WSGIApp:
    """What serves *app*: the C entry (its other requests going to *traced*), or *traced*."""
    global _hooked
    if native is None:
        config = _config._current
        native = NATIVE and (config is None or config.native)
    if not native or _native is None:
        traced._k8sxray_traced = True  # type: ignore[attr-defined]
        traced.__wrapped__ = app  # type: ignore[attr-defined]
        return traced
    if not _hooked:
        _native.hooks(**_native_hooks())
        _hooked = True
    return _native.Entry(app, traced)


def _native_hooks() -> dict[str, Any]:
    """The Python objects the C entry reads: one source of truth for state, ids and guards."""
    return {
        "recorder_globals": vars(_recorder),
        "config_globals": vars(_config),
        "context_var": _context.current_entity,
        "unsampled_type": UnsampledTrace,
        "random_bits": _ids._bits,
        "clock": time.time,
        "streaming_body": _unsampled_body,
        "failed": _native_failed,
    }


def _unsampled_body(trace: UnsampledTrace, result: Iterable[bytes]) -> Exchange:
    """The body of an unsampled request served in C whose body is still to be produced:
    its trace stays current until the server closes it."""
    exchange = _new(Exchange)
    exchange._trace = trace
    exchange._result = result
    exchange._done = False
    return exchange


def _native_failed(where: str, exc: BaseException) -> None:
    """The C entry failed at *where*: logged once, as the Python entry's failures are."""
    try:
        raise exc
    except BaseException:
        _guard.internal_error(where)


def _fill(trace: Segment, environ: dict[str, Any], method: str, host: str, path: str) -> None:
    try:
        query = environ.get("QUERY_STRING")
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        scheme = environ.get("wsgi.url_scheme", "http")
        if query or forwarded or "@" in host:
            fill_request(
                trace,
                method,
                scheme,
                host,
                path,
                query or "",
                environ.get("HTTP_USER_AGENT"),
                environ.get("REMOTE_ADDR"),
                forwarded,
            )
            return
        url = scheme + "://" + host + path  # the usual request: nothing to scrub
        trace.method = method
        trace.url = url if len(url) <= MAX_URL else url[:MAX_URL]
        trace.user_agent = environ.get("HTTP_USER_AGENT")
        trace.client_ip = environ.get("REMOTE_ADDR")
    except Exception:
        _guard.internal_error("wsgi.request")


def _record_failure(trace: Segment | UnsampledTrace, exc: BaseException) -> None:
    if type(trace) is not Segment:
        return
    try:
        if trace.status is None:
            trace.set_status(500)
        trace.add_exception(exc)
    except Exception:
        _guard.internal_error("wsgi.exception")


def _length_in(headers: list[tuple[str, str]]) -> bool:
    """Whether *headers* name a Content-Length in another case than the usual two."""
    return any(
        isinstance(name, str) and len(name) == 14 and name.lower() == _LENGTH_LOWER
        for name in map(_name, headers)
    )


def _untrace(trace: Segment | UnsampledTrace) -> None:
    """Make the trace that was current before *trace* current again (once)."""
    token = trace._token
    if token is not None:
        trace._token = None
        try:
            _reset(token)
        except ValueError:  # in another context: best effort
            _context.current_entity.set(_context.replaced(token))


class Exchange:
    """One request: the ``start_response`` the app calls, then the body the server gets.

    The body is the app's response iterable; closing it ends the segment (or, unsampled,
    makes the previous trace current again). With a Content-Length the segment also ends as
    soon as that many bytes were produced (a test client may never close the body); without
    one, the chunks are counted on their way out (``content_length``) and the segment ends
    when they run out. An exception raised while producing them is recorded.
    An unsampled request whose app gave a Content-Length before returning needs no
    exchange as its body: its trace ends when the app returns.
    """

    __slots__ = ("_done", "_result", "_start_response", "_trace")

    _trace: Segment | UnsampledTrace
    _start_response: Callable[..., Any]
    _result: Iterable[bytes]
    _done: bool

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Any:
        trace = self._trace
        try:
            if type(headers) is not list:  # PEP 3333 asks for a list; an iterator is read once
                headers = list(headers)
            if type(trace) is Segment:
                code = int(status[:3])
                if code < 400:
                    trace.status = code
                else:
                    trace.set_status(code)
                for name, value in headers:
                    if len(name) == 14 and name.lower() == "content-length":
                        trace.content_length = int(value)
            elif (
                _LENGTH in map(_name, headers) or _LENGTH_LOWER in map(_name, headers) or _length_in(headers)
            ):
                # unsampled, and with a Content-Length the body is ready once the app returns; until
                # then the app may still make outgoing calls (the usual two spellings are looked for by
                # a C-level scan, any other in Python)
                self._done = True
            if not names_header(headers, _HEADER_LOWER):  # the app's own (the official SDK's) stays
                headers = [*headers, (_HEADER, trace.response_header)]
        except Exception:
            _guard.internal_error("wsgi.start_response")
        if exc_info:
            return self._start_response(status, headers, exc_info)
        return self._start_response(status, headers)

    def __iter__(self) -> Iterator[bytes]:
        trace = self._trace
        if type(trace) is not Segment:
            return iter(self._result)
        length = trace.content_length
        if length is None:
            return self._counting(trace)
        return self._sized(trace, length)

    def _sized(self, segment: Segment, length: int) -> Iterator[bytes]:
        """A body of known length: the segment ends once the app has produced all of it (just before
        its last chunk is handed on), so a server that never closes the body, as test clients do,
        still ends it; else when the body runs out or is closed."""
        sent = 0
        try:
            for chunk in self._result:
                sent += len(chunk)
                if sent >= length:
                    _recorder.end_segment(segment)  # once: later calls return at once
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            _record_failure(segment, exc)
            raise
        _recorder.end_segment(segment)

    def _counting(self, segment: Segment) -> Iterator[bytes]:
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
            _record_failure(self._trace, exc)
            raise
        finally:
            trace = self._trace
            if type(trace) is Segment:
                _recorder.end_segment(trace)
            else:
                _untrace(trace)
