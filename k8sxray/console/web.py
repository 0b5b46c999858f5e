"""The console's HTTP face: X-Ray's REST paths, the viewer's files, and the token check.

``Web.handle(method, path, headers, body)`` answers one request with a ``Reply`` and never raises;
the daemon's HTTP server calls it for every path it does not answer itself (``/healthz`` and
``/metrics`` stay there, open). The viewer is plain files inside the package (``static/``),
served from here: nothing is fetched from anywhere else.

With ``sampling``, X-Ray's sampling calls (``/GetSamplingRules``, ``/SamplingTargets``) are
answered here too, so a daemon whose sampling calls are forwarded to this console gets rules.

When a ``token`` is set (the daemon sets one when its HTTP address is not loopback), every request
must carry it: ``Authorization: Bearer <token>``, an ``X-K8sxray-Token`` header, or ``?token=`` on
a page's URL, which also sets a cookie so the viewer's own calls carry it.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .api import OPERATIONS, ApiError, Console

log = logging.getLogger(__name__)

__all__ = ["Reply", "Web"]

_TRACE_PAGE = re.compile(r"/traces/[A-Za-z0-9-]{1,64}\Z")
_STATIC = re.compile(r"/static/([A-Za-z0-9_.-]+)\Z")
_COOKIE = "k8sxray_token"
_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "json": "application/json",
}
"""Content types by extension, fixed here: browsers refuse a module script served with another type,
and the system's ``mimetypes`` table varies from machine to machine."""
_MAX_BODY = 16 * 1024 * 1024
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class Reply:
    """One HTTP answer."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, data: Any, headers: Mapping[str, str] | None = None) -> Reply:
    body = json.dumps(data, separators=(",", ":")).encode()
    return Reply(status, "application/json", body, dict(headers or {}))


def _error(exc: ApiError) -> Reply:
    return _json(
        exc.status, {"__type": exc.kind, "message": exc.message}, {"x-amzn-ErrorType": f"{exc.kind}:"}
    )


_ASK_FOR_TOKEN = Reply(
    401,
    "text/plain; charset=utf-8",
    b"This console asks for its token: open the address the daemon logged (it ends in ?token=...).\n",
    dict(_SECURITY_HEADERS),
)


Sampling = Callable[[str, bytes], tuple[int, dict[str, Any], "str | None"]]
"""``sampling(path, body) -> (status, answer, error type)``: X-Ray's two sampling calls, answered
by whoever mounts the console (the daemon's local rules)."""
_SAMPLING_PATHS = ("/GetSamplingRules", "/SamplingTargets")


class Web:
    """Routes requests to the console's operations and files."""

    def __init__(self, console: Console, token: str | None = None, sampling: Sampling | None = None) -> None:
        self.console = console
        self.token = token
        self.sampling = sampling

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        try:
            return self._handle(method, target, headers, body)
        except ApiError as exc:
            return _error(exc)
        except Exception:
            log.exception("console: answering %s %s failed", method, target.split("?", 1)[0])
            return _error(ApiError(500, "ServiceException", "internal error; see the daemon's log"))

    def _handle(  # noqa: PLR0912 - one branch per kind of request, in the order they are checked
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        url = urlsplit(target)
        path = url.path
        query = parse_qs(url.query)
        try:
            set_cookie = self._check_token(headers, query)
        except ApiError:
            if method in ("GET", "HEAD") and path not in OPERATIONS:
                return _ASK_FOR_TOKEN
            raise
        if path in _SAMPLING_PATHS and self.sampling is not None:
            if method != "POST":
                raise ApiError(405, "InvalidRequestException", f"{path} takes POST")
            status, answer, kind = self.sampling(path, body)
            if kind is not None:
                return _error(ApiError(status, kind, str(answer.get("Message", ""))))
            return _json(status, answer)
        if path in OPERATIONS:
            if method != "POST":
                raise ApiError(405, "InvalidRequestException", f"{path} takes POST")
            if len(body) > _MAX_BODY:
                raise ApiError(413, "InvalidRequestException", "request body too large")
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                raise ApiError(400, "InvalidRequestException", "the request body is not JSON") from None
            if not isinstance(request, dict):
                raise ApiError(400, "InvalidRequestException", "the request body must be a JSON object")
            return _json(200, OPERATIONS[path](self.console, request))
        if method not in ("GET", "HEAD"):
            raise ApiError(405, "InvalidRequestException", "only GET and HEAD here")
        page = None
        if path in ("/", "/index.html") or _TRACE_PAGE.match(path):
            page = "index.html"
        elif match := _STATIC.match(path):
            page = match.group(1)
        if page is None:
            raise ApiError(404, "ResourceNotFoundException", f"no such page: {path}")
        data = _asset(page)
        if data is None:
            raise ApiError(404, "ResourceNotFoundException", f"no such file: {page}")
        kind = _TYPES.get(page.rsplit(".", 1)[-1], "application/octet-stream")
        extra = dict(_SECURITY_HEADERS)
        if set_cookie:
            extra["Set-Cookie"] = set_cookie
        return Reply(200, kind, data, extra)

    def _check_token(self, headers: Mapping[str, str], query: Mapping[str, list[str]]) -> str:
        """Raise 401 without the token; returns a Set-Cookie value when it came in the URL."""
        if self.token is None:
            return ""
        lower = {k.lower(): v for k, v in headers.items()}
        offered = [
            lower.get("x-k8sxray-token", ""),
            lower.get("authorization", "").removeprefix("Bearer ").strip(),
            *query.get("token", []),
        ]
        cookie = SimpleCookie()
        try:
            cookie.load(lower.get("cookie", ""))
        except Exception:  # a malformed Cookie header is the same as none
            cookie = SimpleCookie()
        if _COOKIE in cookie:
            offered.append(cookie[_COOKIE].value)
        expected = self.token.encode()
        if not any(o and hmac.compare_digest(o.encode(), expected) for o in offered):
            raise ApiError(
                401, "AccessDeniedException", "this console needs its token (see the daemon's log)"
            )
        if query.get("token"):
            return f"{_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        return ""


def _asset(name: str) -> bytes | None:
    try:
        return resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
