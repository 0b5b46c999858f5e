"""requests: one remote subsegment per call, the header injected once, against a loopback server."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
import requests.adapters

from k8sxray import _config, _recorder
from k8sxray.integrations import requests as k_requests
from k8sxray.testing import capture_segments

ROOT = "1-5759e988-bd862e3fe1be46a994272793"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "/status/200")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            self.wfile.write(b"first")
            self.wfile.flush()
            time.sleep(0.3)
            self.wfile.write(b"-last")
            return
        path = self.path.split("?", 1)[0]
        status = int(path.split("/")[2]) if path.startswith("/status/") else 200
        body = json.dumps({"trace": self.headers.get_all("X-Amzn-Trace-Id")}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
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
    """Instrumented, with the header looked up in CaseInsensitiveDict's own dict or through its
    public API (a headers layout that instrument() does not recognise)."""
    _config.configure(daemon_address="127.0.0.1:9", context_missing="LOG_ERROR")
    k_requests.instrument()
    if request.param == "public":
        monkeypatch.setattr(k_requests, "_fast_headers", None)
    with capture_segments() as documents:
        yield documents
    k_requests.uninstrument()


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


def test_session_created_before_instrument_is_traced(server: str) -> None:
    session = requests.Session()  # before instrument()
    _config.configure(daemon_address="127.0.0.1:9")
    k_requests.instrument()
    try:
        with capture_segments() as documents, in_request():
            port = server.rsplit(":", 1)[1]
            answer = session.get(f"http://user:secret@127.0.0.1:{port}/status/200?password=p&q=1").json()
    finally:
        k_requests.uninstrument()
    sub = only_subsegment(documents)
    assert answer["trace"] == [f"Root={ROOT};Parent={sub['id']};Sampled=1"]  # exactly one header
    assert sub["name"] == "127.0.0.1"
    assert sub["namespace"] == "remote"
    assert sub["http"]["request"] == {"method": "GET", "url": f"{server}/status/200?password=REDACTED&q=1"}
    assert sub["http"]["response"]["status"] == 200
    assert sub["http"]["response"]["content_length"] > 0
    assert "secret" not in json.dumps(documents)
    assert documents[0]["trace_id"] == ROOT
    assert not {"error", "fault", "throttle"} & set(sub)


@pytest.mark.parametrize(
    ("status", "flags"),
    [(404, {"error"}), (429, {"error", "throttle"}), (503, {"fault"}), (201, set())],
)
def test_status_sets_flags(server: str, traced: list[dict[str, Any]], status: int, flags: set[str]) -> None:
    with in_request():
        assert requests.get(f"{server}/status/{status}").status_code == status
    sub = only_subsegment(traced)
    assert {flag for flag in ("error", "throttle", "fault") if sub.get(flag)} == flags
    assert sub["http"]["response"]["status"] == status


def test_exception_propagates_unchanged_and_is_recorded(traced: list[dict[str, Any]]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with in_request(), pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    sub = only_subsegment(traced)
    assert sub["fault"] is True
    (exc,) = sub["cause"]["exceptions"]
    assert exc["type"] == "ConnectionError"
    assert "end_time" in sub


def test_unsampled_trace_passes_the_header_on(server: str, traced: list[dict[str, Any]]) -> None:
    with in_request(sampled="0"):
        answer = requests.get(f"{server}/status/200").json()
    assert answer["trace"] == [f"Root={ROOT};Sampled=0"]
    assert traced == []


def test_outside_a_request_nothing_breaks(
    server: str, traced: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        assert requests.get(f"{server}/status/200").json() == {"trace": None}
    assert traced == []
    assert sum("outside a traced request" in r.getMessage() for r in caplog.records) <= 1


def test_existing_header_is_left_alone(server: str, traced: list[dict[str, Any]]) -> None:
    mine = f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1"
    with in_request():
        answer = requests.get(f"{server}/status/200", headers={"x-amzn-trace-id": mine}).json()
    assert answer["trace"] == [mine]
    assert "subsegments" not in traced[0]


def test_redirects_are_one_subsegment_with_the_header_once_per_hop(
    server: str, traced: list[dict[str, Any]]
) -> None:
    with in_request():
        response = requests.get(f"{server}/redirect")
    sub = only_subsegment(traced)
    assert response.json()["trace"] == [f"Root={ROOT};Parent={sub['id']};Sampled=1"]
    assert sub["http"]["request"]["url"] == f"{server}/redirect"
    assert sub["http"]["response"]["status"] == 200


def test_streaming_subsegment_ends_when_the_body_is_read(server: str, traced: list[dict[str, Any]]) -> None:
    with in_request() as segment:
        response = requests.get(f"{server}/stream", stream=True)
        headers_at = time.time()
        assert _recorder.current() is segment  # the caller's context again, while the body is unread
        assert b"".join(response.iter_content(4)) == b"first-last"  # read to the end, never closed
        body_at = time.time()
    sub = only_subsegment(traced)
    assert body_at - headers_at >= 0.25
    assert headers_at + 0.25 <= sub["end_time"] <= body_at
    assert sub["http"]["response"] == {"status": 200, "content_length": 10}


def test_streaming_subsegment_ends_when_closed_unread(server: str, traced: list[dict[str, Any]]) -> None:
    with in_request():
        response = requests.get(f"{server}/stream", stream=True)
        time.sleep(0.1)
        response.close()
        closed_at = time.time()
        response.close()  # twice: still one end
    sub = only_subsegment(traced)
    assert sub["end_time"] <= closed_at
    assert sub["end_time"] - sub["start_time"] >= 0.1


def test_streaming_body_read_after_the_request_ended(server: str, traced: list[dict[str, Any]]) -> None:
    with in_request():
        response = requests.get(f"{server}/stream", stream=True)
    (segment,) = traced
    assert segment["subsegments"][0]["in_progress"] is True
    assert response.content == b"first-last"
    assert len(traced) == 2  # the subsegment, sent on its own when its body ended
    late = traced[1]
    assert late["id"] == segment["subsegments"][0]["id"]
    assert late["type"] == "subsegment"
    assert late["parent_id"] == segment["id"]
    assert late["http"]["response"]["status"] == 200


def _session_with(answer: Any) -> requests.Session:
    """A session whose ``svc://`` adapter (not urllib3) answers every request with *answer*."""

    class Adapter(requests.adapters.BaseAdapter):
        def send(self, request: Any, **kwargs: Any) -> requests.Response:
            return answer(request)  # type: ignore[no-any-return]

        def close(self) -> None:
            pass

    session = requests.Session()
    session.mount("svc://", Adapter())
    return session


def test_custom_adapter(traced: list[dict[str, Any]]) -> None:
    seen: list[str | None] = []

    def answer(request: Any) -> requests.Response:
        seen.append(request.headers.get("X-Amzn-Trace-Id"))
        response = requests.Response()
        response.status_code = 500
        response._content = b"boom"
        response.request = request
        return response

    session = _session_with(answer)
    with in_request():
        assert session.get("svc://inventory/items").status_code == 500
    sub = only_subsegment(traced)
    assert seen == [f"Root={ROOT};Parent={sub['id']};Sampled=1"]
    assert sub["name"] == "inventory"
    assert sub["fault"] is True


def test_fast_header_lookup_is_checked() -> None:
    from requests.structures import CaseInsensitiveDict

    k_requests.instrument()
    try:
        assert k_requests._fast_headers is CaseInsensitiveDict  # the installed requests' layout
    finally:
        k_requests.uninstrument()

    class Flat(CaseInsensitiveDict):  # type: ignore[type-arg]  # a layout the fast path does not know
        def __setitem__(self, key: str, value: Any) -> None:
            self._store[key] = (key, value)

        def __getitem__(self, key: str) -> Any:
            return next(v for k, v in self._store.values() if k.lower() == key.lower())

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("requests.structures.CaseInsensitiveDict", Flat)
        assert k_requests._check_fast_headers() is None


def test_a_header_in_any_case_is_left_alone(server: str, traced: list[dict[str, Any]]) -> None:
    mine = f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1"
    with in_request():
        answer = requests.get(f"{server}/status/200", headers={"X-AMZN-TRACE-ID": mine}).json()
    assert answer["trace"] == [mine]  # sent once, as the caller wrote it
    assert "subsegments" not in traced[0]


def test_a_response_we_do_not_understand_reaches_the_caller_unchanged(traced: list[dict[str, Any]]) -> None:
    odd = requests.Response()
    odd.status_code = 204
    odd.headers = frozenset()  # type: ignore[assignment]  # what a home-made adapter might hand back

    def answer(request: Any) -> requests.Response:
        odd.request = request
        return odd

    session = _session_with(answer)
    with in_request():
        assert session.get("svc://odd/x") is odd
    sub = only_subsegment(traced)
    assert sub["name"] == "odd"
    assert "end_time" in sub  # ended, though without a status


@pytest.mark.parametrize(("given", "recorded"), [("17", 17), ("not a number", None), (None, None)])
def test_content_length_is_recorded_when_it_is_a_number(
    traced: list[dict[str, Any]], given: str | None, recorded: int | None
) -> None:
    def answer(request: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        if given is not None:
            response.headers["Content-Length"] = given
        response._content = b""
        response.request = request
        return response

    with in_request():
        assert _session_with(answer).get("svc://lengths/x").status_code == 200
    expected: dict[str, int] = {"status": 200}
    if recorded is not None:
        expected["content_length"] = recorded
    assert only_subsegment(traced)["http"]["response"] == expected
