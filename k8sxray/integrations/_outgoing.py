"""Shared logic of the outgoing-call integrations (requests, httpx, botocore).

One outgoing call is one subsegment: it is begun here, the ``X-Amzn-Trace-Id`` header is
injected once (a request that already carries one is left alone: another tracer, the
official SDK's patchers or an outer hop of ours got there first), and it is finished
from the status code or the exception. Every step runs inside the guard: a failure of
ours is logged once and the call goes on untraced.

:class:`Patches` keeps the wrapt patches of one integration so that ``instrument()`` is
idempotent and ``uninstrument()`` restores the originals.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import wrapt

from .. import _context, _guard, _recorder
from .._segment import scrub_url

log = logging.getLogger(__name__)

HEADER = "X-Amzn-Trace-Id"
"""The trace header sent downstream."""

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
    """Begin the ``remote`` subsegment of an HTTP call and inject the trace header, which the
    caller has found missing from *headers* (one that is there already means another tracer,
    the official SDK's patchers or an outer hop of ours got there first: leave it alone).

    Returns ``None`` (nothing to finish) outside a trace (after applying
    ``AWS_XRAY_CONTEXT_MISSING``), or in an unsampled trace (the header with ``Sampled=0`` is
    still sent so downstream agrees).
    """
    try:
        name, recorded = (host, scrub_url(url)) if host else target(url)
        sub = _recorder.begin_subsegment(name, "remote")
        if sub is None:
            header = unsampled_header(what)
            if header is not None:
                headers[HEADER] = header
            return None
        try:
            sub.method = method
            sub.url = recorded  # credentials removed
            headers[HEADER] = header_for(sub)
        except Exception:
            _recorder.end_subsegment(sub)
            raise
        return sub
    except Exception:
        _guard.internal_error(f"{what} (begin)")
        return None


def header_for(sub: _recorder.Subsegment) -> str:
    """The ``X-Amzn-Trace-Id`` value that makes *sub* the downstream's parent."""
    segment = sub.segment
    extra = segment.extra
    if extra:
        return f"Root={segment.trace_id};Parent={sub.id};Sampled=1;{extra}"
    return f"Root={segment.trace_id};Parent={sub.id};Sampled=1"


def unsampled_header(what: str) -> str | None:
    """No subsegment was begun: the header of the current unsampled trace, or ``None``
    outside any trace (a missing context is reported as ``AWS_XRAY_CONTEXT_MISSING`` says)."""
    header = _recorder.trace_header()
    if header is None:
        _recorder.context_missing(what)
    return header


def finish_http(what: str, sub: _recorder.Subsegment, status: int, length: int | None) -> None:
    """End *sub* with the response's status (which sets error/throttle/fault)."""
    try:
        if type(status) is int and status < 400:  # the usual call: no flag to set
            sub.status = status
            if length is not None:
                sub.content_length = length
        else:
            sub.set_http_response(status, length)
    except Exception:
        _guard.internal_error(f"{what} (response)")
    _recorder.end_subsegment(sub)


def finish_error(what: str, sub: _recorder.Subsegment, exc: BaseException, *, remote: bool = False) -> None:
    """End *sub* with the exception the call raised (the caller re-raises it)."""
    try:
        sub.add_exception(exc, remote=remote)
    except Exception:
        _guard.internal_error(f"{what} (exception)")
    _recorder.end_subsegment(sub)


def detach(sub: _recorder.Subsegment) -> None:
    """Make *sub*'s parent current again while *sub* stays open (a streamed body is still unread).

    The caller goes on in its own trace context; :func:`finish_http` ends *sub* later, when
    the body has been read or the response closed.
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


class Patches:
    """The wrapt patches of one integration: applied once, removed when possible.

    A wrapper whose patch cannot be removed (someone wrapped the same function after
    us) stays in place but passes every call straight through while inactive: a gate
    checks :attr:`active` before each call, or, with ``self_gated=True``, each wrapper
    checks it itself (one call less on the hot path).
    """

    def __init__(
        self, name: str, targets: list[tuple[str, str, Wrapper]], *, self_gated: bool = False
    ) -> None:
        self.name = name
        self.active = False
        self._targets = targets
        self._self_gated = self_gated
        self._applied: list[tuple[str, str, Any]] = []  # (module, path, our FunctionWrapper)
        self._lock = threading.Lock()

    def apply(self) -> bool:
        """Patch every target; ``False`` when already instrumented."""
        with self._lock:
            if self.active:  # harmless: k8sxray.instrument() and k8sxray-run both ask
                log.debug("k8sxray: the %s integration is already instrumented", self.name)
                return False
            # a wrapper left in place by remove() is reused if it is still reachable
            kept = {
                (module, path): ours for module, path, ours in self._applied if _reachable(module, path, ours)
            }
            self._applied = []
            for module, path, wrapper in self._targets:
                ours = kept.get((module, path))
                if ours is None:
                    wrapt.wrap_function_wrapper(
                        module, path, wrapper if self._self_gated else self._gate(wrapper)
                    )
                    ours = wrapt.resolve_path(module, path)[2]
                self._applied.append((module, path, ours))
            self.active = True
            return True

    def remove(self) -> None:
        """Restore the originals where our wrapper is still the outermost one."""
        with self._lock:
            self.active = False
            kept = []
            for module, path, ours in self._applied:
                parent, attribute, current = wrapt.resolve_path(module, path)
                current_wrapper: Any = current
                if current_wrapper is ours:
                    setattr(parent, attribute, ours.__wrapped__)  # a wrapt FunctionWrapper
                else:
                    kept.append((module, path, ours))
            self._applied = kept

    def _gate(self, wrapper: Wrapper) -> Wrapper:
        def gated(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if not self.active:
                return wrapped(*args, **kwargs)
            return wrapper(wrapped, instance, args, kwargs)

        return gated


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
