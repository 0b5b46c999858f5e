"""Outgoing W3C ``traceparent``/``tracestate`` beside ``X-Amzn-Trace-Id``: requests, httpx and
botocore against a loopback server that answers with the trace headers it was sent."""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import httpx
import pytest
import requests

from k8sxray import _config, _recorder
from k8sxray.integrations import botocore as k_botocore
from k8sxray.integrations import httpx as k_httpx
from k8sxray.integrations import requests as k_requests
from k8sxray.sampling.sampler import RateSampler
from k8sxray.testing import capture_segments

TRACE = "5759e988bd862e3fe1be46a994272793"
ROOT = "1-5759e988-bd862e3fe1be46a994272793"
SPAN = "53995c3f42cd8ad8"
STATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
NAMES = ("X-Amzn-Trace-Id", "traceparent", "tracestate")
AWS_CALLS: list[dict[str, list[str]]] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _seen(self) -> dict[str, list[str]]:
        return {name: self.headers.get_all(name) or [] for name in NAMES}

    def _answer(self, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "/seen")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._answer(json.dumps(self._seen()).encode())

    def do_POST(self) -> None:  # DynamoDB's JSON protocol, as botocore speaks it
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        AWS_CALLS.append(self._seen())
        self._answer(b'{"TableNames": []}', "application/x-amz-json-1.0")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def _requests_get(url: str, headers: dict[str, str]) -> Any:
    return requests.get(url, headers=headers, timeout=5).json()


def _httpx_get(url: str, headers: dict[str, str]) -> Any:
    with httpx.Client() as client:  # httpx's own transport: the headers go on the wire
        return client.get(url, headers=headers, follow_redirects=True).json()


def _httpx_mounted_get(url: str, headers: dict[str, str]) -> Any:
    with httpx.Client(mounts={"http://": httpx.HTTPTransport()}) as client:  # on the request
        return client.get(url, headers=headers, follow_redirects=True).json()


def _httpx_async_get(url: str, headers: dict[str, str]) -> Any:
    async def get() -> Any:
        async with httpx.AsyncClient() as client:
            return (await client.get(url, headers=headers, follow_redirects=True)).json()

    return asyncio.run(get())


CLIENTS: dict[str, Callable[[str, dict[str, str]], Any]] = {
    "requests": _requests_get,
    "requests-public": _requests_get,
    "httpx": _httpx_get,
    "httpx-mounted": _httpx_mounted_get,
    "httpx-async": _httpx_async_get,
}


@pytest.fixture(params=list(CLIENTS))
def get(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """``get(url, headers={})``: one call with an instrumented client, its answer as JSON."""
    k_requests.instrument()
    k_httpx.instrument()
    if request.param == "requests-public":  # a headers layout that instrument() does not recognise
        monkeypatch.setattr(k_requests, "_fast_headers", None)
    client = CLIENTS[request.param]
    yield lambda url, headers=None: client(url, headers or {})
    k_requests.uninstrument()
    k_httpx.uninstrument()


def configure(**options: Any) -> None:
    _config.configure(daemon_address="127.0.0.1:9", sampling_rate=1.0, plugins=(), **options)


@contextmanager
def in_request(
    header: str | None = None, traceparent: str | None = None, tracestate: str | None = None
) -> Iterator[Any]:
    trace = _recorder.start_request(header, "a", "GET", "/", time.time(), False, traceparent, tracestate)
    assert trace is not None
    try:
        yield trace
    finally:
        _recorder.end_segment(trace)


def test_a_sampled_call_sends_both_headers_naming_its_subsegment(server: str, get: Any) -> None:
    configure()
    with capture_segments() as documents, in_request(traceparent=f"00-{TRACE}-{SPAN}-01", tracestate=STATE):
        seen = get(f"{server}/seen")
    (segment,) = documents
    assert (segment["trace_id"], segment["parent_id"]) == (ROOT, SPAN)
    (sub,) = segment["subsegments"]
    assert seen == {
        "X-Amzn-Trace-Id": [f"Root={ROOT};Parent={sub['id']};Sampled=1"],
        "traceparent": [f"00-{TRACE}-{sub['id']}-01"],
        "tracestate": [STATE],  # unchanged
    }


def test_an_unsampled_call_passes_the_decision_on_in_both(server: str, get: Any) -> None:
    configure()
    with capture_segments() as documents, in_request(f"Root={ROOT};Parent={SPAN};Sampled=0"):
        continued = get(f"{server}/seen")
    assert documents == []
    _recorder.state().sampler = RateSampler(0, 0.0)  # a new trace is not sampled
    with in_request() as new:
        started = get(f"{server}/seen")
    assert continued == {
        "X-Amzn-Trace-Id": [f"Root={ROOT};Parent={SPAN};Sampled=0"],
        "traceparent": [f"00-{TRACE}-{SPAN}-00"],
        "tracestate": [],
    }
    root = new.trace_id
    assert started["X-Amzn-Trace-Id"] == [f"Root={root};Sampled=0"]
    (traceparent,) = started["traceparent"]  # W3C needs a parent id: one of its own
    assert re.fullmatch(rf"00-{root[2:10]}{root[11:]}-[0-9a-f]{{16}}-00", traceparent)
    assert traceparent[36:52] != "0" * 16


@pytest.mark.parametrize(
    ("propagators", "sent"),
    [(["xray"], {"X-Amzn-Trace-Id"}), (["tracecontext"], {"traceparent", "tracestate"})],
)
def test_the_propagators_choose_the_headers(
    server: str, get: Any, propagators: list[str], sent: set[str]
) -> None:
    configure(propagators=propagators)
    with (
        capture_segments() as documents,
        in_request(f"Root={ROOT};Parent={SPAN};Sampled=1", f"00-{TRACE}-{SPAN}-01", STATE),
    ):
        seen = get(f"{server}/seen")
    (sub,) = documents[0]["subsegments"]
    assert {name for name, values in seen.items() if values} == sent
    expected = {
        "X-Amzn-Trace-Id": f"Root={ROOT};Parent={sub['id']};Sampled=1",
        "traceparent": f"00-{TRACE}-{sub['id']}-01",
        "tracestate": STATE,
    }
    assert all(seen[name] == [expected[name]] for name in sent)


@pytest.mark.parametrize(
    "given",
    [
        {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"},
        {"X-Amzn-Trace-Id": "Root=1-11111111-111111111111111111111111;Sampled=1"},
        {"TraceParent": f"00-{'1' * 32}-{'2' * 16}-00", "tracestate": "mine=1"},
    ],
)
def test_a_call_that_carries_a_trace_header_already_is_left_alone(
    server: str, get: Any, given: dict[str, str]
) -> None:
    configure()
    with capture_segments() as documents, in_request(traceparent=f"00-{TRACE}-{SPAN}-01", tracestate=STATE):
        seen = get(f"{server}/seen", given)
    assert documents[0].get("subsegments") is None  # another tracer, or the caller, traces it
    assert seen == {name: [v for k, v in given.items() if k.lower() == name.lower()] for name in NAMES}


def test_a_callers_tracestate_is_kept(server: str, get: Any) -> None:
    configure()
    with capture_segments() as documents, in_request(traceparent=f"00-{TRACE}-{SPAN}-01", tracestate=STATE):
        seen = get(f"{server}/seen", {"tracestate": "mine=1"})
    (sub,) = documents[0]["subsegments"]
    assert seen["traceparent"] == [f"00-{TRACE}-{sub['id']}-01"]
    assert seen["tracestate"] == ["mine=1"]  # set once, the caller's


@pytest.mark.parametrize("propagators", [["tracecontext"], ["xray", "tracecontext"]])
def test_a_redirect_is_part_of_its_calls_subsegment(server: str, get: Any, propagators: list[str]) -> None:
    configure(propagators=propagators)
    with capture_segments() as documents, in_request(traceparent=f"00-{TRACE}-{SPAN}-01"):
        seen = get(f"{server}/redirect")
    (sub,) = documents[0]["subsegments"]
    assert seen["traceparent"] == [f"00-{TRACE}-{sub['id']}-01"]


# --- botocore: AWS services read X-Amzn-Trace-Id only -----------------------------------------
def test_aws_calls_carry_x_amzn_trace_id_only(server: str) -> None:
    configure()
    k_botocore.instrument()
    try:
        client = boto3.client(
            "dynamodb",
            endpoint_url=server,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        AWS_CALLS.clear()
        with (
            capture_segments() as documents,
            in_request(traceparent=f"00-{TRACE}-{SPAN}-01", tracestate=STATE),
        ):
            assert client.list_tables()["TableNames"] == []
    finally:
        k_botocore.uninstrument()
    (sub,) = documents[0]["subsegments"]
    assert sub["namespace"] == "aws"
    sent = AWS_CALLS
    assert sent == [
        {
            "X-Amzn-Trace-Id": [f"Root={ROOT};Parent={sub['id']};Sampled=1"],
            "traceparent": [],
            "tracestate": [],
        }
    ]
