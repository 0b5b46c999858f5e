"""Spans as plain Python structures: what ``codec`` decodes into and ``mapping`` works on.

Ids are lowercase hex strings (32 digits for a trace, 16 for a span; ``""`` for no parent), times
are integer nanoseconds since the epoch, attribute values are ``str``, ``bool``, ``int``, ``float``,
``bytes``, lists of those, or dicts (an OTLP ``kvlist``). ``resource`` is the resource's attributes,
one dict shared by every span of that resource.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Attributes = dict[str, Any]

# SpanKind, as OTLP numbers it
KIND_UNSPECIFIED, KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = range(6)
KIND_NAMES = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")

# Status.StatusCode
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2


@dataclass(slots=True)
class Event:
    """A span event (exceptions are events named ``exception``)."""

    name: str
    time_ns: int = 0
    attributes: Attributes = field(default_factory=dict)


@dataclass(slots=True)
class Span:
    """One span with its resource."""

    trace_id: str
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    parent_span_id: str = ""
    kind: int = KIND_INTERNAL
    attributes: Attributes = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    status_code: int = STATUS_UNSET
    status_message: str = ""
    resource: Attributes = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""
    trace_state: str = ""
