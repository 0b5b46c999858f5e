"""Bridge to the official SDK: ``aws_xray_sdk.core.xray_recorder`` records into k8sxray's segment.

Inside a request traced by k8sxray, the recorder's subsegment and annotation methods
(and so ``capture()``, ``in_subsegment()``, ``current_segment().put_annotation()``,
and every library patched with ``patch_all()``) work on k8sxray's current segment:
same trace, nested under it, and the SDK never emits a segment of its own.

The SDK's own web middlewares (Flask, Django, Bottle) call ``begin_segment`` and
``end_segment`` around each request: inside a request k8sxray traces, ``begin_segment``
hands back k8sxray's segment (k8sxray has already decided the sampling, the trace and the
name) and ``end_segment`` leaves the ending and sending to k8sxray, so one segment per
request reaches the daemon, with everything the middleware and the app recorded in it.
The SDK's sampler is not asked there either (its answer would be ignored).

Outside such a request, the SDK behaves exactly as before. ``uninstrument()`` restores it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import _context, _guard, _recorder
from .._segment import Entity, Segment, Subsegment, UnsampledTrace, scrub_url

LIBRARY = "aws_xray_sdk"

__all__ = ["LIBRARY", "instrument", "is_instrumented", "uninstrument"]

_PATCHED = (
    "begin_segment",
    "end_segment",
    "begin_subsegment",
    "begin_subsegment_without_sampling",
    "end_subsegment",
    "current_segment",
    "current_subsegment",
    "get_trace_entity",
    "put_annotation",
    "put_metadata",
    "is_sampled",
)
_RETURN_ENTITIES = frozenset(
    {
        "begin_segment",
        "begin_subsegment",
        "begin_subsegment_without_sampling",
        "current_segment",
        "get_trace_entity",
    }
)
_MARK = "_k8sxray_bridged"


def _sdk_recorder() -> Any:
    from aws_xray_sdk.core import xray_recorder

    return xray_recorder


def is_instrumented() -> bool:
    """Whether the SDK's ``xray_recorder`` is bridged."""
    try:
        return bool(getattr(_sdk_recorder(), _MARK, False))
    except ImportError:
        return False


def instrument() -> None:
    """Bridge ``xray_recorder`` to k8sxray (idempotent); raises ImportError without the SDK."""
    global _sampler
    recorder = _sdk_recorder()
    if getattr(recorder, _MARK, False):
        return
    for name in _PATCHED:
        original = getattr(recorder, name)
        setattr(recorder, name, _make(name, original))
    _sampler = _bridge_sampler(recorder)
    setattr(recorder, _MARK, True)


def uninstrument() -> None:
    """Give ``xray_recorder`` (and its sampler) their own methods back."""
    global _sampler
    try:
        recorder = _sdk_recorder()
    except ImportError:
        return
    if not getattr(recorder, _MARK, False):
        return
    for name in _PATCHED:
        recorder.__dict__.pop(name, None)
    if _sampler is not None:
        vars(_sampler).pop("should_trace", None)
        _sampler = None
    delattr(recorder, _MARK)


_sampler: Any = None
"""The SDK sampler whose ``should_trace`` is bridged (``None`` when none is)."""


def _bridge_sampler(recorder: Any) -> Any:
    """Make the SDK's sampler answer k8sxray's decision inside k8sxray's requests.

    The SDK's middlewares ask it before ``begin_segment``; inside a request k8sxray traces the
    answer would be ignored, and asking the SDK's centralized sampler would start its pollers.
    A sampler set later with ``xray_recorder.configure(sampler=...)`` is asked as usual.
    """
    try:
        sampler = recorder.sampler
        original = sampler.should_trace
        if "should_trace" in vars(sampler):  # bridged already, or replaced by someone else
            return None

        def should_trace(*args: Any, **kwargs: Any) -> Any:
            current = _context.get()
            if current is None:
                return original(*args, **kwargs)
            return isinstance(current, Entity)

        sampler.should_trace = should_trace
        return sampler
    except Exception:  # a custom sampler we cannot bridge: it is asked, its answer ignored
        _guard.internal_error("xray_sdk.sampler")
        return None


def _make(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    ours = _BRIDGED[name]

    def bridged(*args: Any, **kwargs: Any) -> Any:
        current = _context.get()
        if current is None:  # not in a k8sxray request: the SDK's own behaviour
            return original(*args, **kwargs)
        try:
            return ours(current, *args, **kwargs)
        except Exception:
            _guard.internal_error(f"xray_sdk.{name}")
            # the SDK's callers use what they get back: an entity that records nothing
            return SDKEntity(None, current) if name in _RETURN_ENTITIES else None

    bridged.__name__ = name
    bridged.__wrapped__ = original  # type: ignore[attr-defined]
    return bridged


# --- what the SDK sees: its entity interface over k8sxray's entities --------------------------
_HTTP_REQUEST = {"url", "method", "user_agent", "client_ip", "x_forwarded_for"}


class SDKEntity:
    """A k8sxray segment or subsegment (or an unsampled trace) seen through the SDK's entity API."""

    def __init__(self, entity: Entity | None, trace: Entity | UnsampledTrace, sub: bool = False) -> None:
        self._entity = entity
        self._trace = trace
        self._sub = sub or isinstance(entity, Subsegment)  # also a subsegment of an unsampled trace

    # identity, as the SDK's patches read it
    @property
    def type(self) -> str:
        return "subsegment" if self._sub else "segment"

    @property
    def id(self) -> str | None:
        """The entity's id; in an unsampled trace, the upstream's parent id (passed on downstream)."""
        if self._entity is not None:
            return self._entity.id
        trace = self._trace
        return trace.parent_id if isinstance(trace, UnsampledTrace) else None

    @property
    def trace_id(self) -> str:
        if isinstance(self._trace, UnsampledTrace):
            return self._trace.trace_id
        return self._trace.segment.trace_id

    @property
    def sampled(self) -> bool:
        return self._entity is not None

    @property
    def name(self) -> str:
        return self._entity.name if self._entity is not None else ""

    @name.setter
    def name(self, value: str) -> None:
        """Renames a subsegment (the SDK's template patches do); the segment keeps k8sxray's
        service name."""
        if isinstance(self._entity, Subsegment) and value:
            self._entity.name = str(value)

    @property
    def namespace(self) -> str | None:
        return self._entity.namespace if isinstance(self._entity, Subsegment) else None

    @namespace.setter
    def namespace(self, value: str) -> None:
        if isinstance(self._entity, Subsegment):
            self._entity.namespace = value

    @property
    def parent_segment(self) -> SDKEntity:
        entity = self._entity
        return SDKEntity(entity.segment if entity is not None else None, self._trace)

    @property
    def segment(self) -> SDKEntity:
        return self.parent_segment

    def save_origin_trace_header(self, header: Any) -> None:
        """The SDK's middlewares keep the incoming header here; k8sxray has read it already."""

    def get_origin_trace_header(self) -> Any:
        """The incoming header as the SDK's ``TraceHeader``, rebuilt from k8sxray's trace: the SDK
        reads its ``sampled`` (``?`` asks for the decision in the response) and ``data``."""
        from aws_xray_sdk.core.models.trace_header import TraceHeader

        trace = self._trace
        root = trace if isinstance(trace, UnsampledTrace) else trace.segment
        asked = ";Sampled=" in root.response_header  # k8sxray answers the decision only when asked
        data = dict(field.split("=", 1) for field in root.extra.split(";") if "=" in field)
        sampled: Any = "?" if asked else isinstance(root, Segment)
        return TraceHeader(root=root.trace_id, parent=root.parent_id, sampled=sampled, data=data)

    # ending: k8sxray ends and sends the request's segment itself
    def ready_to_send(self) -> bool:
        return False

    def close(self, end_time: float | None = None) -> None:
        """Ends a subsegment; the request's segment ends when the request does."""
        if isinstance(self._entity, Subsegment):
            _recorder.end_subsegment(self._entity, end_time=end_time)

    # recording
    def put_annotation(self, key: str, value: Any) -> None:
        if self._entity is not None:
            self._entity.put_annotation(key, value)

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        if self._entity is not None:
            self._entity.put_metadata(key, value, namespace)

    def put_http_meta(self, key: str, value: Any) -> None:
        """A subsegment's HTTP fields (the SDK's patched libraries). The request's segment has
        them from k8sxray already, so what the SDK's middlewares set there again is left out."""
        entity = self._entity
        if not isinstance(entity, Subsegment) or value is None:
            return
        if key == "status":
            entity.set_status(int(value))
        elif key == "content_length":
            entity.content_length = int(value)
        elif key == "url":
            entity.url = scrub_url(str(value))
        elif key == "method":
            entity.method = str(value).upper()
        elif key == "x_forwarded_for":
            entity.x_forwarded_for = bool(value)
        elif key in _HTTP_REQUEST:
            setattr(entity, key, str(value))

    def apply_status_code(self, status_code: int | None) -> None:
        if isinstance(self._entity, Subsegment) and status_code:
            self._entity.set_status(int(status_code))

    def add_exception(self, exception: BaseException, stack: Any = None, remote: bool = False) -> None:
        if self._entity is not None:
            self._entity.add_exception(exception, remote=remote)

    def set_aws(self, aws_meta: Mapping[str, Any]) -> None:
        if self._entity is not None:
            self._entity.set_aws(aws_meta)

    def set_sql(self, sql: Mapping[str, Any]) -> None:
        if self._entity is not None:
            self._entity.put_metadata("sql", dict(sql), namespace="sql")

    def set_user(self, user: str) -> None:
        if isinstance(self._entity, Segment):
            self._entity.user = str(user)

    def add_fault_flag(self) -> None:
        if self._entity is not None:
            self._entity.fault = True

    def add_error_flag(self) -> None:
        if self._entity is not None:
            self._entity.error = True

    def add_throttle_flag(self) -> None:
        if self._entity is not None:
            self._entity.throttle = True

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<k8sxray {self.type} {self.id} of trace {self.trace_id}>"


def _view(current: Entity | UnsampledTrace) -> SDKEntity:
    return SDKEntity(current if isinstance(current, Entity) else None, current)


def _begin_subsegment(current: Entity | UnsampledTrace, name: str, namespace: str = "local") -> SDKEntity:
    sub = _recorder.begin_subsegment(name, namespace)
    return SDKEntity(sub, current if sub is None else sub, sub=True)


def _begin_subsegment_without_sampling(current: Entity | UnsampledTrace, name: str) -> SDKEntity:
    return _begin_subsegment(current, name)


def _end_subsegment(current: Entity | UnsampledTrace, end_time: float | None = None) -> None:
    if isinstance(current, Subsegment):
        _recorder.end_subsegment(current, end_time=end_time if end_time is not None else time.time())


def _begin_segment(current: Entity | UnsampledTrace, *args: Any, **kwargs: Any) -> SDKEntity:
    """The SDK's middleware begins a segment: it gets the request's, which k8sxray has begun
    (the name, trace id, parent and sampling decision it passes are k8sxray's to decide)."""
    return _current_segment(current)


def _end_segment(current: Entity | UnsampledTrace, end_time: float | None = None) -> None:
    """k8sxray ends and sends the request's segment when the request ends."""


def _current_segment(current: Entity | UnsampledTrace) -> SDKEntity:
    if isinstance(current, Entity):
        return SDKEntity(current.segment, current.segment)
    return _view(current)


def _current_subsegment(current: Entity | UnsampledTrace) -> SDKEntity | None:
    if isinstance(current, UnsampledTrace):  # as the SDK's dummy subsegments: records nothing
        return SDKEntity(None, current, sub=True)
    return SDKEntity(current, current) if isinstance(current, Subsegment) else None


def _put_annotation(current: Entity | UnsampledTrace, key: str, value: Any) -> None:
    if isinstance(current, Entity):
        current.put_annotation(key, value)


def _put_metadata(current: Entity | UnsampledTrace, key: str, value: Any, namespace: str = "default") -> None:
    if isinstance(current, Entity):
        current.put_metadata(key, value, namespace)


def _is_sampled(current: Entity | UnsampledTrace) -> bool:
    return isinstance(current, Entity)


_BRIDGED: dict[str, Callable[..., Any]] = {
    "begin_segment": _begin_segment,
    "end_segment": _end_segment,
    "begin_subsegment": _begin_subsegment,
    "begin_subsegment_without_sampling": _begin_subsegment_without_sampling,
    "end_subsegment": _end_subsegment,
    "current_segment": _current_segment,
    "current_subsegment": _current_subsegment,
    "get_trace_entity": _view,
    "put_annotation": _put_annotation,
    "put_metadata": _put_metadata,
    "is_sampled": _is_sampled,
}
