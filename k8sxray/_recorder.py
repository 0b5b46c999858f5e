"""The recorder: begins and ends segments and subsegments, samples, and emits.

Middlewares call :func:`start_request`/:func:`end_segment`; outgoing-call
integrations call :func:`begin_subsegment`/:func:`end_subsegment`/:func:`trace_header`.
Nothing here raises into the app, but ``AWS_XRAY_CONTEXT_MISSING=RUNTIME_ERROR``'s
:class:`~k8sxray.ContextMissingError` for a traced call made outside any request.
Everything that depends on the configuration (the static JSON fragments, the sampler,
the emitter) lives in one :class:`_State`, rebuilt on every ``configure()``.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, Protocol, overload

from . import _config, _context, _guard, _header
from ._context import set_ as set_current
from ._emitter import Emitter, UDPEmitter, close_all
from ._errors import ContextMissingError, context_missing_error
from ._ids import _bits, entity_id, new_root, new_trace
from ._protocol import HEADER, MAX_DOCUMENT
from ._segment import Entity, Segment, Static, Subsegment, UnsampledTrace, plain_json, split
from .sampling import make_sampler

log = logging.getLogger(__name__)

_HEADER_TEXT = HEADER.decode()
_now = time.time
_get = _context.current_entity.get
_new = object.__new__
_canonical = _header.canonical
_canonical_traceparent = _header.canonical_traceparent
_ZERO_PARENT, _ZERO_EPOCH, _ZERO_RANDOM = _header.ZERO_PARENT, _header.ZERO_EPOCH, _header.ZERO_RANDOM
_SAMPLED_DIGITS = _header.SAMPLED_DIGITS
_reset = _context.current_entity.reset

__all__ = [
    "ContextMissingError",
    "Segment",
    "Subsegment",
    "annotate",
    "begin_call",
    "begin_subsegment",
    "context_missing",
    "continue_unsampled",
    "continue_unsampled_traceparent",
    "current",
    "end_segment",
    "end_subsegment",
    "flush",
    "put_metadata",
    "set_emitter",
    "start_request",
    "state",
    "subsegment",
    "trace_header",
    "trace_headers",
]


# What outgoing calls carry (_State.send), and each header as (lowercase name, name, value)
_XRAY, _W3C, _XRAY_AND_W3C = 1, 2, 3
XRAY_KEY = _header.NAME.lower()
TRACEPARENT = _header.TRACEPARENT
TRACESTATE = _header.TRACESTATE
Headers = tuple[tuple[str, tuple[str, str]], ...]
"""Trace headers to send: ``(lowercase name, (name, value))`` each (the layout of requests' own
header dict, which takes them in one ``update``)."""
Wire = list[tuple[bytes, bytes, bytes]]
"""Trace headers to send as httpx.Headers keeps them: ``(name, lowercase name, value)``, bytes."""
_WIRE_NAMES = {
    XRAY_KEY: (_header.NAME.encode(), XRAY_KEY.encode()),
    TRACEPARENT: (TRACEPARENT.encode(),) * 2,
    TRACESTATE: (TRACESTATE.encode(),) * 2,
}
_XRAY_NAME, _XRAY_LOWER = _WIRE_NAMES[XRAY_KEY]
_TRACEPARENT_NAME = TRACEPARENT.encode()


class Sampler(Protocol):
    def decide(self, host: str, method: str, path: str) -> bool: ...

    def close(self) -> None: ...


def _sdk_version() -> str:
    try:
        from importlib.metadata import version

        return version("k8sxray")
    except Exception:
        return "unknown"


class _State:
    """Everything the request path needs from one configuration."""

    __slots__ = (
        "config",
        "emitter",
        "enabled",
        "later",
        "own_emitter",
        "own_sampler",
        "sampler",
        "send",
        "static",
        "w3c_in",
        "xray_in",
    )

    def __init__(self, config: _config.Config, emitter: Emitter | None) -> None:
        from .plugins import collect

        self.config = config
        self.enabled = config.enabled
        self.xray_in = config.enabled and "xray" in config.propagators
        """Tracing is on and an incoming ``X-Amzn-Trace-Id`` is read (the C entry reads this)."""
        self.w3c_in = "tracecontext" in config.propagators
        """An incoming ``traceparent`` (and ``tracestate``) is read."""
        self.send = _XRAY_AND_W3C if self.xray_in and self.w3c_in else _XRAY if self.xray_in else _W3C
        """Which trace headers outgoing calls carry."""
        data = collect(config.plugins)
        self.static = Static(
            config.service_name,
            sdk_version=_sdk_version(),
            origin=data.origin,
            aws=data.aws,
            metadata=data.metadata,
        )
        self.own_sampler: Sampler = make_sampler(config, origin=data.origin)
        self.sampler: Sampler = _sampler_override or self.own_sampler
        self.own_emitter = UDPEmitter(  # opens nothing yet
            _address_of(config),
            serialise=datagrams,
            gso=config.udp_gso,
            on_refused=config.daemon.refused if config.daemon is not None else None,
        )
        self.emitter: Emitter = self.own_emitter
        self.later: Callable[..., None] | None = None
        self.use(emitter)

    def use(self, emitter: Emitter | None) -> None:
        """Send to *emitter* (``None``: our own UDP emitter)."""
        chosen = emitter if emitter is not None else self.own_emitter
        self.emitter = chosen
        # a UDP emitter that can serialise queues finished segments: the flusher serialises them
        deferred = isinstance(chosen, UDPEmitter) and chosen.serialises
        self.later = chosen.send_later if deferred else None  # type: ignore[attr-defined]


def _address_of(config: _config.Config) -> Any:
    endpoint = config.daemon
    if endpoint is not None:
        return lambda: endpoint.udp_sockaddr
    fixed = (config.daemon_udp.host, config.daemon_udp.port)
    return lambda: fixed


_state: _State | None = None
_override: Emitter | None = None  # set by k8sxray.testing
_sampler_override: Sampler | None = None  # set by k8sxray.testing
_lock = threading.RLock()
_hooked = False


def state() -> _State:
    """The state for the current configuration (configured from the environment on first use)."""
    config = _config.current()
    current_state = _state
    if current_state is not None and current_state.config is config:
        return current_state
    return _rebuild(config)


def _rebuild(config: _config.Config) -> _State:
    global _state, _hooked
    with _lock:
        previous = _state
        if previous is not None and previous.config is config:
            return previous
        _state = new = _State(config, _override)
        if not _hooked:
            _hooked = True
            _config.on_change(_on_change)
            atexit.register(_at_exit)
    if previous is not None:
        _close(previous)
    return new


def _on_change(config: _config.Config) -> None:
    if _state is not None:
        try:
            _rebuild(config)
        except Exception:
            _guard.internal_error("recorder.reconfigure")


def _close(old: _State) -> None:
    try:
        old.own_sampler.close()
        old.own_emitter.close()
    except Exception:
        _guard.internal_error("recorder.close")


def _at_exit() -> None:
    flush(1.0)
    try:
        close_all()
    except Exception:
        _guard.internal_error("recorder.exit")


def flush(timeout: float = 1.0) -> bool:
    """Send every queued document now; ``True`` when nothing is left."""
    current_state = _state
    if current_state is None:
        return True
    try:
        return current_state.emitter.flush(timeout)
    except Exception:
        _guard.internal_error("recorder.flush")
        return False


def set_emitter(emitter: Emitter | None) -> Emitter | None:
    """Send every document to *emitter* (``None``: back to UDP); returns the previous override."""
    global _override
    with _lock:
        current_state = state()
        previous, _override = _override, emitter
        current_state.use(emitter)
    return previous


def set_sampler(sampler: Sampler | None) -> Sampler | None:
    """Decide new traces with *sampler* (``None``: the configured one), for this configuration and
    the next ones; returns the previous override."""
    global _sampler_override
    with _lock:
        current_state = state()
        previous, _sampler_override = _sampler_override, sampler
        current_state.sampler = sampler if sampler is not None else current_state.own_sampler
    return previous


# --- segments ------------------------------------------------------------------------------
def start_request(  # noqa: PLR0917, PLR0912, PLR0915  # on the hot path: positional is faster, one frame
    header: str | None,
    host: str,
    method: str,
    path: str,
    now: float,
    decided: bool = False,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> Segment | UnsampledTrace | None:
    """Begin a request's trace (and make it current); ``None`` when tracing is off.

    The trace continues the incoming ``X-Amzn-Trace-Id`` (*header*) when it is valid, else the
    W3C *traceparent* (with its *tracestate*) when that is valid, as the configured propagators
    allow. An incoming ``Sampled=1``/``0`` (a W3C sampled flag ``01``/``00``) decides; ``?`` or
    no header asks the sampler, unless *decided* says it was asked already and said yes (the
    native WSGI entry asks it, for a request with neither header).
    """
    current_state = _state
    if current_state is None or current_state.config is not _config._current:
        current_state = state()
    if not current_state.enabled:
        return None
    trace: Segment | UnsampledTrace
    flag: str | None = None
    if header and current_state.xray_in:
        match = _canonical(header)
        if match is not None:  # the usual form: no need for the full parser
            root, parent, flag = match.groups()
            extra = ""
        else:
            parsed = _header.parse(header)
            if parsed is not None:
                root, parent, flag, extra = parsed
    state_ = ""
    if traceparent and current_state.w3c_in:
        usual = _canonical_traceparent(traceparent) if flag is None else None
        if usual is not None:  # no valid X-Amzn-Trace-Id, and the usual form: parse_traceparent inline
            epoch, random, w3c_parent, digit = usual.groups()
            if w3c_parent != _ZERO_PARENT and (random != _ZERO_RANDOM or epoch != _ZERO_EPOCH):
                root = "1-" + epoch + "-" + random
                parent = w3c_parent
                flag = "1" if digit in _SAMPLED_DIGITS else "0"
                extra = ""
                if tracestate:
                    state_ = _header.valid_tracestate(tracestate)
        elif (w3c := _header.parse_traceparent(traceparent)) is not None:
            if flag is None:  # no valid X-Amzn-Trace-Id: the W3C context
                root, parent, flag = w3c
                extra = ""
                state_ = _header.valid_tracestate(tracestate)
            elif tracestate and w3c.root == root:  # both name one trace: its tracestate goes on
                state_ = _header.valid_tracestate(tracestate)
    if flag is None:
        if decided or current_state.sampler.decide(host, method, path):
            tid, sid = new_trace(now)
            trace = Segment(current_state.static, tid, sid, None, now)
        else:  # most requests: just a trace id to answer with
            tid = new_root(now)
            trace = _unsampled(tid, None, "", "")
        trace.response_header = "Root=" + tid
    else:
        sampled = flag == "1" or (flag == "?" and current_state.sampler.decide(host, method, path))
        if sampled:
            trace = Segment(current_state.static, root, entity_id(), parent, now, extra)
            if state_:
                trace.tracestate = state_
        else:
            trace = _unsampled(root, parent, extra, state_)
        trace.response_header = (
            "Root=" + root if flag != "?" else "Root=" + root + (";Sampled=1" if sampled else ";Sampled=0")
        )
    trace._token = set_current(trace)  # the token remembers what was current before
    return trace


def continue_unsampled(header: str) -> UnsampledTrace | None:
    """The fast path of :func:`start_request` for an incoming ``Sampled=0`` header in the usual form
    (and no ``tracestate``): the upstream decided, so no sampling rule needs the request's host,
    method or path.

    ``None`` for anything else (another header, tracing off, ``X-Amzn-Trace-Id`` not read): ask
    :func:`start_request`.
    """
    current_state = _state
    if current_state is None or current_state.config is not _config._current:
        current_state = state()
    if not current_state.xray_in:
        return None
    if len(header) != 74 or header[73] != "0" or _canonical(header) is None:
        return None
    # the usual form, checked whole: "Root=<35>;Parent=<16>;Sampled=0" (fixed offsets)
    trace: UnsampledTrace = _new(UnsampledTrace)  # every field set here, without an __init__ call
    trace.trace_id = header[5:40]
    trace.parent_id = header[48:64]
    trace.extra = ""
    trace.tracestate = ""
    trace.response_header = header[:40]  # "Root=" and the root
    trace._token = set_current(trace)
    return trace


def continue_unsampled_traceparent(traceparent: str) -> UnsampledTrace | None:
    """:func:`continue_unsampled` for a request that came with a W3C ``traceparent`` alone (no
    ``X-Amzn-Trace-Id``, no ``tracestate``), in the usual form, its sampled flag off.

    ``None`` for anything else (sampled, another form, invalid ids, W3C not read): ask
    :func:`start_request`.
    """
    current_state = _state
    if current_state is None or current_state.config is not _config._current:
        current_state = state()
    if not (current_state.enabled and current_state.w3c_in):
        return None
    usual = _canonical_traceparent(traceparent)
    if usual is None:
        return None
    epoch, random, parent, digit = usual.groups()
    if digit in _SAMPLED_DIGITS or parent == _ZERO_PARENT:
        return None
    if random == _ZERO_RANDOM and epoch == _ZERO_EPOCH:
        return None
    trace: UnsampledTrace = _new(UnsampledTrace)  # every field set here, without an __init__ call
    trace.trace_id = root = "1-" + epoch + "-" + random
    trace.parent_id = parent
    trace.extra = ""
    trace.tracestate = ""
    trace.response_header = "Root=" + root
    trace._token = set_current(trace)
    return trace


def _unsampled(trace_id: str, parent_id: str | None, extra: str, tracestate: str) -> UnsampledTrace:
    trace: UnsampledTrace = _new(UnsampledTrace)  # its other fields are set by start_request
    trace.trace_id = trace_id
    trace.parent_id = parent_id
    trace.extra = extra
    trace.tracestate = tracestate
    return trace


def end_segment(segment: Segment | UnsampledTrace, end_time: float | None = None) -> None:
    """End a request's trace: restore the previous context and emit a sampled segment once.

    Never raises: a failure is logged once and the request goes on untraced.
    """
    try:
        if type(segment) is Segment:
            if segment._sent:
                return
            segment._sent = True
            segment.end_time = _now() if end_time is None else end_time
        token = segment._token
        if token is not None:
            segment._token = None
            try:
                _reset(token)
            except ValueError:  # ended in another context (a task or thread): best effort
                _context.current_entity.set(_context.replaced(token))
        if type(segment) is Segment:
            current_state = _state or state()
            later = current_state.later
            if later is not None:  # serialised later, in a batch, with the others
                children = segment.subsegments
                later(segment, 1 + len(children)) if children else later(segment)
            else:
                for document in documents(segment):
                    current_state.emitter.send(document)
    except Exception:
        _guard.internal_error("recorder.end_segment")


def documents(segment: Segment) -> list[bytes]:
    """The datagram bodies for *segment*: one document, or several when it is too large."""
    document = plain_json(segment) or segment.to_json()
    if len(document) <= MAX_DOCUMENT:
        return [document.encode()]
    return _split(segment)


def datagrams(segment: Segment) -> bytes | list[bytes]:
    """What the UDP emitter sends for *segment*: one datagram (header included), or several.

    The segment was handed over and is not read again: its ended subsegments are unlinked,
    so that parent and children (which point at each other) are freed at once, not by the GC.
    """
    document = plain_json(segment) or segment.to_json()
    if len(document) <= MAX_DOCUMENT:
        made: bytes | list[bytes] = (_HEADER_TEXT + document).encode()
    else:
        made = [HEADER + part for part in _split(segment)]
    if segment.subsegments:
        _unlink(segment)
    return made


def _unlink(entity: Entity) -> None:
    """Drop *entity*'s references to its ended subsegments (an open one keeps its own children,
    which it sends with itself when it ends late)."""
    subsegments = entity.subsegments
    entity.subsegments = None
    for sub in subsegments or ():
        if sub.end_time is not None and sub.subsegments:
            _unlink(sub)


def _split(segment: Segment) -> list[bytes]:
    return [part.encode() for part in split(segment, MAX_DOCUMENT)]  # what was trimmed, _fit logs


# --- the API for integrations ---------------------------------------------------------------
def current() -> Entity | UnsampledTrace | None:
    """The current entity (segment or subsegment), an unsampled trace, or ``None``."""
    return _context.get()


def begin_subsegment(name: str, namespace: str | None = "remote") -> Subsegment | None:
    """Begin a subsegment of the current sampled entity and make it current; ``None`` otherwise."""
    try:
        parent = _get()
        if parent is None or not parent.sampled:
            return None
        sub = Subsegment(name, namespace, parent, _now())  # type: ignore[arg-type]  # sampled: an Entity
        children = parent.subsegments  # type: ignore[union-attr]
        if children is None:
            parent.subsegments = [sub]  # type: ignore[union-attr]
        else:
            children.append(sub)
        sub._token = set_current(sub)
        return sub
    except Exception:
        _guard.internal_error("recorder.begin_subsegment")
        return None


@overload
def begin_call(
    what: str, name: str, method: str, url: str, wire: Literal[False] = False
) -> tuple[Subsegment | None, Headers | None]: ...


@overload
def begin_call(
    what: str, name: str, method: str, url: str, wire: Literal[True]
) -> tuple[Subsegment | None, Wire | None]: ...


def begin_call(  # noqa: PLR0911  # one frame: it runs on every outgoing call
    what: str, name: str, method: str, url: str, wire: bool = False
) -> tuple[Subsegment | None, Headers | Wire | None]:
    """Begin an outgoing HTTP call to *url* (already scrubbed): its ``remote`` subsegment, made
    current, and the trace headers to send with it (:data:`Headers`, or with *wire*
    :data:`Wire`: ``X-Amzn-Trace-Id``, ``traceparent`` and ``tracestate`` as the propagators
    say, all naming the subsegment as the parent).

    With *wire*, the usual call's headers are made in bytes from the parts that are the same for
    every call of the trace (kept on its segment, :func:`_make_wire_heads`) and the call's own id: the
    second header costs two concatenations and a tuple.

    In an unsampled trace there is no subsegment, and the headers pass ``Sampled=0`` on;
    outside any trace there is neither, and ``AWS_XRAY_CONTEXT_MISSING`` is applied (logged once
    per *what*, or :class:`~k8sxray.ContextMissingError` raised into the caller, as the SDK's
    patched libraries raise). :func:`begin_subsegment` and :func:`trace_headers` in one step and
    one frame: it runs on every outgoing call, in the middle of the client library's work, where
    each further function it went through cost more than it does alone. Raises nothing else.
    """
    parent = _get()
    if parent is None:
        context_missing(what)
        return None, None
    try:
        if not parent.sampled:
            found = trace_headers()
            return None, (_as_wire(found) if wire and found else found)
        owner: Entity = parent  # type: ignore[assignment]  # sampled: an Entity
        sub: Subsegment = _new(Subsegment)  # what Subsegment.__init__ does, without the call
        sub.name = name
        sub.id = sid = _bits(64).to_bytes(8, "big").hex()
        sub.start_time = _now()
        sub.namespace = "remote"
        sub.parent = owner
        segment = sub.segment = owner if type(owner) is Segment else owner.segment
        sub.method = method
        sub.url = url
        children = owner.subsegments
        if children is None:
            owner.subsegments = [sub]
        else:
            children.append(sub)
        sub._token = set_current(sub)
        root = segment.trace_id
        extra = segment.extra
        send = (_state or state()).send
        if not extra and not segment.tracestate:  # the usual call
            if wire:
                heads = segment._wire_heads
                if heads is None or heads[0] != send:
                    heads = _make_wire_heads(segment, send)
                own = sid.encode()
                if send == _XRAY_AND_W3C:
                    return sub, [
                        (_XRAY_NAME, _XRAY_LOWER, heads[1] + own + b";Sampled=1"),
                        (_TRACEPARENT_NAME, _TRACEPARENT_NAME, heads[2] + own + b"-01"),
                    ]
                if send == _XRAY:
                    return sub, [(_XRAY_NAME, _XRAY_LOWER, heads[1] + own + b";Sampled=1")]
            elif send == _XRAY_AND_W3C:
                head = segment._w3c_head or _make_w3c_head(segment)
                return sub, (
                    (XRAY_KEY, (_header.NAME, f"Root={root};Parent={sid};Sampled=1")),
                    (TRACEPARENT, (TRACEPARENT, f"{head}{sid}-01")),
                )
            if send == _XRAY:
                return sub, ((XRAY_KEY, (_header.NAME, f"Root={root};Parent={sid};Sampled=1")),)
        found = _headers(send, root, sid, True, extra, segment.tracestate)
        return sub, (_as_wire(found) if wire else found)
    except Exception:
        _guard.internal_error("recorder.begin_call")
        return None, None


def _make_w3c_head(segment: Segment) -> str:
    """``00-<trace id>-``, the start of every usual call's ``traceparent`` in *segment*'s trace
    (kept on the segment)."""
    root = segment.trace_id
    segment._w3c_head = head = "00-" + root[2:10] + root[11:] + "-"
    return head


def _make_wire_heads(segment: Segment, send: int) -> tuple[int, bytes, bytes]:
    """The parts of a usual call's trace headers that are the same for every call of *segment*'s
    trace, as *send* names them (kept on the segment): ``Root=<root>;Parent=`` and
    ``00-<trace id>-``, each followed by the call's own id."""
    root = segment.trace_id.encode()
    heads = (send, b"Root=" + root + b";Parent=", b"00-" + root[2:10] + root[11:] + b"-")
    segment._wire_heads = heads
    return heads


def _as_wire(headers: Headers) -> Wire:
    """*headers* as httpx.Headers keeps them (a trace header is ASCII)."""
    names = _WIRE_NAMES
    return [(*names[key], value.encode()) for key, (_name, value) in headers]


def _headers(  # noqa: PLR0917
    send: int, root: str, parent: str | None, sampled: bool, extra: str, tracestate: str
) -> Headers:
    """The trace headers that *send* names, for a call whose parent is *parent*."""
    out = []
    if send & _XRAY:
        out.append((XRAY_KEY, (_header.NAME, _header.format_header(root, parent, sampled, extra))))
    if send & _W3C:
        # W3C requires a parent id: an unsampled new trace has none, so a call gets its own
        span = parent or entity_id()
        out.append((TRACEPARENT, (TRACEPARENT, _header.format_traceparent(root, span, sampled))))
        if tracestate:
            out.append((TRACESTATE, (TRACESTATE, tracestate)))
    return tuple(out)


def end_subsegment(
    sub: Subsegment, status: int | None = None, length: int | None = None, *, end_time: float | None = None
) -> None:
    """End *sub* (once) and make its parent current again; an outgoing call's subsegment with its
    response's *status* (which sets ``error``/``throttle``/``fault``) and body *length*."""
    try:
        if sub.end_time is not None:
            return
        sub.end_time = _now() if end_time is None else end_time
        if type(status) is int:  # anything else is no status: left out
            if status < 400:  # the usual call: no flag to set
                sub.status = status
            else:
                sub.set_status(status)
        if length is not None:
            sub.content_length = length
        token = sub._token
        sub._token = None
        if _get() is sub:
            if token is not None:
                try:
                    _reset(token)
                except ValueError:  # ended in another context: best effort
                    token = None
            if token is None:
                _context.current_entity.set(sub.parent)  # what was current when it began
        if sub.segment._sent:  # the request ended first: send it on its own
            sub.late = True
            (_state or state()).emitter.send(sub.to_json(streaming=True).encode())
    except Exception:
        _guard.internal_error("recorder.end_subsegment")


def trace_header(sub: Subsegment | None = None) -> str | None:
    """The ``X-Amzn-Trace-Id`` value to send downstream, or ``None`` outside any trace."""
    try:
        entity = sub if sub is not None else _context.get()
        if entity is None:
            return None
        if isinstance(entity, UnsampledTrace):
            return _header.format_header(entity.trace_id, entity.parent_id, False, entity.extra)
        segment = entity.segment
        return _header.format_header(segment.trace_id, entity.id, True, segment.extra)
    except Exception:
        _guard.internal_error("recorder.trace_header")
        return None


def trace_headers(sub: Subsegment | None = None) -> Headers | None:
    """The trace headers to send downstream (as the propagators say), or ``None`` outside any
    trace (:data:`Headers`), all with the same trace id, parent id and sampling decision."""
    try:
        entity = sub if sub is not None else _context.get()
        if entity is None:
            return None
        send = (_state or state()).send
        if isinstance(entity, UnsampledTrace):
            return _headers(send, entity.trace_id, entity.parent_id, False, entity.extra, entity.tracestate)
        segment = entity.segment
        return _headers(send, segment.trace_id, entity.id, True, segment.extra, segment.tracestate)
    except Exception:
        _guard.internal_error("recorder.trace_headers")
        return None


def context_missing(what: str) -> None:
    """Apply ``AWS_XRAY_CONTEXT_MISSING`` to *what*, a traced call made outside any traced request.

    ``RUNTIME_ERROR`` raises :class:`~k8sxray.ContextMissingError` (the official SDK's
    ``SegmentNotFoundException`` too), as the SDK does; ``LOG_ERROR`` logs a warning once per
    *what*; ``IGNORE_ERROR`` is silent. Nothing else is raised.
    """
    try:
        mode = state().config.context_missing
        if mode != "RUNTIME_ERROR":
            if mode != "IGNORE_ERROR":
                message = "k8sxray: %s outside a traced request (logged once)"
                _guard.log_once(logging.WARNING, "context_missing:" + what, message, what)
            return
    except Exception:
        _guard.internal_error("recorder.context_missing")
        return
    raise context_missing_error(
        f"k8sxray: {what} outside a traced request, with no segment open "
        "(AWS_XRAY_CONTEXT_MISSING=RUNTIME_ERROR)"
    )


# --- the small public API ---------------------------------------------------------------------
def annotate(key: str, value: str | int | float | bool) -> None:
    """Add an indexed annotation to the current segment or subsegment (no-op when unsampled).

    Outside any traced request ``AWS_XRAY_CONTEXT_MISSING`` applies (``RUNTIME_ERROR`` raises).
    """
    entity = _context.get()
    if entity is None:
        context_missing("k8sxray.annotate()")
        return
    try:
        if isinstance(entity, Entity):
            entity.put_annotation(key, value)
    except Exception:
        _guard.internal_error("recorder.annotate")


def put_metadata(key: str, value: Any, namespace: str = "default") -> None:
    """Add metadata (not indexed) to the current segment or subsegment (no-op when unsampled).

    Outside any traced request ``AWS_XRAY_CONTEXT_MISSING`` applies (``RUNTIME_ERROR`` raises).
    """
    entity = _context.get()
    if entity is None:
        context_missing("k8sxray.put_metadata()")
        return
    try:
        if isinstance(entity, Entity):
            entity.put_metadata(key, value, namespace)
    except Exception:
        _guard.internal_error("recorder.put_metadata")


@contextmanager
def subsegment(name: str, namespace: str | None = "local") -> Iterator[Subsegment | None]:
    """Time a block as a subsegment (``None`` outside a sampled request); also a decorator.

    An exception raised in the block is recorded on the subsegment and propagates unchanged.
    Outside any traced request ``AWS_XRAY_CONTEXT_MISSING`` applies (``RUNTIME_ERROR`` raises
    before the block runs).
    """
    if _get() is None:
        context_missing("k8sxray.subsegment()")
    sub = begin_subsegment(name, namespace)
    try:
        yield sub
    except BaseException as exc:
        if sub is not None:
            try:
                sub.add_exception(exc)
            except Exception:
                _guard.internal_error("recorder.subsegment")
        raise
    finally:
        if sub is not None:
            end_subsegment(sub)
