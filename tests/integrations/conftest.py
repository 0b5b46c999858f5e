"""Real parts for integration tests: a UDP "daemon" socket and servers on loopback."""

from __future__ import annotations

import http.client as httplib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import k8sxray
from k8sxray import _guard, _recorder
from k8sxray._protocol import HEADER
from k8sxray.integrations import INTEGRATIONS


class UDPDaemon:
    """A real UDP socket on 127.0.0.1:0 standing in for the daemon."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.raw: list[bytes] = []

    def _pull(self, until: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            _recorder.flush(0.1)
            try:
                self.raw.append(self.sock.recv(70000))
            except TimeoutError:
                continue

    def documents(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait (bounded) for *count* datagrams; each must start with the protocol header."""
        self._pull(lambda: len(self.raw) >= count, timeout)
        for datagram in self.raw:
            assert datagram.startswith(HEADER), datagram[:80]
        return [json.loads(d[len(HEADER) :]) for d in self.raw]

    def segments(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Like :meth:`documents`, sorted by start time."""
        return sorted(self.documents(count, timeout), key=lambda d: d["start_time"])

    def quiet(self, wait: float = 0.3) -> list[dict[str, Any]]:
        """Everything that arrives within *wait* seconds (to assert that nothing was sent)."""
        deadline = time.monotonic() + wait
        self._pull(lambda: time.monotonic() >= deadline, wait + 1)
        return [json.loads(d.partition(b"\n")[2]) for d in self.raw]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def daemon() -> Iterator[UDPDaemon]:
    rx = UDPDaemon()
    _guard.reset()
    yield rx
    _recorder.set_emitter(None)
    rx.close()


def configure_for(daemon: UDPDaemon, **options: Any) -> k8sxray.Config:
    """Configure k8sxray to send to *daemon*, sampling everything, no plugins or integrations."""
    settings: dict[str, Any] = {
        "service_name": "svc",
        "daemon_address": daemon.address,
        "sampling_rate": 1.0,
        "plugins": (),
        "disabled_integrations": list(INTEGRATIONS),
    }
    settings.update(options)
    return k8sxray.configure(**settings)


class Response:
    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes,
        raw_headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.raw_headers = raw_headers or list(headers.items())
        """Every header as sent, in order (``headers`` keeps the last of each name)."""

    def all(self, name: str) -> list[str]:
        """The values of every header called *name* (in any case)."""
        return [value for key, value in self.raw_headers if key.lower() == name.lower()]


def request(base: str, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Response:
    """One real HTTP request with http.client (never patched by k8sxray's integrations)."""
    host, _, port = base.removeprefix("http://").partition(":")
    conn = httplib.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        raw = resp.getheaders()
        return Response(resp.status, {k.lower(): v for k, v in raw}, body, raw)
    finally:
        conn.close()


@contextmanager
def wsgi_server(app: Any) -> Iterator[str]:
    """Serve *app* with werkzeug's threaded server on 127.0.0.1:0; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def asgi_server(app: Any, lifespan: str = "off") -> Iterator[str]:
    """Serve *app* with uvicorn (in a thread) on 127.0.0.1:0; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def serve_wsgi() -> Callable[[Any], Any]:
    """``with serve_wsgi(app) as base_url: ...`` (werkzeug, threaded)."""
    return wsgi_server


@pytest.fixture
def serve_asgi() -> Callable[..., Any]:
    """``with serve_asgi(app, lifespan="off") as base_url: ...`` (uvicorn in a thread)."""
    return asgi_server


@pytest.fixture
def http() -> Callable[..., Response]:
    """``http(base_url, path, headers=None, method="GET") -> Response`` with http.client."""
    return request


@pytest.fixture
def configure_to(daemon: UDPDaemon) -> Callable[..., k8sxray.Config]:
    """``configure_to(**options)``: configure k8sxray to send to the ``daemon`` fixture."""
    return lambda **options: configure_for(daemon, **options)


@pytest.fixture(params=["native", "python"])
def wsgi_entry(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a WSGI test with each entry ``instrument()`` can choose: the C one
    (``k8sxray._native``, the default when it is built) and the Python one."""
    from k8sxray.integrations import wsgi

    if request.param == "native" and wsgi._native is None:
        pytest.skip("k8sxray._native is not built (no C compiler at install time)")
    monkeypatch.setattr(wsgi, "NATIVE", request.param == "native")
    return str(request.param)
