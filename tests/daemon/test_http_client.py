"""The sink's HTTP/1.1 client against real loopback servers: framing, keep-alive, TLS, CONNECT."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import pytest
import trustme

from k8sxray.daemon.sinks._http import ConnectionPool, TransportError


def _serve(handle: Callable[[socket.socket], None], context: ssl.SSLContext | None = None) -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            if not select.select([listener], [], [], 0.05)[0]:
                continue
            conn, _ = listener.accept()
            threading.Thread(target=_guarded, args=(handle, conn, context), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    listener.close()


def _guarded(
    handle: Callable[[socket.socket], None], conn: socket.socket, context: ssl.SSLContext | None
) -> None:
    with conn, contextlib.suppress(OSError):
        if context is None:
            handle(conn)
            return
        with context.wrap_socket(conn, server_side=True) as wrapped:
            handle(wrapped)


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += conn.recv(65536)
    return head


def _answer_with(*answers: bytes) -> Callable[[socket.socket], None]:
    def handle(conn: socket.socket) -> None:
        for answer in answers:
            if not _read_request(conn):
                return
            conn.sendall(answer)

    return handle


def _pool(port: int, scheme: str = "http", **options: object) -> ConnectionPool:
    url = f"{scheme}://127.0.0.1:{port}/TraceSegments"
    return ConnectionPool(url, timeout=2.0, **options)  # type: ignore[arg-type]


def test_framing_content_length_chunked_and_close() -> None:
    answers = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Amzn-ErrorType: T:x\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'3\r\n{"a\r\n4;x=1\r\n": 1\r\n1\r\n}\r\n0\r\n\r\n',
    )
    for port in _serve(_answer_with(*answers)):
        pool = _pool(port)
        first = pool.request("POST", "/TraceSegments", b"{}", {"Content-Type": "application/json"})
        assert (first.status, first.body, first.headers["x-amzn-errortype"]) == (200, b"{}", "T:x")
        second = pool.request("POST", "/TraceSegments", b"x" * 100_000, {})
        assert second.body == b'{"a": 1}'
        assert len(pool._idle) == 1  # both on one kept-alive connection
        pool.close()
    for port in _serve(_answer_with(b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nbody until close")):
        pool = _pool(port)
        third = pool.request("POST", "/TraceSegments", b"{}", {})
        assert (third.status, third.body) == (500, b"body until close")
        assert pool._idle == []


def test_a_stale_kept_alive_connection_is_replaced_once() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    for port in _serve(_answer_with(ok)):  # answers one request per connection, then hangs up
        pool = _pool(port)
        assert pool.request("POST", "/", b"", {}).status == 200
        assert len(pool._idle) == 1
        assert pool.request("POST", "/", b"", {}).status == 200  # the first attempt hit a closed socket
        pool.close()


def test_garbage_answer_is_an_error() -> None:
    for port in _serve(_answer_with(b"SSH-2.0-OpenSSH\r\n\r\n")):
        with pytest.raises(TransportError, match="not an HTTP response") as info:
            _pool(port).request("POST", "/", b"", {})
        assert info.value.kind == "Other"


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, trustme.CA]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    return server, ca


def test_https_and_https_through_a_connect_proxy(tls: tuple[ssl.SSLContext, trustme.CA]) -> None:
    server_context, ca = tls
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ntls!"
    seen: list[bytes] = []

    def proxy(conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        seen.append(head.split(b"\r\n")[0])
        host, port = head.split()[1].decode().rsplit(":", 1)
        with socket.create_connection((host, int(port))) as upstream:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            sockets = [conn, upstream]
            while True:
                for ready in select.select(sockets, [], [], 2)[0]:
                    data = ready.recv(65536)
                    if not data:
                        return
                    (upstream if ready is conn else conn).sendall(data)

    for port in _serve(_answer_with(ok, ok), server_context):
        pool = _pool(port, "https", verify=True)
        pool._context = ssl.create_default_context()
        ca.configure_trust(pool._context)
        assert pool.request("POST", "/TraceSegments", b"{}", {}).body == b"tls!"
        pool.close()
        unverified = _pool(port, "https", verify=False)  # NoVerifySSL
        assert unverified.request("POST", "/TraceSegments", b"{}", {}).body == b"tls!"
        unverified.close()
        for proxy_port in _serve(proxy):
            tunnelled = _pool(port, "https", verify=False, proxy=f"http://u:p@127.0.0.1:{proxy_port}")
            assert tunnelled.request("POST", "/TraceSegments", b"{}", {}).body == b"tls!"
            tunnelled.close()
        assert seen == [f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode()]


def test_untrusted_certificate_is_refused(tls: tuple[ssl.SSLContext, trustme.CA]) -> None:
    server_context, _ = tls
    for port in _serve(_answer_with(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), server_context):
        with pytest.raises(TransportError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            _pool(port, "https", verify=True).request("POST", "/", b"", {})
