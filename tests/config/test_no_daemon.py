"""When no daemon listens where segments go, one warning says where that address came from.

Real sockets on loopback: a port nobody listens on answers each datagram with ICMP "port
unreachable", which the next send on the connected socket reports as ``ECONNREFUSED``.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

import k8sxray
from k8sxray import _guard
from k8sxray._discovery import discover


def _app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture
def closed_port() -> int:
    """A UDP port on loopback that nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _fresh_guard() -> Iterator[None]:
    _guard.reset()
    yield
    _guard.reset()


def _serve(app: Any, requests: int) -> None:
    for _ in range(requests):
        environ: dict[str, Any] = {}
        setup_testing_defaults(environ)
        assert b"".join(app(environ, lambda *args: None)) == b"ok"
        k8sxray.flush()
        time.sleep(0.05)  # the ICMP answer arrives; the next send reports it


def _configure(address: str) -> None:
    k8sxray.configure(
        environ={
            "AWS_XRAY_DAEMON_ADDRESS": address,
            "K8SXRAY_SAMPLING_RATE": "1",
            "K8SXRAY_SAMPLING_CENTRAL": "false",
            "K8SXRAY_PLUGINS": "none",
        }
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_refused_address_is_named_once_with_its_source(
    host: str, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    _configure(f"{host}:{closed_port}")
    app = k8sxray.instrument(_app)
    with caplog.at_level(logging.WARNING, logger="k8sxray"):
        _serve(app, 4)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("k8sxray")]
    assert len(messages) == 1, messages  # once, not once per lost segment
    (message,) = messages
    assert f"no X-Ray daemon listens at {host}:{closed_port}" in message
    assert "set by AWS_XRAY_DAEMON_ADDRESS" in message
    if host == "localhost":
        assert f"{host}:{closed_port} (" in message  # and the address it resolved to
    assert caplog.records[0].levelno == logging.WARNING


def test_nothing_is_said_while_a_daemon_listens(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon:
        daemon.bind(("127.0.0.1", 0))
        _configure(f"127.0.0.1:{daemon.getsockname()[1]}")
        app = k8sxray.instrument(_app)
        with caplog.at_level(logging.DEBUG, logger="k8sxray"):
            _serve(app, 4)
        daemon.settimeout(2)
        assert daemon.recv(65535).startswith(b'{"format": "json", "version": 1}\n')
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_the_default_address_says_it_is_the_default(caplog: pytest.LogCaptureFixture) -> None:
    endpoint = discover({})  # not on Kubernetes: loopback
    with caplog.at_level(logging.WARNING, logger="k8sxray"):
        endpoint.refused()
        endpoint.refused()
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "k8sxray: no X-Ray daemon listens at 127.0.0.1:2000 (UDP), the default: not on Kubernetes "
        "(KUBERNETES_SERVICE_HOST is not set); segments sent there are lost."
    )
