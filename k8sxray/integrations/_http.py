"""What the WSGI and ASGI middlewares (and outgoing-call integrations) share.

Request mapping onto a segment, and credential scrubbing: URLs lose userinfo and the
values of credential-like query parameters; headers are never recorded, and
:data:`SENSITIVE_HEADERS` names those no integration may ever copy into a document.
"""

from __future__ import annotations

from .._segment import Segment, scrub_url

__all__ = ["MAX_URL", "SENSITIVE_HEADERS", "fill_request", "scrub_url"]

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
