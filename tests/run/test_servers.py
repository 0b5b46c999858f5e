"""`k8sxray-run` as a real subprocess: gunicorn (2 workers), uvicorn (2 workers), a plain script."""

from __future__ import annotations

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from .helpers import Receiver, free_port, get, k8sxray_lines


def _pids_of(documents: list[dict[str, Any]]) -> set[str]:
    """The worker pid each segment's outgoing call carried in its URL (/pid/<pid>)."""
    pids = set()
    for doc in documents:
        for sub in doc.get("subsegments", []):
            match = re.search(r"/pid/(\d+)$", sub.get("http", {}).get("request", {}).get("url", ""))
            if match:
                pids.add(match.group(1))
    return pids


def _hit_until_two_workers(url: str) -> set[str]:
    pids: set[str] = set()
    with ThreadPoolExecutor(6) as pool:
        for _ in range(10):  # bounded: 10 rounds of 6 concurrent requests
            pids |= {pid for _, pid, _ in pool.map(lambda _: get(url), range(6))}
            if len(pids) >= 2:
                break
    return pids


def _assert_traced_segments(receiver: Receiver, pids: set[str], downstream: Any) -> None:
    documents = receiver.collect(lambda docs: _pids_of(docs) >= pids, timeout=10)
    assert _pids_of(documents) >= pids  # segments arrived from every worker
    segment = documents[0]
    assert segment["name"] == "zero-code"
    assert segment["http"]["request"]["method"] == "GET"
    (call,) = segment["subsegments"]
    assert call["namespace"] == "remote"
    # the downstream got exactly one trace header, pointing at the call's subsegment
    expected = [f"Root={segment['trace_id']};Parent={call['id']};Sampled=1"]
    assert expected in [header for _, header in downstream.seen]


@pytest.mark.parametrize("preload", [[], ["--preload"]], ids=["", "preload"])
def test_gunicorn_two_workers(
    preload: list[str], receiver: Receiver, downstream: Any, env: dict[str, str], launch: Any
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    env["APP_DELAY"] = "0.05"
    app = launch(
        [
            "gunicorn",
            "-w",
            "2",
            "-b",
            f"fd://{sock.fileno()}",
            "--log-level",
            "warning",
            *preload,
            "wsgi_app:app",
        ],
        env,
        pass_fds=(sock.fileno(),),
    )
    sock.close()
    pids = _hit_until_two_workers(f"http://127.0.0.1:{port}/")
    assert len(pids) == 2, app.stop()
    _assert_traced_segments(receiver, pids, downstream)
    assert k8sxray_lines(app.stop()) == []  # no warnings


def test_uvicorn_two_workers(receiver: Receiver, downstream: Any, env: dict[str, str], launch: Any) -> None:
    port = free_port()
    env["APP_DELAY"] = "0.05"
    app = launch(
        ["uvicorn", "asgi_app:app", "--port", str(port), "--workers", "2", "--log-level", "warning"], env
    )
    pids = _hit_until_two_workers(f"http://127.0.0.1:{port}/")
    assert len(pids) == 2, app.stop()
    _assert_traced_segments(receiver, pids, downstream)
    assert k8sxray_lines(app.stop()) == []


@pytest.mark.parametrize("script", ["script_app.py", "uvicorn_script.py"])
def test_plain_script(
    script: str, receiver: Receiver, downstream: Any, env: dict[str, str], launch: Any
) -> None:
    app = launch(["python", script], env)
    assert app.proc.stdout is not None
    port = int(app.proc.stdout.readline())
    assert app.proc.stdout.readline().strip() == "sitecustomize: k8sxray"
    status, _, pid = get(f"http://127.0.0.1:{port}/")
    assert status == 200
    _assert_traced_segments(receiver, {pid}, downstream)
    assert k8sxray_lines(app.stop()) == []


def test_flask_run(receiver: Receiver, downstream: Any, env: dict[str, str], launch: Any) -> None:
    port = free_port()
    app = launch(["flask", "--app", "script_app", "run", "--port", str(port)], env)
    status, _, pid = get(f"http://127.0.0.1:{port}/")
    assert status == 200
    _assert_traced_segments(receiver, {pid}, downstream)
    assert k8sxray_lines(app.stop()) == []


def test_django_runserver(receiver: Receiver, downstream: Any, env: dict[str, str], launch: Any) -> None:
    port = free_port()
    app = launch(["python", "django_manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"], env)
    status, _, pid = get(f"http://127.0.0.1:{port}/")
    assert status == 200
    _assert_traced_segments(receiver, {pid}, downstream)
    assert k8sxray_lines(app.stop()) == []


def test_disabled_sdk_emits_nothing(
    receiver: Receiver, downstream: Any, env: dict[str, str], launch: Any
) -> None:
    env["AWS_XRAY_SDK_ENABLED"] = "false"
    app = launch(["python", "script_app.py"], env)
    assert app.proc.stdout is not None
    port = int(app.proc.stdout.readline())
    assert app.proc.stdout.readline().strip() == "sitecustomize: none"
    assert get(f"http://127.0.0.1:{port}/")[0] == 200
    time.sleep(0.5)
    assert receiver.collect(bool, timeout=0.5) == []
    assert downstream.seen
    assert downstream.seen[0][1] is None  # no header sent either
    assert k8sxray_lines(app.stop()) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("K8SXRAY_DISABLED_INTEGRATIONS", "requests,no-such-thing"), ("K8SXRAY_SAMPLING_RATE", "lots")],
)
def test_bootstrap_failure_starts_the_app_untraced(  # noqa: PLR0917  # pytest passes fixtures positionally
    name: str, value: str, receiver: Receiver, downstream: Any, env: dict[str, str], launch: Any
) -> None:
    env[name] = value
    app = launch(["python", "script_app.py"], env)
    assert app.proc.stdout is not None
    port = int(app.proc.stdout.readline())
    assert get(f"http://127.0.0.1:{port}/")[0] == 200
    assert receiver.collect(bool, timeout=0.5) == []
    lines = k8sxray_lines(app.stop())
    assert len(lines) == 1, lines
    assert "tracing is off" in lines[0]
    assert name in lines[0]
    assert value in lines[0]
