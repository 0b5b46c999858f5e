"""The examples run, and produce the segments their comments and examples/README.md promise."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

import k8sxray
from k8sxray.testing import capture_segments

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def check(segments: list[dict[str, object]], body: object) -> None:
    assert body == {"order": 42, "total": 126}
    [segment] = segments
    assert segment["annotations"] == {"order_id": 42}
    assert [sub["name"] for sub in segment["subsegments"]] == ["load-order"]  # type: ignore[index,union-attr]
    assert segment["http"]["response"]["status"] == 200  # type: ignore[index]


def test_flask_example() -> None:
    k8sxray.configure(sampling_rate=1, environ={})
    app = load("flask_app").app
    with capture_segments() as segments:
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://shop") as client:
            body = client.get("/orders/42").json()
        k8sxray.flush()
    check(segments, body)


def test_fastapi_example() -> None:
    k8sxray.configure(sampling_rate=1, environ={})
    app = load("fastapi_app").app

    async def call() -> object:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            return (await client.get("/orders/42")).json()

    with capture_segments() as segments:
        body = asyncio.run(call())
        k8sxray.flush()
    check(segments, body)


# --- the blog's demo: Service-A (Flask) calls Service-B (FastAPI) --------------------------------

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unsampled_get(url: str, timeout: float = 30.0) -> int:
    """GET ``url`` once the server answers, asked with ``Sampled=0`` so that no segment comes of it."""
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
    deadline = time.monotonic() + timeout
    while True:
        try:
            request = urllib.request.Request(url, headers={"X-Amzn-Trace-Id": header})
            with urllib.request.urlopen(request, timeout=5) as answer:
                return int(answer.status)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def daemon_socket() -> Iterator[socket.socket]:
    """A real UDP socket playing the daemon."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        yield sock


def collect(sock: socket.socket, wanted: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(documents) < wanted and time.monotonic() < deadline:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            continue
        documents.append(json.loads(data.partition(b"\n")[2]))
    return documents


# The commands examples/README.md shows, on free ports: traced with one line, and with k8sxray-run.
VARIANTS = {
    "one line": (
        ["uvicorn", "examples.service_b.app:app", "--port", "{b}"],
        ["gunicorn", "examples.service_a.app:app", "-b", "127.0.0.1:{a}"],
    ),
    "k8sxray-run": (
        ["k8sxray-run", "uvicorn", "k8sxray.demo.service_b:app", "--port", "{b}"],
        ["k8sxray-run", "gunicorn", "k8sxray.demo.service_a:app", "-b", "127.0.0.1:{a}"],
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_service_a_calls_service_b_in_one_trace(variant: str, daemon_socket: socket.socket) -> None:
    a_port, b_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY_", "K8SXRAY_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        NO_PROXY="127.0.0.1,localhost",
        K8SXRAY_SAMPLING_RATE="1",
        AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{daemon_socket.getsockname()[1]}",
    )
    b_argv, a_argv = ([part.format(a=a_port, b=b_port) for part in argv] for argv in VARIANTS[variant])
    started = []
    try:
        started.append(subprocess.Popen(b_argv, cwd=ROOT, env={**env, "AWS_XRAY_TRACING_NAME": "service-b"}))
        started.append(
            subprocess.Popen(
                a_argv,
                cwd=ROOT,
                env={
                    **env,
                    "AWS_XRAY_TRACING_NAME": "service-a",
                    "SERVICE_B_URL": f"http://127.0.0.1:{b_port}",
                },
            )
        )
        assert unsampled_get(f"http://127.0.0.1:{b_port}/healthz") == 200
        assert unsampled_get(f"http://127.0.0.1:{a_port}/healthz") == 200
        answers = {path: get(f"http://127.0.0.1:{a_port}{path}") for path in ("/orders/7", "/prices/8")}
        documents = collect(daemon_socket, wanted=4)
    finally:
        for proc in started:
            proc.terminate()
        for proc in started:
            proc.wait(15)

    by_name: dict[str, list[dict[str, Any]]] = {}
    for doc in documents:
        by_name.setdefault(doc["name"], []).append(doc)
    assert sorted(by_name) == ["service-a", "service-b"]
    for path, (status, body) in answers.items():
        assert body["service"] == "service-a"
        [a] = [d for d in by_name["service-a"] if d["http"]["request"]["url"].endswith(path)]
        [b] = [d for d in by_name["service-b"] if d["trace_id"] == a["trace_id"]]
        [call] = a["subsegments"]
        assert call["namespace"] == "remote"
        assert call["http"]["request"]["url"] == f"http://127.0.0.1:{b_port}{path}"
        assert b["parent_id"] == call["id"]
        assert a["http"]["response"]["status"] == b["http"]["response"]["status"] == status
        assert a["annotations"] == {("order_id" if "orders" in path else "item_id"): int(path[-1])}
        if status == 200:
            assert 20 <= body["service_b"]["delay_ms"] <= 300
            assert b["end_time"] - b["start_time"] >= 0.02
        elif status == 500:
            assert b["cause"]["exceptions"][0]["type"] == "StockSystemDown"
        else:
            assert status == 403


@pytest.mark.parametrize(
    ("forbidden", "fault", "status"), [(0.0, 0.0, 200), (1.0, 0.0, 403), (0.0, 1.0, 500)]
)
def test_service_b_answers_200_403_or_500(
    forbidden: float, fault: float, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from k8sxray.demo import service_b

    monkeypatch.setattr(service_b, "FORBIDDEN_SHARE", forbidden)
    monkeypatch.setattr(service_b, "FAULT_SHARE", fault)
    monkeypatch.setattr(service_b, "DELAY_MS", (20, 20))

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=service_b.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
            return await client.get("/orders/3")

    started = time.perf_counter()
    answer = asyncio.run(call())
    assert time.perf_counter() - started >= 0.02
    assert answer.status_code == status
    if status == 200:
        assert answer.json() == {"service": "service-b", "order": 3, "delay_ms": 20}


def test_service_a_says_502_when_service_b_is_away(monkeypatch: pytest.MonkeyPatch) -> None:
    from k8sxray.demo import service_a

    monkeypatch.setenv("SERVICE_B_URL", f"http://127.0.0.1:{free_port()}")
    client = service_a.app.test_client()
    for path in ("/orders/1", "/prices/1"):
        answer = client.get(path)
        assert answer.status_code == 502
        assert "service-b unreachable" in answer.get_json()["service_b"]
