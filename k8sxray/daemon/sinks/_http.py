"""A minimal keep-alive HTTP/1.1 client for one endpoint: one ``sendall`` per request.

The daemon makes one kind of call tens of times a second per connection; ``http.client`` spends
~60-80 µs of CPU per call on header objects and email-style parsing and sends a large body in a
second syscall. This client writes the request in one piece and parses only the status line and
the few headers it needs. HTTPS (with the system or certifi CAs), HTTP proxies (absolute URLs) and
HTTPS through a proxy (CONNECT) are supported; ``NO_PROXY`` is honoured.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import threading
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024


class TransportError(Exception):
    """A call that got no HTTP answer; ``kind`` is the official daemon's telemetry name."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class _Stale(Exception):
    """A reused connection turned out to be closed by the server before we wrote anything useful."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
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


class _Conn:
    """One connection with a read buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def read_head(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[:end])
                del self.buf[: end + 4]
                return head
            if len(self.buf) > _MAX_HEAD:
                raise OSError("response headers too large")
            self._fill()

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > _MAX_HEAD:
                raise OSError("chunk header too large")
            self._fill()
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    def read_to_close(self) -> bytes:
        while len(self.buf) <= _MAX_BODY:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("connection closed by the server")
        self.buf += chunk

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class ConnectionPool:
    """Keep-alive connections to the host of ``url``, at most ``size`` kept idle."""

    def __init__(
        self, url: str, *, proxy: str | None = None, verify: bool = True, timeout: float = 5.0, size: int = 8
    ) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.timeout = timeout
        self.size = size
        self._context = _ssl_context(verify) if parts.scheme == "https" else None
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()
        self._proxy = urlsplit(proxy) if proxy else None
        self._proxy_auth = b""
        if self._proxy is not None and self._proxy.username:
            userinfo = f"{unquote(self._proxy.username)}:{unquote(self._proxy.password or '')}"
            self._proxy_auth = b"Proxy-Authorization: Basic " + base64.b64encode(userinfo.encode()) + b"\r\n"
        default_port = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == default_port else f"{host}:{self.port}"
        """The Host header this pool sends (callers signing requests sign this value)."""
        # through a plain-HTTP proxy an http:// URL goes in the request line in full
        self.absolute = self._proxy is not None and self.scheme == "http"

    def _connect(self) -> _Conn:
        proxy = self._proxy
        address = (proxy.hostname or "", proxy.port or 80) if proxy is not None else (self.host, self.port)
        sock = socket.create_connection(address, timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is None:
                return _Conn(sock)
            if proxy is not None:
                self._tunnel(sock)
            return _Conn(self._context.wrap_socket(sock, server_hostname=self.host))
        except BaseException:
            sock.close()
            raise

    def _tunnel(self, sock: socket.socket) -> None:
        target = f"{self.host}:{self.port}".encode()
        sock.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (target, target, self._proxy_auth))
        conn = _Conn(sock)
        status = _status(conn.read_head())
        if status != 200:
            raise OSError(f"proxy refused CONNECT with HTTP {status}")

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Response:
        """One request; a reused connection the server had closed is retried once on a new one."""
        target = f"{self.scheme}://{self.host_header}{path}" if self.absolute else path
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host_header}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        data = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        if self.absolute:
            data += self._proxy_auth
        data += b"\r\n" + body
        for attempt in (0, 1):
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            try:
                if conn is None:
                    conn = self._connect()
                conn.sock.sendall(data)
                response, keep = _read_response(conn, reused)
            except _Stale:
                if conn is not None:
                    conn.close()
                if attempt == 0:
                    continue
                raise TransportError("Other", "connection closed by the server") from None
            except (OSError, ValueError) as exc:
                if conn is not None:
                    conn.close()
                raise self._failure(exc) from None
            if keep:
                with self._lock:
                    if len(self._idle) < self.size:
                        self._idle.append(conn)
                        conn = None
            if conn is not None:
                conn.close()
            return response
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


def _status(head: bytes) -> int:
    first = head.split(b"\r\n", 1)[0].split(None, 2)
    if len(first) < 2 or not first[0].startswith(b"HTTP/") or not first[1].isdigit():
        raise ValueError(f"not an HTTP response: {head[:40]!r}")
    return int(first[1])


def _read_response(conn: _Conn, reused: bool) -> tuple[Response, bool]:
    """Read one response; returns it and whether the connection may be reused."""
    try:
        head = conn.read_head()
    except (ConnectionResetError, BrokenPipeError):
        if reused and not conn.buf:
            raise _Stale from None
        raise
    status = _status(head)
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    keep = headers.get("connection", "").lower() != "close" and head[:8] != b"HTTP/1.0"
    if status in (204, 304) or 100 <= status < 200:
        return Response(status, headers, b""), keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size = int(conn.read_line().split(b";", 1)[0], 16)
            if size == 0:
                while conn.read_line():  # trailers
                    pass
                break
            if len(body) + size > _MAX_BODY:
                raise ValueError("response body too large")
            body += conn.read_exactly(size)
            conn.read_line()
        return Response(status, headers, bytes(body)), keep
    length = headers.get("content-length")
    if length is not None:
        n = int(length)
        if n > _MAX_BODY:
            raise ValueError("response body too large")
        return Response(status, headers, conn.read_exactly(n)), keep
    return Response(status, headers, conn.read_to_close()), False
