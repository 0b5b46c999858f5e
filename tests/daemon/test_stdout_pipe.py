"""``--sink stdout`` as documented: the real daemon piped into a real reader, real UDP datagrams."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_helpers import AWS_ENV, HEADER, DaemonProcess, FakeXRay, free_tcp_port, segment

_READY = re.compile(r"receiving segments on udp ([0-9.]+):(\d+)")

READ_ONE_LINE = "import json, sys; json.loads(sys.stdin.readline())"
"""A reader that leaves after the first line, as ``| head -1`` or a crashed consumer does."""

READ_JSON_LINES = (
    "import json, sys\n"
    "names = [json.loads(line)['name'] for line in sys.stdin]\n"
    "print(len(names), ' '.join(names))\n"
)
"""What ``| jq .name`` does: every line must parse as a JSON object."""


class Pipeline:
    """``python -m k8sxray.daemon --sink stdout ... | python -c READER``."""

    def __init__(self, reader: str, *args: str) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix="k8sxray-", suffix=".log", delete=False)  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        daemon_argv = [sys.executable, "-m", "k8sxray.daemon", "--sink", "stdout", "-b", "127.0.0.1:0"]
        daemon_argv += ["-t", "off", "--http", "off", "--flush-interval", "0.01", *args]
        self.daemon = subprocess.Popen(
            daemon_argv, stdout=subprocess.PIPE, stderr=self._log, env=env, cwd=tempfile.gettempdir()
        )
        self.reader = subprocess.Popen(
            [sys.executable, "-c", reader], stdin=self.daemon.stdout, stdout=subprocess.PIPE, text=True
        )
        assert self.daemon.stdout is not None
        self.daemon.stdout.close()  # the reader holds the only read end
        self.port = self._wait_ready()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    @property
    def log(self) -> str:
        return Path(self._log.name).read_text()

    def _wait_ready(self) -> int:
        deadline = time.monotonic() + 15
        while not (match := _READY.search(self.log)):
            assert self.daemon.poll() is None, self.log
            assert time.monotonic() < deadline, self.log
            time.sleep(0.02)
        return int(match.group(2))

    def send(self, payload: bytes) -> None:
        self.sock.sendto(payload, ("127.0.0.1", self.port))

    def close(self) -> None:
        for proc in (self.daemon, self.reader):
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
        assert self.reader.stdout is not None
        self.reader.stdout.close()
        self.sock.close()
        self._log.close()
        os.unlink(self._log.name)


@pytest.fixture
def pipeline() -> Iterator[list[Pipeline]]:
    made: list[Pipeline] = []
    yield made
    for p in made:
        p.close()


def test_a_reader_that_goes_away_stops_the_daemon_with_an_error(pipeline: list[Pipeline]) -> None:
    p = Pipeline(READ_ONE_LINE)
    pipeline.append(p)
    p.send(HEADER + segment(0))
    assert p.reader.wait(10) == 0
    # Keep sending, as apps do: the next write meets the closed pipe and the daemon stops itself.
    deadline = time.monotonic() + 10
    i = 1
    while p.daemon.poll() is None:
        assert time.monotonic() < deadline, p.log
        p.send(HEADER + segment(i))
        i += 1
        time.sleep(0.02)
    assert p.daemon.returncode == 1
    log = p.log
    assert (
        log.count("standard output is closed (Broken pipe): the stdout sink can take no more segments") == 1
    )
    assert re.search(r"\[ERROR\].*stopped after [0-9.]+ s \(standard output is closed", log), log
    assert "segments could not be shipped" in log
    assert "everything buffered was shipped" not in log
    assert "retrying" not in log
    assert "Traceback" not in log
    assert "Exception ignored" not in log


@pytest.mark.parametrize(
    "bad",
    [
        b'{"name": "broken", }',  # starts with { and ends with }, yet is not JSON
        b'{"name": "raw\nline break"}',  # a raw line break inside a string is not JSON either
        b'{"name": "\xff"}',  # not UTF-8
        b'{"a":' * 10000 + b"1" + b"}" * 10000,  # deeper than the parser goes
        b'{"name": 1e400} trailing}',
    ],
    ids=["trailing-comma", "raw-newline", "not-utf8", "deep", "trailing-garbage"],
)
def test_a_bad_body_among_good_ones_does_not_break_a_json_lines_reader(
    pipeline: list[Pipeline], bad: bytes
) -> None:
    p = Pipeline(READ_JSON_LINES, "-l", "debug")
    pipeline.append(p)
    for i in range(3):
        p.send(HEADER + segment(i))
    p.send(HEADER + bad)
    for i in range(3, 6):
        p.send(HEADER + segment(i))
    deadline = time.monotonic() + 10
    while "refused a datagram (not_json)" not in p.log:
        assert time.monotonic() < deadline, p.log
        time.sleep(0.02)
    time.sleep(0.3)  # the good ones after it are written too
    p.daemon.send_signal(signal.SIGTERM)
    assert p.daemon.wait(15) == 0
    out, _ = p.reader.communicate(timeout=10)
    assert p.reader.returncode == 0, out
    assert out.split() == ["6"] + ["svc"] * 6
    assert "received 6, sent 6, rejected 1," in p.log


def test_documents_in_retry_are_counted_in_the_metrics_and_the_shutdown_report(
    fake_xray: FakeXRay, start_daemon: Callable[..., DaemonProcess]
) -> None:
    fake_xray.behaviour = lambda docs: (503, {"message": "unavailable"}, 0.0)
    http = free_tcp_port()
    daemon = start_daemon(
        [
            "--endpoint-url",
            fake_xray.url,
            "-n",
            "us-east-1",
            "--no-telemetry",
            "--http",
            f"127.0.0.1:{http}",
            "--shutdown-timeout",
            "1",
            "--flush-interval",
            "0.01",
        ],
        AWS_ENV,
    )
    daemon.send_docs([segment(0), segment(1)])
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        if re.search(r"k8sxray_daemon_segments_retried_total [1-9]", metrics):
            break
        assert time.monotonic() < deadline, metrics
        time.sleep(0.05)
    assert "k8sxray_daemon_buffer_documents 2" in metrics  # waiting for a retry, not in the queue
    assert daemon.stop() == 0
    assert "shutting down: shipping 2 segments" in daemon.log
    assert "stopped after" in daemon.log
    assert ": 2 segments could not be shipped" in daemon.log
