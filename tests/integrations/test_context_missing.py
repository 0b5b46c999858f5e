"""``AWS_XRAY_CONTEXT_MISSING`` on outgoing calls made outside any traced request, as the SDK's
patched libraries apply it: ``RUNTIME_ERROR`` raises from the call (before anything is sent),
``LOG_ERROR`` and ``IGNORE_ERROR`` let it through; inside a request nothing raises."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import httpx
import pytest
import requests
from moto.server import ThreadedMotoServer

import k8sxray
from k8sxray import _config, _recorder
from k8sxray.integrations import botocore as k_botocore
from k8sxray.integrations import httpx as k_httpx
from k8sxray.integrations import requests as k_requests
from k8sxray.testing import capture_segments

ROOT = "1-5759e988-bd862e3fe1be46a994272793"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.hits = 0  # type: ignore[attr-defined]
    httpd.url = f"http://127.0.0.1:{httpd.server_port}/"  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    yield f"http://{host}:{port}"
    moto.stop()


def _requests_call(server: Any, moto: str) -> Callable[[], Any]:
    return lambda: requests.get(server.url, timeout=5).status_code


def _httpx_call(server: Any, moto: str) -> Callable[[], Any]:
    return lambda: httpx.get(server.url, timeout=5).status_code


def _httpx_async_call(server: Any, moto: str) -> Callable[[], Any]:
    async def call() -> int:
        async with httpx.AsyncClient() as client:
            return (await client.get(server.url, timeout=5)).status_code

    return lambda: asyncio.run(call())


def _botocore_call(server: Any, moto: str) -> Callable[[], Any]:
    sqs = boto3.client(
        "sqs",
        region_name="eu-west-1",
        endpoint_url=moto,
        aws_access_key_id="testing",
        aws_secret_access_key="testing-secret",
    )

    def count(**_: Any) -> None:
        server.hits += 1  # counted when botocore is about to send

    sqs.meta.events.register("before-send", count)
    return lambda: sqs.list_queues()["ResponseMetadata"]["HTTPStatusCode"]


CALLS = {
    "requests": (k_requests, _requests_call),
    "httpx": (k_httpx, _httpx_call),
    "httpx-async": (k_httpx, _httpx_async_call),
    "botocore": (k_botocore, _botocore_call),
}


@contextmanager
def in_request(sampled: str) -> Iterator[None]:
    segment = _recorder.start_request(f"Root={ROOT};Sampled={sampled}", "a", "GET", "/", time.time())
    assert segment is not None
    try:
        yield
    finally:
        _recorder.end_segment(segment)


@pytest.mark.parametrize("library", sorted(CALLS))
def test_runtime_error_raises_from_calls_outside_requests(
    library: str, server: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_xray_sdk.core.exceptions.exceptions import SegmentNotFoundException

    integration, make = CALLS[library]
    monkeypatch.setenv("AWS_XRAY_CONTEXT_MISSING", "RUNTIME_ERROR")  # the SDK's variable, its meaning
    _config.configure(daemon_address="127.0.0.1:9", sampling_rate=1.0, plugins=())
    assert _config.current().context_missing == "RUNTIME_ERROR"
    integration.instrument()
    try:
        call = make(server, moto_endpoint)
        hits = server.hits
        with pytest.raises(k8sxray.ContextMissingError, match=r"outside a traced request") as info:
            call()
        assert isinstance(info.value, SegmentNotFoundException)  # what the SDK's patches raise
        assert server.hits == hits  # raised before anything was sent
        with capture_segments() as documents:
            for sampled in ("1", "0"):  # inside a request, sampled or not: the call goes through
                with in_request(sampled):
                    assert call() == 200
        assert server.hits == hits + 2
        (doc,) = documents
        assert len(doc["subsegments"]) == 1
        _config.configure(daemon_address="127.0.0.1:9", context_missing="LOG_ERROR", plugins=())
        assert call() == 200  # LOG_ERROR: logged, and the call goes through
        _config.configure(daemon_address="127.0.0.1:9", context_missing="IGNORE_ERROR", plugins=())
        assert call() == 200
    finally:
        integration.uninstrument()
