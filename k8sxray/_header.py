"""The ``X-Amzn-Trace-Id`` header: parse what arrives, format what leaves.

Parsing is defensive: any header that is too long, malformed or hostile yields
``None`` (a new trace starts) or drops just the bad field, and never raises.
"""

from __future__ import annotations

import re
from typing import NamedTuple

NAME = "X-Amzn-Trace-Id"
WSGI_KEY = "HTTP_X_AMZN_TRACE_ID"
ASGI_NAME = b"x-amzn-trace-id"

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
