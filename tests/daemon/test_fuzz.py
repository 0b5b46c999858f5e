"""Arbitrary bytes at the UDP port and the TCP (sampling proxy) port: the daemon keeps running and
ships the valid segments sent in between."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator

import pytest
from daemon_helpers import AWS_ENV, HEADER, DaemonProcess, FakeXRay, segment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[DaemonProcess, FakeXRay, int]]:
    fake = FakeXRay()
    daemon = DaemonProcess(
        [
            "--endpoint-url",
            fake.url,
            "-n",
            "us-east-1",
            "--no-telemetry",
            "--flush-interval",
            "0.01",
            "-t",
            "127.0.0.1:0",
        ],
        AWS_ENV,
    )
    daemon.wait_log("sampling proxy listening")
    match = re.search(r"sampling proxy listening on [0-9.]+:(\d+)", daemon.log)
    assert match, daemon.log
    yield daemon, fake, int(match.group(1))
    assert daemon.stop() == 0
    fake.close()


_COUNTER = iter(range(1, 1 << 30))

datagrams = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=512).map(lambda b: HEADER + b),
    st.binary(max_size=512).map(lambda b: b'{"format":"json","version":1}\n' + b),
    st.text(max_size=200).map(lambda t: HEADER + t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"",
            b"\n",
            HEADER,
            HEADER + b"{",
            HEADER + b"}",
            b"{\n}",
            b"\xff" * 100,
            b'{"format": "json", "version": 1e0}\n{}',
            b"{" * 1000,
        ]
    ),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.lists(datagrams, min_size=1, max_size=8))
def test_junk_between_valid_segments(running: tuple[DaemonProcess, FakeXRay, int], junk: list[bytes]) -> None:
    daemon, fake, tcp_port = running
    number = next(_COUNTER)
    # the proxy may answer and hang up before everything is written
    with socket.create_connection(("127.0.0.1", tcp_port), timeout=2) as stream, contextlib.suppress(OSError):
        stream.sendall(b"".join(junk))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for payload in junk:
            sock.sendto(payload, ("127.0.0.1", daemon.port))
        sock.sendto(HEADER + segment(number), ("127.0.0.1", daemon.port))
    deadline = time.monotonic() + 5
    while f"{number:016x}" not in fake.ids():
        assert daemon.proc.poll() is None, daemon.log
        assert time.monotonic() < deadline, f"segment {number} not shipped"
        time.sleep(0.005)
