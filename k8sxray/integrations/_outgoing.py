"""Shared logic of the outgoing-call integrations (requests, httpx, botocore).

One outgoing call is one subsegment: it is begun here, the trace headers are injected
once (``X-Amzn-Trace-Id``, W3C ``traceparent`` and ``tracestate``, as
``K8SXRAY_PROPAGATORS`` says; a request that already carries ``X-Amzn-Trace-Id`` or
``traceparent`` is left alone: another tracer, the official SDK's patchers, the caller or
an outer hop of ours got there first), and it is finished from the status code or the
exception. Every step runs inside the guard: a failure of ours is logged once and the call
goes on untraced.

:class:`Patches` keeps the wrapt patches of one integration so that ``instrument()`` is
idempotent and ``uninstrument()`` restores the originals.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, MutableMapping
from types import FunctionType
from typing import Any
from urllib.parse import urlsplit

import wrapt

from .. import _context, _guard, _recorder
from .._errors import ContextMissingError
from .._segment import scrub_url

log = logging.getLogger(__name__)

HEADER = "X-Amzn-Trace-Id"
"""X-Ray's trace header."""
TRACEPARENT = "traceparent"
"""W3C's trace header (with ``tracestate``)."""
TRACE_KEYS = frozenset({HEADER.lower(), TRACEPARENT})
"""A request carrying either of these (lowercase) names is traced already."""


def carries_trace(headers: Any) -> bool:
    """Whether *headers* (a case-insensitive mapping) carry a trace header already."""
    return HEADER in headers or TRACEPARENT in headers


Wrapper = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]


def host_of(url: str) -> str:
    """The host name of *url* (the subsegment's name), ``"unknown"`` when it has none."""
    parts = url.split("/", 3)  # "scheme:", "", "user@host:port?query#fragment", "path..."
    if len(parts) >= 3 and not parts[1] and parts[0].endswith(":"):
        netloc = parts[2].partition("?")[0].partition("#")[0].rpartition("@")[2]
        if "[" not in netloc:  # not IPv6: drop the port
            name = netloc.partition(":")[0]
            return name.lower() if name else "unknown"
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return "unknown"
    return host or "unknown"


# --- what a call records of its URL, cached -------------------------------------------------
# A service calls the same few URLs again and again: the subsegment name (the host) and the
# URL as recorded (credentials removed) are worked out once per URL and kept, in a dict that
# starts over when it is full. Long URLs are not kept (the memory stays small).
_TARGETS: dict[Any, tuple[str, str]] = {}
MAX_TARGETS = 256
"""How many URLs :func:`target` remembers before it starts over."""
_MAX_KEPT_URL = 2048


def target(url: str) -> tuple[str, str]:
    """The subsegment name and the recorded URL of a call to *url*."""
    return _TARGETS.get(url) or remember(url, url)


def remember(key: Any, url: str, host: str | None = None) -> tuple[str, str]:
    """Work out (and keep, under *key*: the URL or what identifies it) the subsegment name
    and the recorded URL of a call to *url*; *host* is its host name when already known."""
    found = (host or host_of(url), scrub_url(url))
    if len(url) <= _MAX_KEPT_URL:
        if len(_TARGETS) >= MAX_TARGETS:
            _TARGETS.clear()
        _TARGETS[key] = found
    return found


def content_length(headers: Any) -> int | None:
    """The ``Content-Length`` header of a response as an int, or ``None``."""
    return as_length(headers.get("content-length"))


def as_length(value: Any) -> int | None:
    """A ``Content-Length`` value as an int, or ``None`` when missing or malformed."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def begin_http(
    what: str, method: str, url: str, headers: MutableMapping[str, str], host: str | None = None
) -> _recorder.Subsegment | None:
    """Begin the ``remote`` subsegment of an HTTP call and inject the trace headers, which the
    caller has found missing from *headers* (:func:`carries_trace`: one that is there already
    means another tracer, the official SDK's patchers or an outer hop of ours got there first:
    leave it alone).

    Returns ``None`` (nothing to finish) outside a trace (after applying
    ``AWS_XRAY_CONTEXT_MISSING``), or in an unsampled trace (the headers with ``Sampled=0`` are
    still sent so downstream agrees).
    """
    try:
        name, recorded = (host, scrub_url(url)) if host else target(url)
        sub, found = _recorder.begin_call(what, name, method, recorded)
        if found is not None:
            try:
                add_headers(headers, found)
            except Exception:
                if sub is not None:
                    _recorder.end_subsegment(sub)
                raise
        return sub
    except ContextMissingError:
        raise
    except Exception:
        _guard.internal_error(f"{what} (begin)")
        return None


def add_headers(headers: MutableMapping[str, str], found: _recorder.Headers) -> None:
    """Set each of the trace headers *found* that *headers* (case-insensitive) does not carry."""
    for _key, (name, value) in found:
        if name not in headers:
            headers[name] = value


def finish_error(what: str, sub: _recorder.Subsegment, exc: BaseException, *, remote: bool = False) -> None:
    """End *sub* with the exception the call raised (the caller re-raises it)."""
    try:
        sub.add_exception(exc, remote=remote)
    except Exception:
        _guard.internal_error(f"{what} (exception)")
    _recorder.end_subsegment(sub)


def detach(sub: _recorder.Subsegment) -> None:
    """Make *sub*'s parent current again while *sub* stays open (a streamed body is still unread).

    The caller goes on in its own trace context; ``_recorder.end_subsegment`` ends *sub* later,
    when the body has been read or the response closed.
    """
    try:
        if _context.get() is sub:
            _context.restore(sub._token, sub.parent)
            sub._token = None
    except Exception:
        _guard.internal_error("outgoing (detach)")


class Once:
    """Calls *action* the first time it is called, never again (a body ends once)."""

    __slots__ = ("_action",)

    def __init__(self, action: Callable[[], None]) -> None:
        self._action: Callable[[], None] | None = action

    def __call__(self) -> None:
        action, self._action = self._action, None
        if action is not None:
            action()


Factory = Callable[[Any], Any]
"""Given the original attribute, returns what replaces it (its ``__wrapped__`` is the original)."""


def wrapper(function: Wrapper) -> Factory:
    """A factory of wrapt ``FunctionWrapper`` s around *function* (``wrapped, instance, args,
    kwargs``), for the patches that are not on a hot path."""
    return lambda original: wrapt.FunctionWrapper(original, function)


def caller(original: Any) -> Callable[..., Any]:
    """*original* (an attribute found in a class's ``__dict__``) as a function that takes the
    instance first: a plain function is that already; anything else (another tracer's wrapper,
    a descriptor) is bound to the instance on each call, as attribute access would."""
    if type(original) is FunctionType:  # not isinstance(): a wrapt proxy claims its function's class
        return original

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        return original.__get__(self, type(self))(*args, **kwargs)

    return call


class Patches:
    """The patches of one integration, applied with wrapt once, removed when possible.

    Each target is ``(module, "Class.method", factory)``: the factory is given the original
    and returns what replaces it, a plain function whose ``__wrapped__`` is the original (on
    the hot paths a plain function costs a call about half of what a wrapt
    ``FunctionWrapper``, bound anew on every attribute access, does) or a wrapt wrapper
    (:func:`wrapper`). A replacement that cannot be removed (someone wrapped the same
    function after us) stays in place but passes every call straight through while
    :attr:`active` is false: every replacement checks it.
    """

    def __init__(self, name: str, targets: list[tuple[str, str, Factory]]) -> None:
        self.name = name
        self.active = False
        self._targets = targets
        self._applied: list[tuple[str, str, Any]] = []  # (module, path, what replaced the original)
        self._lock = threading.Lock()

    def apply(self) -> bool:
        """Patch every target; ``False`` when already instrumented."""
        with self._lock:
            if self.active:  # harmless: k8sxray.instrument() and k8sxray-run both ask
                log.debug("k8sxray: the %s integration is already instrumented", self.name)
                return False
            # a replacement left in place by remove() is reused if it is still reachable
            kept = {
                (module, path): ours for module, path, ours in self._applied if _reachable(module, path, ours)
            }
            self._applied = []
            for module, path, factory in self._targets:
                ours = kept.get((module, path))
                if ours is None:
                    parent, attribute, original = wrapt.resolve_path(module, path)
                    ours = factory(original)
                    if not isinstance(ours, wrapt.FunctionWrapper):  # a wrapt wrapper knows it already
                        ours.__wrapped__ = original
                    wrapt.apply_patch(parent, attribute, ours)
                self._applied.append((module, path, ours))
            self.active = True
            return True

    def remove(self) -> None:
        """Restore the originals where our replacement is still the outermost one."""
        with self._lock:
            self.active = False
            kept = []
            for module, path, ours in self._applied:
                parent, attribute, current = wrapt.resolve_path(module, path)
                found: Any = current
                if found is ours:
                    setattr(parent, attribute, ours.__wrapped__)
                else:
                    kept.append((module, path, ours))
            self._applied = kept


def _reachable(module: str, path: str, ours: Any) -> bool:
    """Whether *ours* is still in the chain of wrappers at *module*.*path*."""
    current: Any = wrapt.resolve_path(module, path)[2]
    for _ in range(32):  # bounded: wrapper chains are short
        if current is ours:
            return True
        current = getattr(current, "__wrapped__", None)
        if current is None:
            return False
    return False
