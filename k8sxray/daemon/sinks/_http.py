"""A small pool of keep-alive ``http.client`` connections to one endpoint, proxy-aware.

About 100 µs of CPU per call cheaper than urllib3 for the daemon's one kind of request, which is
2 µs a segment at 50 segments a call.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import threading
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
"""What a keep-alive connection the server closed meanwhile raises on reuse."""


class TransportError(Exception):
    """A call that got no HTTP answer; ``kind`` is the official daemon's telemetry name."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def proxy_for(url: str, explicit: str | None) -> str | None:
    """The proxy to use for ``url``: ``-p`` if given, else HTTPS_PROXY/HTTP_PROXY minus NO_PROXY."""
    if explicit:
        return explicit if "://" in explicit else f"http://{explicit}"
    parts = urlsplit(url)
    proxy = urllib.request.getproxies_environment().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return proxy
    return None


def _ssl_context(verify: bool) -> ssl.SSLContext:
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        from botocore.httpsession import get_cert_path

        return ssl.create_default_context(cafile=get_cert_path(True))
    except (ImportError, OSError, TypeError):
        return ssl.create_default_context()


class ConnectionPool:
    """Keep-alive connections to the host of ``url``, at most ``size`` kept idle."""

    def __init__(self, url: str, *, proxy: str | None = None, verify: bool = True, timeout: float = 5.0,
                 size: int = 8) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.timeout = timeout
        self.size = size
        self._context = _ssl_context(verify) if parts.scheme == "https" else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._proxy = urlsplit(proxy) if proxy else None
        self._proxy_headers: dict[str, str] = {}
        if self._proxy is not None and self._proxy.username:
            userinfo = f"{unquote(self._proxy.username)}:{unquote(self._proxy.password or '')}"
            token = base64.b64encode(userinfo.encode()).decode()
            self._proxy_headers["Proxy-Authorization"] = f"Basic {token}"
        # through a plain-HTTP proxy an http:// URL goes in the request line in full
        self.absolute = self._proxy is not None and self.scheme == "http"

    def _connect(self) -> http.client.HTTPConnection:
        proxy = self._proxy
        if proxy is None:
            if self._context is not None:
                return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                   context=self._context)
            return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        proxy_port = proxy.port or 80
        if self._context is not None:  # HTTPS through the proxy with CONNECT
            conn = http.client.HTTPSConnection(proxy.hostname or "", proxy_port, timeout=self.timeout,
                                               context=self._context)
            conn.set_tunnel(self.host, self.port, headers=self._proxy_headers)
            return conn
        return http.client.HTTPConnection(proxy.hostname or "", proxy_port, timeout=self.timeout)

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Response:
        """One request; a reused connection the server had closed is retried once on a new one."""
        target = f"{self.scheme}://{self.host}:{self.port}{path}" if self.absolute else path
        if self.absolute:
            headers = {**headers, **self._proxy_headers}
        for attempt in (0, 1):
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            if conn is None:
                conn = self._connect()
            try:
                conn.request(method, target, body=body, headers=headers)
                raw = conn.getresponse()
                data = raw.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if isinstance(exc, _STALE) and reused and attempt == 0:
                    continue
                raise self._failure(exc) from None
            if raw.will_close:
                conn.close()
            else:
                with self._lock:
                    if len(self._idle) < self.size:
                        self._idle.append(conn)
                        conn = None
                if conn is not None:
                    conn.close()
            return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, data)
        raise TransportError("Other", "unreachable")  # pragma: no cover - the loop always returns

    def _failure(self, exc: BaseException) -> TransportError:
        if isinstance(exc, TimeoutError):
            return TransportError("Timeout", f"timed out after {self.timeout} s")
        if isinstance(exc, ConnectionRefusedError):
            return TransportError("ConnectionRefused", f"connection refused by {self.host}:{self.port}")
        if isinstance(exc, socket.gaierror):
            return TransportError("UnknownHost", f"cannot resolve {self.host}: {exc}")
        return TransportError("Other", f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
