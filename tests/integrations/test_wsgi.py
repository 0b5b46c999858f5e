"""WSGI apps (Flask, bare callables) behind werkzeug's real server, segments read from a UDP socket."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any

import flask
import pytest

import k8sxray
from k8sxray import _recorder

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"
TRACE_ID = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")
ENTITY_ID = re.compile(r"[0-9a-f]{16}")

pytestmark = pytest.mark.usefixtures("wsgi_entry")  # each test with the C entry and the Python one


def flask_app() -> flask.Flask:
    app = flask.Flask("wsgi_test")

    @app.get("/hello")
    def hello() -> str:
        return "hello"

    @app.get("/status/<int:code>")
    def status(code: int) -> tuple[str, int]:
        return "status", code

    @app.get("/boom")
    def boom() -> str:
        raise ValueError("kaboom")

    @app.get("/stream")
    def stream() -> flask.Response:
        def chunks() -> Iterator[bytes]:
            for i in range(3):
                time.sleep(0.1)
                yield b"chunk%d;" % i

        return flask.Response(chunks(), mimetype="text/plain")

    @app.get("/header-while-streaming")
    def header_while_streaming() -> flask.Response:
        def chunks() -> Iterator[bytes]:
            yield b"downstream header: "
            yield (k8sxray.trace_header() or "none").encode()

        return flask.Response(chunks(), mimetype="text/plain")

    @app.get("/work")
    def work() -> str:
        k8sxray.annotate("customer", "c-42")
        k8sxray.put_metadata("order", {"items": 3}, namespace="shop")
        with k8sxray.subsegment("compute"):
            time.sleep(0.001)
        return "done"

    return app


def test_flask_segment_has_every_field(daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any) -> None:
    configure_to()
    app = k8sxray.instrument(flask_app())
    with serve_wsgi(app) as base:
        before = time.time()
        resp = http(
            base,
            "/hello?a=1&password=hunter2",
            headers={
                "User-Agent": "tester/1.0",
                "X-Forwarded-For": "203.0.113.9, 10.0.0.1",
                "Authorization": "Bearer sekrit-token",
                "Cookie": "session=sekrit-cookie",
            },
        )
        after = time.time()
    assert resp.status == 200
    assert resp.body == b"hello"
    (doc,) = daemon.segments(1)
    assert doc["name"] == "svc"
    assert ENTITY_ID.fullmatch(doc["id"])
    assert TRACE_ID.fullmatch(doc["trace_id"])
    assert before <= doc["start_time"] <= after  # it ends once the server has written the body
    assert doc["start_time"] <= doc["end_time"] <= time.time()
    assert doc["http"] == {
        "request": {
            "method": "GET",
            "url": f"{base}/hello?a=1&password=REDACTED",
            "user_agent": "tester/1.0",
            "client_ip": "203.0.113.9",
            "x_forwarded_for": True,
        },
        "response": {"status": 200, "content_length": 5},
    }
    assert doc["aws"]["xray"]["sdk"] == "k8sxray"
    assert "parent_id" not in doc
    assert not any(flag in doc for flag in ("error", "throttle", "fault", "cause"))
    assert resp.headers["x-amzn-trace-id"] == f"Root={doc['trace_id']}"
    raw = b"".join(daemon.raw)
    for secret in (b"hunter2", b"sekrit", b"Authorization", b"Cookie", b"session="):
        assert secret not in raw


def test_client_ip_without_proxy_is_the_peer(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    configure_to()
    with serve_wsgi(k8sxray.instrument(flask_app())) as base:
        http(base, "/hello")
    (doc,) = daemon.segments(1)
    assert doc["http"]["request"]["client_ip"] == "127.0.0.1"
    assert "x_forwarded_for" not in doc["http"]["request"]


@pytest.mark.parametrize(
    ("code", "flags"),
    [(200, set()), (404, {"error"}), (429, {"error", "throttle"}), (500, {"fault"}), (503, {"fault"})],
)
def test_status_flags(  # noqa: PLR0917  # pytest fixtures and parameters
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any, code: int, flags: set[str]
) -> None:
    configure_to()
    with serve_wsgi(k8sxray.instrument(flask_app())) as base:
        assert http(base, f"/status/{code}").status == code
    (doc,) = daemon.segments(1)
    assert doc["http"]["response"]["status"] == code
    assert {f for f in ("error", "throttle", "fault") if doc.get(f)} == flags
    assert "cause" not in doc


def test_flask_exception_becomes_cause_and_fault(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    configure_to()
    with serve_wsgi(k8sxray.instrument(flask_app())) as base:
        resp = http(base, "/boom")
    assert resp.status == 500
    (doc,) = daemon.segments(1)
    assert doc["fault"] is True
    assert doc["http"]["response"]["status"] == 500
    (exc,) = doc["cause"]["exceptions"]
    assert exc["type"] == "ValueError"
    assert exc["message"] == "kaboom"
    assert exc["stack"][0]["label"] == "boom"
    assert doc["cause"]["working_directory"]


def test_annotations_metadata_and_subsegments(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    configure_to()
    with serve_wsgi(k8sxray.instrument(flask_app())) as base:
        http(base, "/work")
    (doc,) = daemon.segments(1)
    assert doc["annotations"] == {"customer": "c-42"}
    assert doc["metadata"] == {"shop": {"order": {"items": 3}}}
    (sub,) = doc["subsegments"]
    assert sub["name"] == "compute"
    assert doc["start_time"] <= sub["start_time"] < sub["end_time"] <= doc["end_time"]


def test_incoming_header_continues_the_trace(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    configure_to(sampling_rate=0.0)
    with serve_wsgi(k8sxray.instrument(flask_app())) as base:
        resp = http(base, "/hello", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=1"})
    (doc,) = daemon.segments(1)
    assert doc["trace_id"] == ROOT
    assert doc["parent_id"] == PARENT
    assert resp.headers["x-amzn-trace-id"] == f"Root={ROOT}"


def test_sampled_0_emits_nothing(daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any) -> None:
    configure_to(sampling_rate=1.0)
    with serve_wsgi(k8sxray.instrument(flask_app())) as base:
        resp = http(base, "/hello", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=0"})
    assert resp.body == b"hello"
    assert resp.headers["x-amzn-trace-id"] == f"Root={ROOT}"
    assert daemon.quiet() == []


def test_sampled_question_mark_asks_the_sampler(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any, tmp_path: Any
) -> None:
    never = tmp_path / "never.json"
    never.write_text(json.dumps({"version": 2, "rules": [], "default": {"fixed_target": 0, "rate": 0.0}}))
    header = {"X-Amzn-Trace-Id": f"Root={ROOT};Sampled=?"}
    configure_to(sampling_rate=None, sampling_rules=str(never))
    app = k8sxray.instrument(flask_app())
    with serve_wsgi(app) as base:
        resp = http(base, "/hello", headers=header)
        assert resp.headers["x-amzn-trace-id"] == f"Root={ROOT};Sampled=0"
        assert daemon.quiet() == []
        configure_to(sampling_rate=1.0)
        resp = http(base, "/hello", headers=header)
    assert resp.headers["x-amzn-trace-id"] == f"Root={ROOT};Sampled=1"
    (doc,) = daemon.segments(1)
    assert doc["trace_id"] == ROOT
    assert "parent_id" not in doc


@pytest.mark.parametrize(
    "hostile",
    [
        "garbage",
        "Root=1-zzzzzzzz-bd862e3fe1be46a994272793;Sampled=1",
        "Root=2-5759e988-bd862e3fe1be46a994272793;Sampled=1",
        "Root=" + "a" * 6000,
        ";;;===;Root",
        "Root=1-5759e988-bd862e3fe1be46a994272793\x00;Sampled=1",
        'Root=1-5759e988-bd862e3fe1be46a9942727"3;Parent=53995c3f42cd8ad8;Sampled=1',
    ],
)
def test_malformed_or_hostile_header_starts_a_new_trace(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any, hostile: str
) -> None:
    configure_to()
    with serve_wsgi(k8sxray.instrument(flask_app())) as base:
        resp = http(base, "/hello", headers={"X-Amzn-Trace-Id": hostile})
    assert resp.status == 200
    assert resp.body == b"hello"
    (doc,) = daemon.segments(1)
    assert TRACE_ID.fullmatch(doc["trace_id"])
    assert doc["trace_id"] != ROOT
    assert "parent_id" not in doc
    assert resp.headers["x-amzn-trace-id"] == f"Root={doc['trace_id']}"


def test_bad_parent_keeps_the_root_but_not_the_parent(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    configure_to()
    with serve_wsgi(k8sxray.instrument(flask_app())) as base:
        http(base, "/hello", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent=NOTHEX;Sampled=1"})
    (doc,) = daemon.segments(1)
    assert doc["trace_id"] == ROOT
    assert "parent_id" not in doc


def test_streaming_segment_ends_after_the_last_chunk(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    configure_to()
    with serve_wsgi(k8sxray.instrument(flask_app())) as base:
        resp = http(base, "/stream")
    assert resp.body == b"chunk0;chunk1;chunk2;"
    (doc,) = daemon.segments(1)
    assert doc["end_time"] - doc["start_time"] >= 0.3


def test_responses_are_byte_identical_with_and_without_tracing(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    configure_to()
    paths = ["/hello", "/status/404", "/status/429", "/boom", "/stream", "/work", "/missing"]
    with serve_wsgi(flask_app()) as plain_base, serve_wsgi(k8sxray.instrument(flask_app())) as traced_base:
        for path in paths:
            plain = http(plain_base, path)
            traced = http(traced_base, path)
            assert traced.status == plain.status, path
            assert traced.body == plain.body, path
            drop = {"date", "x-amzn-trace-id"}
            assert {k: v for k, v in traced.headers.items() if k not in drop} == {
                k: v for k, v in plain.headers.items() if k not in drop
            }, path
            assert "x-amzn-trace-id" in traced.headers
            assert "x-amzn-trace-id" not in plain.headers
    assert len(daemon.segments(len(paths))) == len(paths)


def _bare_list(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("201 Created", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [b"made"]


class _ClosingBody:
    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"part1"
        yield b"part2"

    def close(self) -> None:
        self.closed = True


def test_bare_wsgi_callables(daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any) -> None:
    configure_to()
    bodies: list[_ClosingBody] = []

    def closing_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        bodies.append(_ClosingBody())
        return bodies[-1]

    def failing_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        raise RuntimeError("broken app")

    traced_list = k8sxray.instrument(_bare_list)
    assert k8sxray.instrument(traced_list) is traced_list  # never traced twice
    assert k8sxray.uninstrument(traced_list) is _bare_list
    with serve_wsgi(traced_list) as base:
        resp = http(base, "/list", method="POST")
        assert (resp.status, resp.body) == (201, b"made")
    with serve_wsgi(k8sxray.instrument(closing_app)) as base:
        assert http(base, "/closing").body == b"part1part2"
    with serve_wsgi(k8sxray.instrument(failing_app)) as base:
        assert http(base, "/failing").status == 500
    first, second, third = daemon.segments(3)
    assert first["http"]["request"]["method"] == "POST"
    assert first["http"]["response"] == {"status": 201, "content_length": 4}
    assert second["http"]["response"] == {"status": 200, "content_length": 10}  # counted: no header
    assert bodies[0].closed
    assert third["fault"] is True
    assert third["cause"]["exceptions"][0]["message"] == "broken app"


def test_app_answers_when_the_daemon_is_unreachable(configure_to: Any, serve_wsgi: Any, http: Any) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: sends get ICMP port unreachable
    k8sxray.configure(
        service_name="svc", daemon_address=f"127.0.0.1:{closed_port}", sampling_rate=1.0, plugins=()
    )
    with serve_wsgi(k8sxray.instrument(flask_app())) as base:
        for _ in range(5):
            resp = http(base, "/hello")
            assert (resp.status, resp.body) == (200, b"hello")
            assert _recorder.flush(1.0)


class _RaisingEmitter:
    def send(self, document: bytes) -> None:
        raise RuntimeError("emitter exploded")

    def flush(self, timeout: float = 1.0) -> bool:
        raise RuntimeError("flush exploded")

    def close(self) -> None:
        pass


def test_app_answers_when_the_emitter_raises(
    configure_to: Any, serve_wsgi: Any, http: Any, caplog: pytest.LogCaptureFixture
) -> None:
    configure_to()
    _recorder.set_emitter(_RaisingEmitter())
    with (
        caplog.at_level(logging.WARNING, logger="k8sxray"),
        serve_wsgi(k8sxray.instrument(flask_app())) as base,
    ):
        for path, status, body in [("/hello", 200, b"hello"), ("/stream", 200, b"chunk0;chunk1;chunk2;")] * 3:
            resp = http(base, path)
            assert (resp.status, resp.body) == (status, body)
    internal = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(internal) == 1  # logged once, not per request


def test_flask_instrument_twice_warns_once_and_uninstrument_restores(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any, caplog: pytest.LogCaptureFixture
) -> None:
    configure_to()
    app = flask_app()
    original = app.wsgi_app
    with caplog.at_level(logging.WARNING, logger="k8sxray"):
        assert k8sxray.instrument(app) is app
        assert k8sxray.instrument(app) is app
        assert k8sxray.instrument(app) is app
    assert sum("twice" in r.getMessage() for r in caplog.records) == 1
    with serve_wsgi(app) as base:
        assert "x-amzn-trace-id" in http(base, "/hello").headers
    assert len(daemon.segments(1)) == 1  # traced once, not three times
    assert k8sxray.uninstrument(app) is app
    assert app.wsgi_app == original
    with serve_wsgi(app) as base:
        assert "x-amzn-trace-id" not in http(base, "/hello").headers
    assert len(daemon.quiet(0.2)) == 1


def test_disabled_by_configuration_is_a_passthrough(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    configure_to(enabled=False)
    with serve_wsgi(k8sxray.instrument(flask_app())) as base:
        resp = http(base, "/hello", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=1"})
    assert (resp.status, resp.body) == (200, b"hello")
    assert "x-amzn-trace-id" not in resp.headers
    assert daemon.quiet(0.2) == []


def test_instrument_options_configure(daemon: Any, serve_wsgi: Any, http: Any) -> None:
    app = k8sxray.instrument(
        flask_app(), service_name="from-options", daemon_address=daemon.address, sampling_rate=1.0, plugins=()
    )
    with serve_wsgi(app) as base:
        http(base, "/hello")
    (doc,) = daemon.segments(1)
    assert doc["name"] == "from-options"


@pytest.mark.parametrize("sampled", ["1", "0"])
def test_trace_stays_current_while_the_body_is_produced(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any, sampled: str
) -> None:
    configure_to()
    incoming = f"Root={ROOT};Parent={PARENT};Sampled={sampled}"
    with serve_wsgi(k8sxray.instrument(flask_app())) as base:
        resp = http(base, "/header-while-streaming", headers={"X-Amzn-Trace-Id": incoming})
        after = http(base, "/header-while-streaming")  # the next request on a fresh trace
    prefix = b"downstream header: "
    if sampled == "1":
        (doc, _) = daemon.segments(2)
        assert resp.body == prefix + f"Root={ROOT};Parent={doc['id']};Sampled=1".encode()
    else:
        assert resp.body == prefix + f"Root={ROOT};Parent={PARENT};Sampled=0".encode()
    assert ROOT.encode() not in after.body


@pytest.mark.parametrize("length_header", ["Content-Length", "content-length", "CONTENT-LENGTH"])
def test_an_unsampled_trace_is_current_until_its_body_is_ready(configure_to: Any, length_header: str) -> None:
    """With a Content-Length (in any case) the app has produced its body: the previous context comes
    back at once (a streamed body keeps the trace current until it is closed: the test above)."""
    configure_to()
    seen: dict[str, str | None] = {}

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            seen["while iterating"] = k8sxray.trace_header()
            yield b"ok"

        def close(self) -> None:
            seen["at close"] = k8sxray.trace_header()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        seen["in the app"] = k8sxray.trace_header()
        start_response("200 OK", [("Content-Type", "text/plain"), (length_header, "2")])
        return Body()

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "h", "SERVER_PORT": "80"}
    environ["HTTP_X_AMZN_TRACE_ID"] = f"Root={ROOT};Parent={PARENT};Sampled=0"
    headers: list[tuple[str, str]] = []
    body = k8sxray.instrument(app)(environ, lambda status, h, exc_info=None: headers.extend(h))
    incoming = f"Root={ROOT};Parent={PARENT};Sampled=0"
    assert k8sxray.trace_header() is None  # nothing left current once the body is ready
    assert b"".join(body) == b"ok"
    body.close()  # type: ignore[attr-defined]
    assert seen == {"in the app": incoming, "while iterating": None, "at close": None}
    assert k8sxray.trace_header() is None
    assert ("X-Amzn-Trace-Id", f"Root={ROOT}") in headers


def test_an_unsampled_header_does_nothing_when_tracing_is_off(configure_to: Any) -> None:
    configure_to(enabled=False)
    headers: list[tuple[str, str]] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        assert k8sxray.trace_header() is None
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "h", "SERVER_PORT": "80"}
    environ["HTTP_X_AMZN_TRACE_ID"] = f"Root={ROOT};Parent={PARENT};Sampled=0"
    body = k8sxray.instrument(app)(environ, lambda status, h, exc_info=None: headers.extend(h))
    assert list(body) == [b"ok"]
    assert headers == [("Content-Length", "2")]  # no trace header added


def test_a_sized_body_ends_its_segment_once_produced_even_if_never_closed(
    daemon: Any, configure_to: Any
) -> None:
    """A test client may read a body without closing it: the segment ends when the body's
    Content-Length was produced (a body cut short ends at close, a streamed one when it runs out)."""
    configure_to()
    closed: list[str] = []

    class Body:
        def __init__(self, chunks: list[bytes], name: str) -> None:
            self.chunks, self.name = chunks, name

        def __iter__(self) -> Iterator[bytes]:
            return iter(self.chunks)

        def close(self) -> None:
            closed.append(self.name)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        length = {"/sized": "6", "/short": "10"}.get(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Length", length)] if length else [])
        return Body([b"abc", b"def"], environ["PATH_INFO"])

    traced = k8sxray.instrument(app)

    def call(path: str) -> Iterator[bytes]:
        env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "h", "SERVER_PORT": "80"}
        return iter(traced(env, lambda status, headers, exc_info=None: None))

    sized = call("/sized")
    assert next(sized) == b"abc"
    assert daemon.quiet(0.1) == []  # half of the body: still going
    assert next(sized) == b"def"  # all of it, neither exhausted nor closed
    (doc,) = daemon.segments(1)
    assert doc["http"]["response"] == {"status": 200, "content_length": 6}
    assert k8sxray.trace_header() is None  # nothing left current
    short = call("/short")
    assert b"".join(short) == b"abcdef"  # ran out before its Content-Length: it ends there
    assert len(daemon.segments(2)) == 2
    streamed = call("/streamed")
    assert next(streamed) == b"abc"
    assert len(daemon.quiet(0.1)) == 2  # a streamed body has no length: it may have a chunk to go
    assert list(streamed) == [b"def"]
    assert daemon.segments(3)[2]["http"]["response"] == {"status": 200, "content_length": 6}
    assert closed == []  # none of them was closed
