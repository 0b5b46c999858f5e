"""Fixtures for the daemon's tests (the helpers themselves are in daemon_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from daemon_helpers import DaemonProcess, FakeXRay


@pytest.fixture
def start_daemon() -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> DaemonProcess:
        daemon = DaemonProcess(args, env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


@pytest.fixture
def fake_xray() -> Iterator[FakeXRay]:
    fake = FakeXRay()
    yield fake
    fake.close()
