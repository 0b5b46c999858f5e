"""The trace headers: ``X-Amzn-Trace-Id``, and W3C's ``traceparent``/``tracestate``; parse
what arrives, format what leaves.

Parsing is defensive: any header that is too long, malformed or hostile yields
``None`` (a new trace starts) or drops just the bad field, and never raises.

A W3C trace id is X-Ray's without its punctuation: ``4bf92f3577b34da6a3ce929d0e0e4736`` is
``1-4bf92f35-77b34da6a3ce929d0e0e4736`` (OpenTelemetry's ``AwsXRayIdGenerator`` puts the
epoch seconds in the first 8 digits, as X-Ray does), and a parent span id is a segment id.
"""

from __future__ import annotations

import re
from typing import NamedTuple

NAME = "X-Amzn-Trace-Id"
WSGI_KEY = "HTTP_X_AMZN_TRACE_ID"
ASGI_NAME = b"x-amzn-trace-id"

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACEPARENT_WSGI_KEY = "HTTP_TRACEPARENT"
TRACESTATE_WSGI_KEY = "HTTP_TRACESTATE"

_MAX_LEN = 512
_HEX = frozenset("0123456789abcdef")
_EXTRA_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:=+/")


class TraceHeader(NamedTuple):
    """A parsed header. ``sampled`` is ``"1"``, ``"0"`` or ``"?"`` (``"?"`` also when absent)."""

    root: str
    parent: str | None
    sampled: str
    extra: str
    """Other ``key=value`` fields (``Lineage=...``), passed downstream unchanged."""


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and _HEX.issuperset(text)


def valid_root(root: str) -> bool:
    """Whether *root* is ``1-<8 hex>-<24 hex>``."""
    return len(root) == 35 and root[:2] == "1-" and root[10] == "-" and _is_hex(root[2:10] + root[11:], 32)


_CANONICAL = re.compile(r"Root=(1-[0-9a-f]{8}-[0-9a-f]{24});Parent=([0-9a-f]{16});Sampled=([01?])").fullmatch
canonical = _CANONICAL
"""Match the usual form ``Root=...;Parent=...;Sampled=x`` (groups: root, parent, sampled) or ``None``."""


def parse(value: str | None) -> TraceHeader | None:
    """Parse a header value; ``None`` when it is missing, malformed or has no valid Root."""
    if not value or len(value) > _MAX_LEN:
        return None
    match = _CANONICAL(value)
    if match is not None:  # the common form, in one step
        root, parent, sampled = match.groups()
        return TraceHeader(root, parent, sampled, "")
    root = parent = None
    sampled = "?"
    extra: list[str] = []
    for part in value.split(";"):
        key, sep, val = part.partition("=")
        key = key.strip()
        val = val.strip()
        if key == "Root":
            root = val
        elif key == "Parent":
            parent = val if _is_hex(val, 16) else None
        elif key == "Sampled":
            sampled = val if val in ("1", "0") else "?"
        elif key and sep and key != "Self" and _EXTRA_OK.issuperset(key) and _EXTRA_OK.issuperset(val):
            extra.append(f"{key}={val}")
    if root is None or not valid_root(root):
        return None
    return TraceHeader(root, parent, sampled, ";".join(extra))


def format_header(root: str, parent: str | None, sampled: bool | None, extra: str = "") -> str:
    """``Root=...;Parent=...;Sampled=1`` (Parent and Sampled left out when ``None``)."""
    out = "Root=" + root
    if parent:
        out += ";Parent=" + parent
    if sampled is not None:
        out += ";Sampled=1" if sampled else ";Sampled=0"
    if extra:
        out += ";" + extra
    return out


# --- W3C Trace Context (level 1) ---------------------------------------------------------------
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})").match
_ZERO_TRACE = "0" * 32
ZERO_PARENT = "0" * 16
ZERO_EPOCH, ZERO_RANDOM = "0" * 8, "0" * 24
"""An all-zero trace id's two parts (an all-zero id is invalid)."""
SAMPLED_DIGITS = frozenset("13579bdf")
"""The last hex digit of a W3C flags byte whose sampled bit (1) is set."""
UNSAMPLED_DIGITS = frozenset("02468ace")
"""The last hex digit of a W3C flags byte whose sampled bit is off."""

canonical_traceparent = re.compile(r"00-([0-9a-f]{8})([0-9a-f]{24})-([0-9a-f]{16})-0([0-9a-f])").fullmatch
"""Match the usual form of a ``traceparent``, ``00-<32 hex>-<16 hex>-0<hex>`` (groups: the trace
id's first 8 and last 24 digits, X-Ray's two parts; the parent id; the flags' last digit) or
``None``. A match may still be invalid: an all-zero trace or parent id (check them against
:data:`ZERO_EPOCH`, :data:`ZERO_RANDOM` and :data:`ZERO_PARENT`)."""
_OWS = " \t"
_MAX_TRACESTATE_MEMBERS = 32


class TraceParent(NamedTuple):
    """A valid ``traceparent``, in X-Ray's terms: ``root`` is ``1-<8 hex>-<24 hex>``,
    ``parent`` the caller's span id, ``sampled`` ``"1"`` or ``"0"`` (the flags' sampled bit)."""

    root: str
    parent: str
    sampled: str


def parse_traceparent(value: str | None) -> TraceParent | None:  # noqa: PLR0911  # each rule says no
    """Parse a ``traceparent`` value as W3C Trace Context level 1 says; ``None`` when it is
    missing or invalid.

    Version ``00`` is exactly ``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``
    (lowercase). A later version is read the same way, ignoring whatever follows a ``-`` after
    the flags; version ``ff``, an all-zero trace or parent id, or anything else is invalid.
    """
    if not value or len(value) > _MAX_LEN:
        return None
    match = canonical_traceparent(value)
    if match is not None:  # the usual form, in one step
        epoch, random, parent, flags = match.groups()
        if parent == ZERO_PARENT or (random == ZERO_RANDOM and epoch == ZERO_EPOCH):
            return None
        return TraceParent("1-" + epoch + "-" + random, parent, "1" if flags in SAMPLED_DIGITS else "0")
    if value[0] in _OWS or value[-1] in _OWS:  # optional whitespace around a header value
        value = value.strip(_OWS)
    match = _TRACEPARENT(value)
    if match is None:
        return None
    version, trace, parent, flags = match.groups()
    if version == "00":
        if len(value) != 55:
            return None
    elif version == "ff" or (len(value) > 55 and value[55] != "-"):
        return None
    if trace == _ZERO_TRACE or parent == ZERO_PARENT:
        return None
    return TraceParent("1-" + trace[:8] + "-" + trace[8:], parent, "1" if int(flags, 16) & 1 else "0")


def valid_tracestate(value: str | None) -> str:
    """*value* as it is when it can be passed on (printable ASCII, at most 512 characters and 32
    list members), else ``""``: a tracestate is passed downstream unchanged or not at all."""
    if not value or len(value) > _MAX_LEN or not value.isascii() or not value.isprintable():
        return ""
    value = value.strip(_OWS)
    if value.count(",") >= _MAX_TRACESTATE_MEMBERS:  # perhaps empty members: count the others
        members = [member for member in value.split(",") if member.strip(_OWS)]
        if len(members) > _MAX_TRACESTATE_MEMBERS:
            return ""
    return value


def format_traceparent(root: str, parent: str, sampled: bool) -> str:
    """``00-<trace id>-<parent id>-01`` (``-00`` when not sampled) for an X-Ray *root*."""
    return "00-" + root[2:10] + root[11:] + "-" + parent + ("-01" if sampled else "-00")
