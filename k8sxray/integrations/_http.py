"""What the WSGI and ASGI middlewares (and outgoing-call integrations) share.

Request mapping onto a segment, and credential scrubbing: URLs lose userinfo and the
values of credential-like query parameters; headers are never recorded, and
:data:`SENSITIVE_HEADERS` names those no integration may ever copy into a document.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from .._segment import Segment, scrub_url

__all__ = ["MAX_URL", "SENSITIVE_HEADERS", "fill_request", "names_header", "scrub_url"]

_name = itemgetter(0)  # of a (name, value) header

SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-amz-security-token",
        "x-api-key",
    }
)
"""Header names (lowercase) whose values are credentials."""

MAX_URL = 2048
"""Longer request URLs are cut to this length."""


def names_header(headers: Iterable[tuple[Any, Any]], lower: str | bytes) -> bool:
    """Whether the response *headers* (``(name, value)`` pairs: str names in WSGI, bytes in ASGI)
    name the header *lower* (lowercase, the same type) in any case. The names' lengths are looked
    at in C, and only when one has the length are names lowercased (also in C): the usual answer,
    no, allocates nothing."""
    kind = type(lower)
    try:
        if len(lower) not in map(len, map(_name, headers)):
            return False
        return lower in map(kind.lower, map(_name, headers))
    except TypeError:  # a name of another type (outside PEP 3333 or the ASGI spec)
        return any(isinstance(name, kind) and name.lower() == lower for name in map(_name, headers))


def fill_request(  # noqa: PLR0917  # positional: it runs on every request
    segment: Segment,
    method: str,
    scheme: str,
    host: str,
    path: str,
    query: str,
    user_agent: str | None,
    remote_addr: str | None,
    forwarded_for: str | None,
) -> None:
    """Record an incoming request's ``http.request`` on *segment*."""
    if "@" in host:
        host = host.rpartition("@")[2]
    url = scheme + "://" + host + path
    if query:
        url = scrub_url(url + "?" + query)
    if len(url) > MAX_URL:
        url = url[:MAX_URL]
    segment.method = method
    segment.url = url
    segment.user_agent = user_agent
    if forwarded_for:
        segment.client_ip = forwarded_for.partition(",")[0].strip()
        segment.x_forwarded_for = True
    else:
        segment.client_ip = remote_addr
