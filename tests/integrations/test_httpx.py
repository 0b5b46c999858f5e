"""httpx: sync and async clients, custom transports, streaming, against a loopback server."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import httpx
import pytest

from k8sxray import _config, _recorder
from k8sxray.integrations import httpx as k_httpx
from k8sxray.testing import capture_segments

ROOT = "1-5759e988-bd862e3fe1be46a994272793"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/stream":
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            self.wfile.write(b"first")
            self.wfile.flush()
            time.sleep(0.3)
            self.wfile.write(b"-last")
            return
        status = int(path.split("/")[2]) if path.startswith("/status/") else 200
        body = json.dumps({"trace": self.headers.get_all("X-Amzn-Trace-Id")}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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


@pytest.fixture(params=["fast", "public"])
def traced(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Instrumented, adding the header through httpx.Headers' list ("fast") or its public API."""
    _config.configure(daemon_address="127.0.0.1:9", context_missing="IGNORE_ERROR")
    k_httpx.instrument()
    if request.param == "public":
        monkeypatch.setattr(k_httpx, "_fast_headers", None)
    with capture_segments() as documents:
        yield documents
    k_httpx.uninstrument()


@contextmanager
def in_request(sampled: str = "1") -> Iterator[Any]:
    segment = _recorder.start_request(f"Root={ROOT};Sampled={sampled}", "a", "GET", "/", time.time())
    assert segment is not None
    try:
        yield segment
    finally:
        _recorder.end_segment(segment)


def only_subsegment(documents: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(documents) == 1
    (sub,) = documents[0]["subsegments"]
    return sub  # type: ignore[no-any-return]


def test_client_created_before_instrument(server: str) -> None:
    with httpx.Client() as client:
        _config.configure(daemon_address="127.0.0.1:9")
        k_httpx.instrument()
        try:
            with capture_segments() as documents, in_request():
                answer = client.get(f"{server}/status/404?api_key=k&x=1").json()
            with capture_segments() as again, in_request():  # the same URL: its recording is reused
                client.get(f"{server}/status/404?api_key=k&x=1")
                client.get(f"{server}/status/404?api_key=k&x=2")
        finally:
            k_httpx.uninstrument()
    sub = only_subsegment(documents)
    assert answer["trace"] == [f"Root={ROOT};Parent={sub['id']};Sampled=1"]
    assert sub["namespace"] == "remote"
    assert sub["name"] == "127.0.0.1"
    assert sub["http"]["request"] == {"method": "GET", "url": f"{server}/status/404?api_key=REDACTED&x=1"}
    assert sub["http"]["response"]["status"] == 404
    assert sub["error"] is True
    urls = [s["http"]["request"]["url"] for s in again[0]["subsegments"]]
    assert urls == [f"{server}/status/404?api_key=REDACTED&x=1", f"{server}/status/404?api_key=REDACTED&x=2"]


def test_async_client(server: str, traced: list[dict[str, Any]]) -> None:
    async def main() -> list[Any]:
        async with httpx.AsyncClient() as client:
            with in_request():
                first, second = await asyncio.gather(
                    client.get(f"{server}/status/200"), client.get(f"{server}/status/503")
                )
        return [first.json(), second.json()]

    answers = asyncio.run(main())
    subs = traced[0]["subsegments"]
    assert len(subs) == 2
    parents = {answer["trace"][0].split(";")[1] for answer in answers}
    assert parents == {f"Parent={sub['id']}" for sub in subs}  # each call its own subsegment
    assert sorted(sub["http"]["response"]["status"] for sub in subs) == [200, 503]
    by_status = sorted(subs, key=lambda s: s["http"]["response"]["status"])
    assert [sub.get("fault", False) for sub in by_status] == [False, True]


def test_custom_transport(traced: list[dict[str, Any]]) -> None:
    seen: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get_list("x-amzn-trace-id"))
        return httpx.Response(429, content=b"slow down")

    with httpx.Client(transport=httpx.MockTransport(handler)) as client, in_request():
        assert client.post("http://svc.example/jobs").status_code == 429
    sub = only_subsegment(traced)
    assert seen == [[f"Root={ROOT};Parent={sub['id']};Sampled=1"]]
    assert sub["name"] == "svc.example"
    assert sub["http"]["request"]["method"] == "POST"
    assert sub["http"]["response"] == {"status": 429, "content_length": 9}
    assert sub["throttle"] is True


def test_exception_propagates_unchanged(traced: list[dict[str, Any]]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    boom = RuntimeError("transport exploded")

    def handler(request: httpx.Request) -> httpx.Response:
        raise boom

    with in_request():
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/")
        client = httpx.Client(transport=httpx.MockTransport(handler))
        with client, pytest.raises(RuntimeError) as info:
            client.get("http://svc.example/")
    assert info.value is boom
    first, second = traced[0]["subsegments"]
    assert first["cause"]["exceptions"][0]["type"] == "ConnectError"
    assert second["cause"]["exceptions"][0]["message"] == "transport exploded"
    assert first["fault"] is True
    assert second["fault"] is True


def test_streaming_subsegment_ends_when_the_response_closes(
    server: str, traced: list[dict[str, Any]]
) -> None:
    with in_request() as segment, httpx.Client() as client:
        with client.stream("GET", f"{server}/stream") as response:
            headers_at = time.time()
            assert _recorder.current() is segment  # the caller's context again while streaming
            assert b"".join(response.iter_bytes()) == b"first-last"
            body_at = time.time()
        closed_at = time.time()
    sub = only_subsegment(traced)
    assert body_at - headers_at >= 0.25
    assert headers_at + 0.25 <= sub["end_time"] <= closed_at
    assert sub["http"]["response"] == {"status": 200, "content_length": 10}


def test_async_streaming_and_a_body_read_after_the_request(server: str, traced: list[dict[str, Any]]) -> None:
    async def main() -> bytes:
        async with httpx.AsyncClient() as client:
            with in_request():
                request = client.build_request("GET", f"{server}/stream")
                response = await client.send(request, stream=True)
            body = await response.aread()  # after the request's segment was sent
            await response.aclose()
            return body

    assert asyncio.run(main()) == b"first-last"
    segment, late = traced
    assert segment["subsegments"][0]["in_progress"] is True
    assert late["type"] == "subsegment"
    assert late["id"] == segment["subsegments"][0]["id"]
    assert late["end_time"] - late["start_time"] >= 0.25
    assert late["http"]["response"] == {"status": 200, "content_length": 10}


def test_header_present_or_unsampled_or_outside(server: str, traced: list[dict[str, Any]]) -> None:
    mine = f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1"
    with in_request():
        assert httpx.get(f"{server}/", headers={"X-Amzn-Trace-Id": mine}).json()["trace"] == [mine]
        assert httpx.get(f"{server}/", headers={"x-amzn-trace-id": mine}).json()["trace"] == [mine]
    assert "subsegments" not in traced[0]
    with in_request(sampled="0"):
        assert httpx.get(f"{server}/").json()["trace"] == [f"Root={ROOT};Sampled=0"]
    assert httpx.get(f"{server}/").json()["trace"] is None
    assert len(traced) == 1


def test_uninstrument_restores() -> None:
    def patched() -> tuple[Any, ...]:
        return (
            httpx.Client.__dict__["send"],
            httpx.AsyncClient.__dict__["send"],
            httpx.HTTPTransport.__dict__["handle_request"],
            httpx.AsyncHTTPTransport.__dict__["handle_async_request"],
        )

    originals = patched()
    assert k_httpx.instrument() is True
    assert k_httpx.instrument() is False
    assert all(now is not before for now, before in zip(patched(), originals, strict=True))
    k_httpx.uninstrument()
    assert patched() == originals


class _Redirecting(http.server.BaseHTTPRequestHandler):
    """``/hop`` redirects to ``/end``; both answer with the trace headers they were sent."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[list[str]]] = []

    def do_GET(self) -> None:
        _Redirecting.seen.append(self.headers.get_all("X-Amzn-Trace-Id") or [])
        self.send_response(302 if self.path == "/hop" else 200)
        if self.path == "/hop":
            self.send_header("Location", "/end")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_plain_client_sends_the_header_on_every_hop_and_keeps_it_off_the_request(
    traced: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setattr(_Redirecting, "seen", [])
    on_the_wire = k_httpx._fast_headers is not None  # the "public" run sets it on the request instead
    try:
        with httpx.Client(follow_redirects=True) as client, in_request():
            response = client.get(f"http://127.0.0.1:{httpd.server_port}/hop")

        async def main() -> httpx.Response:
            async with httpx.AsyncClient() as client:
                with in_request():
                    return await client.get(f"http://127.0.0.1:{httpd.server_port}/end")

        async_response = asyncio.run(main())
    finally:
        httpd.shutdown()
        httpd.server_close()
    sync_sub, async_sub = (only_subsegment([doc]) for doc in traced)
    sent = f"Root={ROOT};Parent={sync_sub['id']};Sampled=1"
    assert _Redirecting.seen == [[sent], [sent], [f"Root={ROOT};Parent={async_sub['id']};Sampled=1"]]
    assert sync_sub["http"]["response"]["status"] == 200  # the redirect was followed inside one call
    for answer in (response, async_response):
        carried = answer.request.headers.get("x-amzn-trace-id")
        assert carried is None if on_the_wire else carried is not None


def test_fast_header_path_is_checked() -> None:
    k_httpx.instrument()
    try:
        assert k_httpx._fast_headers is httpx.Headers  # the installed httpx keeps the expected layout
    finally:
        k_httpx.uninstrument()

    class PairHeaders(httpx.Headers):  # a layout the fast path does not know: (name, value) pairs
        def __init__(self, headers: Any = None, encoding: str | None = None) -> None:
            super().__init__(headers, encoding)
            self._list = [(key, value) for key, _, value in self._list]  # type: ignore[misc]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpx, "Headers", PairHeaders)
        assert k_httpx._check_fast_headers() is None


def test_headers_of_another_type_use_the_public_api(traced: list[dict[str, Any]]) -> None:
    class OwnHeaders(httpx.Headers):
        pass

    seen: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get_list("x-amzn-trace-id"))
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client, in_request():
        request = client.build_request("GET", "http://svc.example/", headers={"Accept": "x/y"})
        request.headers = OwnHeaders(request.headers)
        client.send(request)
        request = client.build_request("GET", "http://svc.example/")
        request.headers = OwnHeaders({"X-AMZN-TRACE-ID": "Root=1-5759e988-bd862e3fe1be46a994272793"})
        client.send(request)
    sub = only_subsegment(traced)
    assert seen == [
        [f"Root={ROOT};Parent={sub['id']};Sampled=1"],
        ["Root=1-5759e988-bd862e3fe1be46a994272793"],
    ]


def test_wrapped_again_by_someone_else() -> None:
    """Another wrapper above ours: uninstrument() leaves ours in place but inert; instrument() revives it."""
    import wrapt

    original = httpx.Client.__dict__["send"]
    seen: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get_list("x-amzn-trace-id"))
        return httpx.Response(200)

    _config.configure(daemon_address="127.0.0.1:9", context_missing="IGNORE_ERROR")
    k_httpx.instrument()
    wrapt.wrap_function_wrapper("httpx._client", "Client.send", lambda wrapped, _, a, kw: wrapped(*a, **kw))
    try:
        with capture_segments() as documents, httpx.Client(transport=httpx.MockTransport(handler)) as client:
            k_httpx.uninstrument()
            with in_request():
                client.get("http://svc.example/")  # inert: no header, no subsegment
            k_httpx.instrument()
            with in_request():
                client.get("http://svc.example/")  # our wrapper again, only once
        assert seen[0] == []
        assert seen[1] == [f"Root={ROOT};Parent={documents[1]['subsegments'][0]['id']};Sampled=1"]
        assert "subsegments" not in documents[0]
        assert len(documents[1]["subsegments"]) == 1
    finally:
        k_httpx.uninstrument()
        httpx.Client.send = original  # type: ignore[method-assign]


def test_a_hop_whose_headers_were_replaced_still_carries_the_header(
    server: str, traced: list[dict[str, Any]]
) -> None:
    class OwnHeaders(httpx.Headers):
        pass

    def replace(request: httpx.Request) -> None:  # an event hook runs before each hop
        request.headers = OwnHeaders(request.headers)

    with httpx.Client(event_hooks={"request": [replace]}) as client, in_request():
        answer = client.get(f"{server}/").json()
    sub = only_subsegment(traced)
    assert answer["trace"] == [f"Root={ROOT};Parent={sub['id']};Sampled=1"]  # once, on the wire


def test_the_transport_path_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert k_httpx._check_plain_transports() == (httpx.HTTPTransport, httpx.AsyncHTTPTransport)
    # a release that routed a client without mounts elsewhere: the header stays on the request
    monkeypatch.setattr(httpx.Client, "_transport_for_url", lambda self, url: None)
    assert k_httpx._check_plain_transports() == ()
