"""Fixtures for k8sxray-run tests: a UDP 'daemon', a downstream HTTP server, a launcher."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .helpers import APPS, BIN, LOGSITE, Launched, Receiver, _Downstream


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.sock.close()


@pytest.fixture
def downstream() -> Iterator[Any]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Downstream)
    httpd.daemon_threads = True
    httpd.seen = []  # type: ignore[attr-defined]
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def env(receiver: Receiver, downstream: Any) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY", "K8SXRAY"))}
    return {
        **base,
        "PATH": BIN + os.pathsep + base.get("PATH", ""),
        # k8sxray from this checkout (not whichever is installed), the logger named on log lines
        "PYTHONPATH": os.pathsep.join([str(LOGSITE), *filter(None, [base.get("PYTHONPATH")])]),
        "AWS_XRAY_DAEMON_ADDRESS": receiver.address,
        "AWS_XRAY_TRACING_NAME": "zero-code",
        "K8SXRAY_SAMPLING_RATE": "1",
        "K8SXRAY_SAMPLING_CENTRAL": "false",
        "K8SXRAY_PLUGINS": "none",
        "DOWNSTREAM": downstream.url,
    }


@pytest.fixture
def launch() -> Iterator[Callable[..., Launched]]:
    started: list[Launched] = []

    def start(args: list[str], env: dict[str, str], *, zero_code: bool = True, **kwargs: Any) -> Launched:
        """Start *args* under k8sxray-run (``zero_code=False``: as they are)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "k8sxray.run", *args] if zero_code else args,
            env=env,
            cwd=APPS,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,
        )
        launched = Launched(proc)
        started.append(launched)
        return launched

    yield start
    for launched in started:
        launched.stop()
