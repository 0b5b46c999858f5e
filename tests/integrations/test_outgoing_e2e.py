"""Service-A (Flask, WSGI, werkzeug) calls Service-B (Starlette, ASGI, uvicorn in its own process).

Both are instrumented and send to one real UDP socket; the test asserts they form one
trace through requests, httpx and httpx's AsyncClient.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import flask
import httpx
import pytest
import requests
from werkzeug.serving import make_server

import k8sxray
from k8sxray import _autoinstrument, _recorder

SERVICE_B = textwrap.dedent(
    """
    import socket, sys
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    import k8sxray

    async def hello(request):
        return JSONResponse({"trace": request.headers.getlist("x-amzn-trace-id")})

    app = k8sxray.instrument(Starlette(routes=[Route("/hello", hello)]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])
    """
)


class Receiver:
    """A real UDP socket playing the daemon: collects the documents that arrive."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.documents: list[dict[str, Any]] = []

    def wait(self, predicate: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not predicate(self.documents) and time.monotonic() < deadline:
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            header, _, body = data.partition(b"\n")
            assert json.loads(header) == {"format": "json", "version": 1}
            self.documents.append(json.loads(body))
        return self.documents


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.sock.close()


@pytest.fixture(scope="module")
def service_b(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    script = tmp_path_factory.mktemp("b") / "service_b.py"
    script.write_text(SERVICE_B)
    env = {
        **os.environ,
        "AWS_XRAY_DAEMON_ADDRESS": receiver.address,
        "AWS_XRAY_TRACING_NAME": "service-b",
        "K8SXRAY_PLUGINS": "none",
        "K8SXRAY_SAMPLING_CENTRAL": "false",
    }
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def service_a(receiver: Receiver, service_b: str) -> Iterator[str]:
    app = flask.Flask("service_a")

    @app.get("/call/<client>")
    def call(client: str) -> Any:
        url = f"{service_b}/hello"
        if client == "requests":
            answer = requests.get(url, timeout=5).json()
        elif client == "httpx":
            with httpx.Client() as c:
                answer = c.get(url).json()
        else:

            async def fetch() -> Any:
                async with httpx.AsyncClient() as c:
                    return (await c.get(url)).json()

            answer = asyncio.run(fetch())
        return answer

    server = make_server("127.0.0.1", 0, k8sxray.instrument(app), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    _autoinstrument.uninstrument_integrations()


@pytest.fixture
def configured(receiver: Receiver) -> None:
    # function scope: the autouse fixture resets the configuration around every test
    k8sxray.configure(
        daemon_address=receiver.address,
        service_name="service-a",
        sampling_rate=1.0,
        plugins=[],
        sampling_central=False,
    )


@pytest.mark.parametrize("client", ["requests", "httpx", "httpx-async"])
def test_one_trace_across_both_services(
    client: str, service_a: str, service_b: str, configured: None, receiver: Receiver
) -> None:
    with urllib.request.urlopen(f"{service_a}/call/{client}", timeout=10) as response:
        answer = json.loads(response.read())
    (sent_header,) = answer["trace"]  # B received exactly one X-Amzn-Trace-Id
    root = sent_header.split(";")[0].removeprefix("Root=")
    _recorder.flush(1.0)

    def both(docs: list[dict[str, Any]]) -> bool:
        names = {d["name"] for d in docs if d.get("trace_id") == root}
        return {"service-a", "service-b"} <= names

    documents = [d for d in receiver.wait(both) if d.get("trace_id") == root]
    a = next(d for d in documents if d["name"] == "service-a")
    b = next(d for d in documents if d["name"] == "service-b")
    (call,) = a["subsegments"]
    assert call["namespace"] == "remote"
    assert call["name"] == "127.0.0.1"
    assert call["http"]["request"]["url"] == f"{service_b}/hello"
    assert call["http"]["response"]["status"] == 200
    assert b["parent_id"] == call["id"]
    assert b["trace_id"] == a["trace_id"] == root
    assert sent_header == f"Root={root};Parent={call['id']};Sampled=1"
    assert "parent_id" not in a
    assert b["http"]["response"]["status"] == 200


def test_an_unsampled_trace_stays_unsampled_downstream(
    service_a: str, service_b: str, configured: None, receiver: Receiver
) -> None:
    root = "1-5759e988-bd862e3fe1be46a994272794"
    request = urllib.request.Request(
        f"{service_a}/call/httpx", headers={"X-Amzn-Trace-Id": f"Root={root};Sampled=0"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["trace"] == [f"Root={root};Sampled=0"]  # B was told, and continues the same trace
    _recorder.flush(1.0)
    documents = receiver.wait(lambda docs: any(d.get("trace_id") == root for d in docs), timeout=1.0)
    assert [d for d in documents if d.get("trace_id") == root] == []  # neither A nor B sent a segment
