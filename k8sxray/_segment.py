"""The segment model and its serialiser.

Documents are written with string templates, not ``dict`` + ``json.dumps``:
everything static (service name, ``aws.xray``, plugin data, origin) is serialised
once per configuration (:class:`Static`) and joined by concatenation; strings that
come from requests are escaped with the C JSON string encoder. The usual request's
segment (:func:`plain_json`) is written in one formatting step. Times are written
with microsecond precision, as the digits of the integer microseconds with a point put
in (:func:`time_json`): float formatting costs more than half as much again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import traceback
from collections.abc import Callable, Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any

from . import _ids
from ._fit import fit

_enc = json.encoder.encode_basestring_ascii  # C-accelerated, adds the quotes
_STACK_LIMIT = 50
_ANNOTATION_KEY_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_WARNED_KEYS: set[str] = set()  # annotation keys already warned about (each once)
_MAX_WARNED_KEYS = 256  # then invalid annotations are still dropped, but no longer said

log = logging.getLogger(__name__)


def dumps(value: Any, _depth: int = 3) -> str:
    """Compact JSON for user data: unknown objects become ``str``; what cannot be encoded
    (NaN, circular references) is replaced by its ``repr``, key by key, never failing."""
    try:
        return json.dumps(value, separators=(",", ":"), default=str, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        if isinstance(value, Mapping) and _depth > 0:
            items = [f"{_enc(str(k))}:{dumps(v, _depth - 1)}" for k, v in value.items()]
            return "{" + ",".join(items) + "}"
        return _enc(_safe_repr(value))


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)[:1000]
    except Exception:
        return f"<{type(value).__name__}>"


class Static:
    """What every segment of one configuration shares, serialised once."""

    __slots__ = ("aws", "aws_json", "metadata", "metadata_json", "name", "name_json", "origin_json")

    def __init__(
        self,
        name: str,
        *,
        sdk_version: str,
        origin: str | None = None,
        aws: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.name = name
        self.name_json = _enc(name)
        self.aws: dict[str, Any] = {**(aws or {}), "xray": {"sdk": "k8sxray", "sdk_version": sdk_version}}
        self.aws_json = ',"aws":' + dumps(self.aws)
        self.metadata: dict[str, Any] = {k: dict(v) for k, v in (metadata or {}).items()}
        self.metadata_json = ',"metadata":' + dumps(self.metadata) if self.metadata else ""
        self.origin_json = ',"origin":' + _enc(origin) if origin else ""


class Entity:
    """What segments and subsegments share: timing, http, flags, cause, annotations, children.

    Optional fields are class attributes until set: creating an entity on the request
    path writes only the few fields every entity has.
    """

    sampled = True
    end_time: float | None = None
    method: str | None = None
    url: str | None = None
    user_agent: str | None = None
    client_ip: str | None = None
    x_forwarded_for = False
    traced = False
    status: int | None = None
    content_length: int | None = None
    error = False
    throttle = False
    fault = False
    cause: dict[str, Any] | str | None = None
    annotations: dict[str, str | int | float | bool] | None = None
    metadata: dict[str, dict[str, Any]] | None = None
    aws: dict[str, Any] | None = None
    subsegments: list[Subsegment] | None = None
    _token: Token[Entity | UnsampledTrace | None] | None = None
    name: str
    id: str
    start_time: float

    if TYPE_CHECKING:

        @property
        def segment(self) -> Segment:
            """The segment this entity belongs to (itself for a segment)."""

    # --- recording -----------------------------------------------------------------------
    def set_status(self, status: int) -> None:
        """Record the HTTP status and set ``error``/``throttle``/``fault`` as the SDKs do."""
        self.status = status
        if status >= 500:
            self.fault = True
        elif status >= 400:
            self.error = True
            if status == 429:
                self.throttle = True

    def set_http_request(self, method: str, url: str, *, traced: bool = False) -> None:
        """An outgoing call's method and URL (credentials removed from the URL)."""
        self.method = method
        self.url = scrub_url(url)
        self.traced = traced

    def set_http_response(self, status: int, content_length: int | None = None) -> None:
        """An outgoing call's status (sets the flags) and body length."""
        self.set_status(status)
        if content_length is not None:
            self.content_length = content_length

    def put_annotation(self, key: str, value: str | int | float | bool) -> None:
        """An indexed annotation; an invalid key or value is dropped, with a warning once per key."""
        if not isinstance(key, str) or not key or not _ANNOTATION_KEY_OK.issuperset(key):
            _dropped_annotation(key, "a key is one or more letters, digits or underscores")
            return
        if not isinstance(value, (str, int, float, bool)):
            _dropped_annotation(key, f"values are strings, numbers or booleans, not {type(value).__name__}")
            return
        if isinstance(value, float) and not math.isfinite(value):
            _dropped_annotation(key, f"values are finite numbers, not {value}")
            return
        if self.annotations is None:
            self.annotations = {}
        self.annotations[key] = value

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        """Metadata under *namespace* (``AWS.`` namespaces are reserved and ignored)."""
        if not isinstance(namespace, str) or namespace.startswith("AWS."):
            return
        if self.metadata is None:
            self.metadata = {}
        self.metadata.setdefault(namespace, {})[str(key)] = value

    def set_aws(self, fields: Mapping[str, Any]) -> None:
        """Merge *fields* into ``aws``."""
        if self.aws is None:
            self.aws = {}
        self.aws.update(fields)

    def add_exception(self, exc: BaseException, *, remote: bool = False) -> None:
        """Record *exc* as the ``cause`` and set ``fault`` (unless a status already set ``error``)."""
        if not self.error:
            self.fault = True
        known = self.segment._exception_ids
        if known is None:
            known = self.segment._exception_ids = {}
        exc_id = known.get(id(exc))
        if exc_id is not None:
            cause = self.cause
            if isinstance(cause, dict) and any(e.get("id") == exc_id for e in cause.get("exceptions", ())):
                return  # recorded here already (a framework hook, then the middleware)
            self.cause = exc_id  # a child already recorded it: refer to it by id
            return
        exc_id = _ids.exception_id()
        known[id(exc)] = exc_id
        all_frames = traceback.extract_tb(exc.__traceback__)
        frames = all_frames[-_STACK_LIMIT:]
        record: dict[str, Any] = {
            "id": exc_id,
            "message": _safe_str(exc),
            "type": type(exc).__name__,
            "remote": remote,
            "stack": [{"path": f.filename, "line": f.lineno, "label": f.name} for f in reversed(frames)],
        }
        if len(all_frames) > len(frames):
            record["truncated"] = len(all_frames) - len(frames)
        self.cause = {"working_directory": os.getcwd(), "exceptions": [record]}

    def _add_child(self, sub: Subsegment) -> None:
        if self.subsegments is None:
            self.subsegments = [sub]
        else:
            self.subsegments.append(sub)

    # --- serialising ---------------------------------------------------------------------
    def _append_common(self, out: list[str], children: bool) -> None:
        """Append everything but the name and the kind-specific fields to *out*."""
        end = self.end_time
        start = time_json(self.start_time)
        out.append(
            f',"id":"{self.id}","start_time":{start},"end_time":{time_json(end)}'
            if end is not None
            else f',"id":"{self.id}","start_time":{start},"in_progress":true'
        )
        self._append_http_and_flags(out)
        if self.cause is not None:
            out += (',"cause":', _enc(self.cause) if isinstance(self.cause, str) else dumps(self.cause))
        if self.annotations:
            out += (',"annotations":', dumps(self.annotations))
        if children and self.subsegments:
            nested = [  # late ones went on their own
                plain_subsegment_json(s) or s._document(True, False) for s in self.subsegments if not s.late
            ]
            if nested:
                out += (',"subsegments":[', ",".join(nested), "]")

    def _append_http_and_flags(self, out: list[str]) -> None:
        if self.method is not None or self.status is not None:
            self._append_http(out)
        if self.fault:
            out.append(',"fault":true')
        if self.error:
            out.append(',"error":true')
        if self.throttle:
            out.append(',"throttle":true')

    def _append_http(self, out: list[str]) -> None:
        method = self.method
        status = self.status

        out.append(',"http":{')
        if method is not None:
            out += ('"request":{"method":', _enc(method))
            if self.url is not None:
                out += (',"url":', _enc(self.url))
            if self.user_agent is not None:
                out += (',"user_agent":', _enc(self.user_agent))
            if self.client_ip is not None:
                out += (',"client_ip":', _enc(self.client_ip))
            if self.x_forwarded_for:
                out.append(',"x_forwarded_for":true')
            if self.traced:
                out.append(',"traced":true')
            out.append("}" if status is None else "},")
        if status is not None:
            length = self.content_length
            out.append(
                f'"response":{{"status":{status}}}}}'
                if length is None
                else f'"response":{{"status":{status},"content_length":{length}}}}}'
            )
        else:
            out.append("}")


def _dropped_annotation(key: object, why: str) -> None:
    """Say (once per key) that the annotation *key* was dropped, and *why*."""
    try:
        name = (key if isinstance(key, str) else repr(key))[:200]
        if name in _WARNED_KEYS or len(_WARNED_KEYS) >= _MAX_WARNED_KEYS:
            return
        _WARNED_KEYS.add(name)
        log.warning("k8sxray: annotation %r dropped: %s (logged once per key)", name, why)
    except Exception:  # a key whose repr fails: dropped without a word rather than failing the app
        return


class UnsampledTrace:
    """The current trace of a request that is not sampled: just enough to propagate it."""

    __slots__ = ("_token", "extra", "parent_id", "response_header", "trace_id", "tracestate")
    sampled = False

    def __init__(self, trace_id: str, parent_id: str | None, extra: str = "", tracestate: str = "") -> None:
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.extra = extra
        self.tracestate = tracestate
        """The incoming W3C ``tracestate``, passed on unchanged with ``traceparent``."""
        self.response_header = ""
        self._token: Token[Entity | UnsampledTrace | None] | None = None


class Segment(Entity):
    """One request: the root of a trace document."""

    user: str | None = None
    response_header = ""
    tracestate = ""
    """The incoming W3C ``tracestate``, passed on unchanged with ``traceparent``."""
    _sent = False
    _exception_ids: dict[int, str] | None = None
    _w3c_head = ""
    """What every outgoing call of this trace starts its traceparent with (``_recorder._make_w3c_head``)."""
    _wire_heads: tuple[int, bytes, bytes] | None = None
    """What every outgoing call of this trace sends before its own id (``_recorder._make_wire_heads``)."""

    def __init__(  # noqa: PLR0917  # built on the hot path: positional is faster
        self,
        static: Static,
        trace_id: str,
        entity_id: str,
        parent_id: str | None,
        start_time: float,
        extra: str = "",
    ) -> None:
        self.static = static
        self.name = static.name
        self.trace_id = trace_id
        self.id = entity_id
        self.parent_id = parent_id
        self.start_time = start_time
        self.extra = extra

    @property
    def segment(self) -> Segment:
        """The segment itself: a property, not ``self.segment = self``, which would make each
        segment a reference cycle that only the cyclic garbage collector could free."""
        return self

    def to_json(self, children: bool = True) -> str:
        """The segment document."""
        static = self.static
        out = ['{"name":', static.name_json, ',"trace_id":"', self.trace_id, '"']
        self._append_common(out, children)
        if self.parent_id is not None:
            out += (',"parent_id":"', self.parent_id, '"')
        if self.user is not None:
            out += (',"user":', _enc(self.user))
        if self.metadata:
            merged = {**static.metadata}
            for ns, values in self.metadata.items():
                merged[ns] = {**merged.get(ns, {}), **values}
            out += (',"metadata":', dumps(merged))
        else:
            out.append(static.metadata_json)
        out.append((',"aws":' + dumps({**static.aws, **self.aws})) if self.aws else static.aws_json)
        out += (static.origin_json, "}")
        return "".join(out)


class Subsegment(Entity):
    """Work inside a request: a downstream call or a local block."""

    late = False
    """Ended after its segment was handed to the emitter: it was sent on its own."""
    wire: Any = None
    """An outgoing call's trace header, for a client's transport to send on each hop (httpx's
    own transport does: then the header never sits on the request object), else ``None``."""
    segment: Segment  # a plain attribute here (a property on Segment)

    def __init__(self, name: str, namespace: str | None, parent: Entity, start_time: float) -> None:
        self.name = name
        self.id = _ids.entity_id()
        self.start_time = start_time
        self.namespace = namespace
        self.parent = parent
        self.segment = parent if type(parent) is Segment else parent.segment

    def to_json(self, children: bool = True, streaming: bool = False) -> str:
        """The subsegment as nested in its parent, or on its own (``streaming``)."""
        if not streaming:
            plain = plain_subsegment_json(self)
            if plain is not None:
                return plain
        return self._document(children, streaming)

    def _document(self, children: bool, streaming: bool) -> str:
        """The document, written field by field (whatever the subsegment holds)."""
        out = ['{"name":', _enc(self.name)]
        self._append_common(out, children)
        if self.namespace:
            out += (',"namespace":', _enc(self.namespace))
        if self.metadata:
            out += (',"metadata":', dumps(self.metadata))
        if self.aws:
            out += (',"aws":', dumps(self.aws))
        if streaming:
            out += (
                ',"type":"subsegment","trace_id":"',
                self.segment.trace_id,
                '","parent_id":"',
                self.parent.id,
                '"',
            )
        out.append("}")
        return "".join(out)


_ONE_SECOND = 1000000  # in microseconds


def time_json(t: float) -> str:
    """Epoch seconds *t* as a JSON number rounded to the microsecond: the digits of the integer
    microseconds with a point put in, which costs a third less than ``"%.6f" % t`` (the one-step
    writers take the same steps, in :func:`_times_json`)."""
    if not 1.0 <= t < 1e12:  # never a clock's time (nor NaN): float formatting says what it is
        return "%.6f" % t  # noqa: UP031
    digits = str(int(t * 1e6 + 0.5))
    return digits[:-6] + "." + digits[-6:]


def _times_json(start: float, end: float) -> str | None:
    """``"start_time":...,"end_time":...`` for the one-step writers (:func:`time_json`'s steps for
    both times at once); ``None`` for times no clock gives, which the general writers take."""
    first = int(start * 1e6 + 0.5)
    last = int(end * 1e6 + 0.5)
    if first < _ONE_SECOND or last < _ONE_SECOND:
        return None
    a = str(first)
    b = str(last)
    return f'"start_time":{a[:-6]}.{a[-6:]},"end_time":{b[:-6]}.{b[-6:]}'


_enc_or_fail: Callable[[Any], str] = _enc  # raises TypeError for None, which plain_json relies on


def _holds_more(s: Entity) -> bool:
    """Whether *s* holds what no one-step document writes (a cause, annotations, metadata, aws,
    children)."""
    return (
        s.cause is not None
        or s.subsegments is not None
        or s.annotations is not None
        or s.metadata is not None
        or s.aws is not None
    )


def plain_json(segment: Segment) -> str | None:
    """The document of a segment holding only what every request's segment holds, in one step.

    ``None`` for any other segment (flags, a cause, annotations, subsegments, a missing
    field...): :meth:`Segment.to_json` writes those, with the same result. Every optional
    field is checked here (a test sets each class-level default in turn).
    """
    s = segment
    if (
        _holds_more(s)
        or s.user is not None
        or s.fault
        or s.error
        or s.throttle
        or s.x_forwarded_for
        or s.traced
        or s.end_time is None
    ):
        return None
    static = s.static
    parent = s.parent_id
    parent_json = "" if parent is None else ',"parent_id":"' + parent + '"'
    name_json = static.name_json if s.name is static.name else _enc(s.name)
    try:  # an f-string: no format to parse at run time; a missing field (None) raises TypeError
        times = _times_json(s.start_time, s.end_time)
        if times is None:
            return None
        return (
            f'{{"name":{name_json},"trace_id":"{s.trace_id}","id":"{s.id}",{times},'
            f'"http":{{"request":{{"method":{_enc_or_fail(s.method)},'
            f'"url":{_enc_or_fail(s.url)},"user_agent":{_enc_or_fail(s.user_agent)},'
            f'"client_ip":{_enc_or_fail(s.client_ip)}}},"response":{{"status":{s.status:d},'
            f'"content_length":{s.content_length:d}}}}}{parent_json}'
            f"{static.metadata_json}{static.aws_json}{static.origin_json}}}"
        )
    except (TypeError, ValueError, OverflowError):
        return None


def plain_subsegment_json(sub: Subsegment) -> str | None:
    """The nested document of a finished subsegment that holds no more than an outgoing HTTP
    call's (method, URL, status, length, flags) or a timed block's, in one step.

    Calls to one endpoint share everything after their times: that tail is written once and
    kept (:data:`_TAILS`). ``None`` for any other subsegment (a cause, annotations, metadata,
    ``aws``, children, unfinished...): :meth:`Subsegment.to_json` writes those, with the same
    result.
    """
    s = sub
    if (
        _holds_more(s)
        or s.user_agent is not None
        or s.client_ip is not None
        or s.x_forwarded_for
        or s.end_time is None
    ):
        return None
    try:
        key = (
            s.method, s.url, s.status, s.content_length, s.namespace, s.traced, s.fault, s.error, s.throttle
        )  # fmt: skip
        tail = _TAILS.get(key)
        if tail is None:
            tail = _tail(s)
            if len(_TAILS) >= _MAX_TAILS:
                _TAILS.clear()
            _TAILS[key] = tail
        times = _times_json(s.start_time, s.end_time)
        if times is None:
            return None
        return f'{{"name":{_enc(s.name)},"id":"{s.id}",{times}{tail}'
    except (TypeError, ValueError, OverflowError):  # a field of an unexpected type: the general path
        return None


_TAILS: dict[tuple[Any, ...], str] = {}
_MAX_TAILS = 256


def _tail(s: Subsegment) -> str:
    """What follows the times in :func:`plain_subsegment_json`'s document."""
    out: list[str] = []
    s._append_http_and_flags(out)
    if s.namespace:
        out += (',"namespace":', _enc(s.namespace))
    out.append("}")
    return "".join(out)


def split(segment: Segment, limit: int) -> list[str]:
    """Documents for *segment*, each at most *limit* characters: its subsegments sent on their own
    and what still does not fit trimmed (see :mod:`._fit`, which logs what it trimmed)."""
    doc = segment.to_json()
    if len(doc) <= limit:
        return [doc]
    return fit(doc, limit)[0]


_SECRET_WORDS = ("token", "secret", "password", "passwd", "signature", "credential", "session", "auth")
_SECRET_KEYS = frozenset({"key", "sig", "apikey", "api_key", "awsaccesskeyid", "access_key", "client_secret"})


def scrub_url(url: str) -> str:
    """*url* without userinfo, fragment, or the values of credential-like query parameters."""
    if "@" not in url and "?" not in url and "#" not in url:
        return url  # the usual URL: nothing to remove
    start = url.find("://")
    start = start + 3 if start >= 0 else 0
    end = len(url)
    for stop in ("/", "?", "#"):
        found = url.find(stop, start)
        if 0 <= found < end:
            end = found
    at = url.rfind("@", start, end)
    if at >= 0:
        url = url[:start] + url[at + 1 :]
    url = url.partition("#")[0]
    base, _, query = url.partition("?")
    if not query:
        return base
    parts = []
    for item in query.split("&"):
        key, eq, _ = item.partition("=")
        lowered = key.lower()
        secret = eq and (lowered in _SECRET_KEYS or any(word in lowered for word in _SECRET_WORDS))
        parts.append(key + "=REDACTED" if secret else item)
    return base + "?" + "&".join(parts)


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: unprintable>"
