"""Fixtures for the core tests: a fresh recorder and a real UDP receiver."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from k8sxray import _guard, _recorder
from k8sxray._protocol import HEADER


@pytest.fixture(autouse=True)
def _fresh_recorder() -> Iterator[None]:
    _guard.reset()
    _recorder.set_emitter(None)
    yield
    _recorder.set_emitter(None)
    _guard.reset()


class UDPReceiver:
    """A real UDP socket on 127.0.0.1:0 that collects datagrams in the daemon protocol."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.raw: list[bytes] = []

    def documents(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait (bounded) until *count* datagrams arrived; every one must carry the header."""
        deadline = time.monotonic() + timeout
        while len(self.raw) < count and time.monotonic() < deadline:
            _recorder.flush(0.1)
            try:
                self.raw.append(self.sock.recv(70000))
            except TimeoutError:
                continue
        for datagram in self.raw:
            assert datagram.startswith(HEADER)
        return [json.loads(d[len(HEADER) :]) for d in self.raw]

    def quiet(self, wait: float = 0.2) -> list[bytes]:
        """Datagrams arriving within *wait* seconds (to assert that nothing was sent)."""
        _recorder.flush(0.1)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                self.raw.append(self.sock.recv(70000))
            except TimeoutError:
                continue
        return self.raw

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def receiver() -> Iterator[UDPReceiver]:
    rx = UDPReceiver()
    yield rx
    rx.close()
