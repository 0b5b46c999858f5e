"""Segment documents as encoded OTLP spans: the C module when it is built and answers, else Python.

``Encoder.encode(document)`` gives a document's spans as the OTLP sink sends them: the resource's
attributes encoded (``codec.encode_resource``, also the key the sink groups spans by) and the spans,
each already a ``ScopeSpans.spans`` field. ``k8sxray.otlp._fast`` (optional, built at install time
when a C compiler is there) reads the JSON and writes those bytes in one pass, about ten times faster
than ``json.loads`` + ``spans.convert`` + ``codec.encode_span``; for any document it is not sure to
write exactly as Python does it answers None and Python runs. ``K8SXRAY_NATIVE=false`` (or
``native=False``) runs Python for every document.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .. import _env
from . import codec
from .spans import Resources, convert

try:
    from . import _fast
except ImportError:  # built without a C compiler: every document goes through Python
    _fast = None  # type: ignore[assignment]

BUILT: bool = _fast is not None
"""Whether the C module is there."""

Encoded = tuple[bytes, bytes, int]
"""(resource attributes encoded, the spans as ``ScopeSpans.spans`` fields, how many spans)."""


def native_wanted(environ: Any = None) -> bool:
    """``K8SXRAY_NATIVE`` is not false (``0``, ``false``, ``no``, ``off``), as the library reads it."""
    env = os.environ if environ is None else environ
    return str(env.get(_env.K8SXRAY_NATIVE, "true")).strip().lower() not in _env.FALSE_WORDS


class Encoder:
    """Encodes documents, remembering segments' resources for subsegments sent on their own.

    ``fast`` and ``slow`` count the documents each path encoded."""

    def __init__(self, resources: Resources | None = None, *, native: bool | None = None) -> None:
        self.resources = Resources() if resources is None else resources
        self.native = BUILT and (native_wanted() if native is None else native)
        self.fast = 0
        self.slow = 0

    def encode(self, document: bytes) -> Encoded | None:
        """The document's spans; None when it has none yet (in progress). Raises
        ``spans.MappingError`` for a document that cannot become spans, ValueError or
        RecursionError for one that is not JSON."""
        if self.native:
            answer = _fast.encode(document)
            if answer is not None:
                resource, spans, count, trace_id, entity_id = answer
                self.resources.remember(trace_id, entity_id, resource)
                self.fast += 1
                return resource, spans, count
        self.slow += 1
        return encode_python(document, self.resources)


def encode_python(document: bytes, resources: Resources | None = None) -> Encoded | None:
    """What :meth:`Encoder.encode` answers, in Python alone (the reference)."""
    spans = convert(json.loads(document), resources)
    if not spans:
        return None
    # every span of a document has its segment's resource (spans.convert)
    # (not cached by tuple(resource.items()): False == 0 == 0.0 there, and their bytes differ)
    encoded_resource = codec.encode_resource(spans[0].resource)
    span_field, encode_span = codec.span_field, codec.encode_span
    if len(spans) == 1:
        return encoded_resource, span_field(encode_span(spans[0])), 1
    return encoded_resource, b"".join([span_field(encode_span(span)) for span in spans]), len(spans)
