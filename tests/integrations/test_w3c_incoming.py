"""Incoming W3C ``traceparent``/``tracestate``: werkzeug and gunicorn (WSGI, both entries) and
uvicorn (ASGI), segments read from a real UDP socket."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import k8sxray
from k8sxray import _recorder
from k8sxray.integrations import wsgi
from k8sxray.sampling.sampler import RateSampler

TRACE = "5759e988bd862e3fe1be46a994272793"
ROOT = "1-5759e988-bd862e3fe1be46a994272793"
SPAN = "53995c3f42cd8ad8"
OTHER_ROOT = "1-6a1b2c3d-0123456789abcdef01234567"
OTHER_PARENT = "1111222233334444"
SAMPLED = f"00-{TRACE}-{SPAN}-01"
UNSAMPLED = f"00-{TRACE}-{SPAN}-00"
STATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
NEW_ROOT = re.compile(r"Root=(1-[0-9a-f]{8}-[0-9a-f]{24})")


def never_sample(configure_to: Any, **options: Any) -> None:
    """Configure; a new trace is never sampled (not even X-Ray's one a second)."""
    configure_to(**options)
    _recorder.state().sampler = RateSampler(0, 0.0)


def seen_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answers with the trace headers an outgoing call made here would carry."""
    sent = {name: value for _key, (name, value) in _recorder.trace_headers() or ()}
    body = json.dumps(sent).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


# --- WSGI, behind werkzeug's real server, with the C entry and the Python one ------------------
@pytest.mark.usefixtures("wsgi_entry")
def test_a_sampled_traceparent_continues_its_trace(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    never_sample(configure_to)  # only the incoming flag can sample this request
    with serve_wsgi(k8sxray.instrument(seen_app)) as base:
        resp = http(base, "/w3c", headers={"traceparent": SAMPLED})
    (segment,) = daemon.segments(1)
    assert segment["trace_id"] == ROOT  # 1-<first 8>-<last 24>
    assert segment["parent_id"] == SPAN
    assert resp.headers["x-amzn-trace-id"] == "Root=" + ROOT  # the response header as ever
    sent = json.loads(resp.body)
    assert sent["X-Amzn-Trace-Id"] == f"Root={ROOT};Parent={segment['id']};Sampled=1"
    assert sent["traceparent"] == f"00-{TRACE}-{segment['id']}-01"
    assert "tracestate" not in sent


@pytest.mark.usefixtures("wsgi_entry")
def test_an_unsampled_traceparent_is_obeyed_and_passed_on(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    configure_to()  # samples everything: only the incoming flag can turn this request down
    with serve_wsgi(k8sxray.instrument(seen_app)) as base:
        resp = http(base, "/w3c", headers={"traceparent": UNSAMPLED, "tracestate": STATE})
    assert daemon.quiet() == []
    assert resp.headers["x-amzn-trace-id"] == "Root=" + ROOT
    assert json.loads(resp.body) == {
        "X-Amzn-Trace-Id": f"Root={ROOT};Parent={SPAN};Sampled=0",
        "traceparent": UNSAMPLED,
        "tracestate": STATE,
    }


@pytest.mark.usefixtures("wsgi_entry")
def test_x_amzn_trace_id_wins_when_both_are_valid(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    configure_to()
    with serve_wsgi(k8sxray.instrument(seen_app)) as base:
        other = http(
            base,
            "/both",
            headers={
                "X-Amzn-Trace-Id": f"Root={OTHER_ROOT};Parent={OTHER_PARENT};Sampled=1",
                "traceparent": UNSAMPLED,
                "tracestate": STATE,  # it belongs to the traceparent's trace: not passed on
            },
        )
        same = http(
            base,
            "/same",
            headers={
                "X-Amzn-Trace-Id": f"Root={ROOT};Parent={OTHER_PARENT};Sampled=0",
                "traceparent": SAMPLED,
                "tracestate": STATE,  # the same trace: passed on
            },
        )
    (segment,) = daemon.segments(1)  # the second request follows its Sampled=0
    assert (segment["trace_id"], segment["parent_id"]) == (OTHER_ROOT, OTHER_PARENT)
    assert json.loads(other.body) == {
        "X-Amzn-Trace-Id": f"Root={OTHER_ROOT};Parent={segment['id']};Sampled=1",
        "traceparent": f"00-{OTHER_ROOT[2:10]}{OTHER_ROOT[11:]}-{segment['id']}-01",
    }
    assert json.loads(same.body) == {
        "X-Amzn-Trace-Id": f"Root={ROOT};Parent={OTHER_PARENT};Sampled=0",
        "traceparent": f"00-{TRACE}-{OTHER_PARENT}-00",
        "tracestate": STATE,
    }


@pytest.mark.usefixtures("wsgi_entry")
@pytest.mark.parametrize("xray", ["Root=1-bad", "Sampled=1", f"Root={ROOT.upper()};Sampled=1"])
def test_a_traceparent_stands_in_for_an_invalid_x_amzn_trace_id(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any, xray: str
) -> None:
    never_sample(configure_to)
    with serve_wsgi(k8sxray.instrument(seen_app)) as base:
        http(base, "/w3c", headers={"X-Amzn-Trace-Id": xray, "traceparent": SAMPLED})
    (segment,) = daemon.segments(1)
    assert (segment["trace_id"], segment["parent_id"]) == (ROOT, SPAN)


INVALID = [
    f"ff-{TRACE}-{SPAN}-01",
    f"00-{'0' * 32}-{SPAN}-01",
    f"00-{TRACE}-{'0' * 16}-01",
    f"00-{TRACE.upper()}-{SPAN}-01",
    f"00-{TRACE}-{SPAN}-01-extra",
    f"00-{TRACE}-{SPAN}",
    "garbage",
]


@pytest.mark.usefixtures("wsgi_entry")
@pytest.mark.parametrize("traceparent", INVALID)
def test_an_invalid_traceparent_is_ignored(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any, traceparent: str
) -> None:
    configure_to()
    with serve_wsgi(k8sxray.instrument(seen_app)) as base:
        resp = http(base, "/w3c", headers={"traceparent": traceparent, "tracestate": STATE})
    assert resp.status == 200
    (segment,) = daemon.segments(1)  # a new trace, sampled by the local rule
    assert segment["trace_id"] != ROOT
    assert "parent_id" not in segment
    assert resp.headers["x-amzn-trace-id"] == "Root=" + segment["trace_id"]
    assert "tracestate" not in json.loads(resp.body)  # it went with the invalid traceparent


@pytest.mark.usefixtures("wsgi_entry")
def test_with_xray_alone_a_traceparent_is_neither_read_nor_sent(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    never_sample(configure_to, propagators=["xray"])
    with serve_wsgi(k8sxray.instrument(seen_app)) as base:
        resp = http(base, "/w3c", headers={"traceparent": SAMPLED, "tracestate": STATE})
    assert daemon.quiet() == []  # the sampler said no; the incoming flag was not read
    found = NEW_ROOT.fullmatch(resp.headers["x-amzn-trace-id"])
    assert found is not None
    assert found.group(1) != ROOT
    assert json.loads(resp.body) == {"X-Amzn-Trace-Id": f"Root={found.group(1)};Sampled=0"}


@pytest.mark.usefixtures("wsgi_entry")
def test_with_tracecontext_alone_x_amzn_trace_id_is_neither_read_nor_sent(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    never_sample(configure_to, propagators=["tracecontext"])
    with serve_wsgi(k8sxray.instrument(seen_app)) as base:
        xray = http(base, "/x", headers={"X-Amzn-Trace-Id": f"Root={OTHER_ROOT};Parent={SPAN};Sampled=0"})
        w3c = http(
            base, "/w", headers={"X-Amzn-Trace-Id": f"Root={OTHER_ROOT};Sampled=0", "traceparent": SAMPLED}
        )
    assert xray.headers["x-amzn-trace-id"] != "Root=" + OTHER_ROOT  # a new trace
    assert list(json.loads(xray.body)) == ["traceparent"]
    (segment,) = daemon.segments(1)
    assert (segment["trace_id"], segment["parent_id"]) == (ROOT, SPAN)
    assert json.loads(w3c.body) == {"traceparent": f"00-{TRACE}-{segment['id']}-01"}


# --- any header value: never raises, never breaks the request; both entries agree -------------
HEX = "0123456789abcdef"


@st.composite
def traceparents(draw: st.DrawFn) -> str | None:
    """Values near a valid traceparent (one character changed, cut or grown), or anything."""
    kind = draw(st.sampled_from(["valid", "changed", "cut", "grown", "other", "none"]))
    if kind == "none":
        return None
    if kind == "other":
        return draw(st.text(max_size=80))
    value = "-".join(
        [
            draw(st.sampled_from(["00", "01", "cc", "ff"])),
            draw(st.text(HEX, min_size=32, max_size=32)),
            draw(st.text(HEX, min_size=16, max_size=16)),
            draw(st.sampled_from(["00", "01", "03", "ff"])),
        ]
    )
    if kind == "changed":
        at = draw(st.integers(0, len(value) - 1))
        value = value[:at] + draw(st.sampled_from("0aAgG- \t\x00\xe9,")) + value[at + 1 :]
    elif kind == "cut":
        value = value[: draw(st.integers(0, len(value) - 1))]
    elif kind == "grown":
        value += draw(st.text(min_size=1, max_size=5))
    return value


def _served(env: dict[str, Any], native: bool) -> tuple[str, dict[str, str], str | None]:
    answer: list[Any] = []
    traced = wsgi.wrap(seen_app, native=native)
    body = traced(env, lambda status, headers, exc_info=None: answer.extend([status, dict(headers)]))
    sent = json.loads(b"".join(body))
    getattr(body, "close", lambda: None)()
    return answer[0], {**answer[1], **{f"sent {k}": v for k, v in sent.items()}}, k8sxray.trace_header()


def _masked(headers: dict[str, str], incoming: str) -> dict[str, str]:
    """Ids drawn for this request masked (the two entries draw different ones)."""

    def mask(match: re.Match[str]) -> str:
        return match.group(0) if match.group(0) in incoming else "<new>"

    return {k: re.sub(r"[0-9a-f]{16,}|1-[0-9a-f]{8}-[0-9a-f]{24}", mask, v) for k, v in headers.items()}


@pytest.mark.skipif(wsgi._native is None, reason="k8sxray._native is not built")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    traceparent=traceparents(),
    tracestate=st.none() | st.text(max_size=40) | st.just(STATE),
    xray=st.sampled_from([None, "", f"Root={OTHER_ROOT};Parent={SPAN};Sampled=0", f"Root={ROOT};Sampled=?"]),
)
@example(traceparent=UNSAMPLED, tracestate=STATE, xray=None)
@example(traceparent=SAMPLED, tracestate=STATE, xray=f"Root={ROOT};Parent={SPAN};Sampled=0")
@example(traceparent="", tracestate=STATE, xray=None)
def test_any_w3c_header_is_served_alike_by_both_entries(
    configure_to: Any, traceparent: str | None, tracestate: str | None, xray: str | None
) -> None:
    configure_to()
    _recorder.state().sampler = RateSampler(0, 0.0)  # a new trace is not sampled
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/p",
        "SERVER_NAME": "h",
        "SERVER_PORT": "80",
        "HTTP_HOST": "h",
        "wsgi.url_scheme": "http",
    }
    for key, value in (("HTTP_TRACEPARENT", traceparent), ("HTTP_TRACESTATE", tracestate)):
        if value is not None:
            env[key] = value
    if xray is not None:
        env["HTTP_X_AMZN_TRACE_ID"] = xray
    incoming = f"{traceparent} {tracestate} {xray} {TRACE}" if traceparent and TRACE in traceparent else ""
    incoming += f" {xray} {traceparent}"
    results = []
    for native in (True, False):
        status, headers, after = _served(dict(env), native)
        assert status == "200 OK"
        assert NEW_ROOT.match(headers["X-Amzn-Trace-Id"])
        assert after is None  # nothing left current
        results.append(_masked(headers, incoming))
    assert results[0] == results[1]


# --- gunicorn: the default entry (C when built), in real worker processes ----------------------
GUNICORN_APP = textwrap.dedent(
    """
    import json, os
    import k8sxray
    from k8sxray import _recorder
    from k8sxray.sampling.sampler import RateSampler

    k8sxray.configure(service_name="w3c", daemon_address=os.environ["TEST_DAEMON"], sampling_rate=0.0,
                      plugins=(), disabled_integrations=["botocore", "httpx", "requests", "xray_sdk"])
    _recorder.state().sampler = RateSampler(0, 0.0)  # only an incoming flag samples

    def seen(environ, start_response):
        sent = {name: value for _key, (name, value) in _recorder.trace_headers() or ()}
        body = json.dumps(sent).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    app = k8sxray.instrument(seen)
    """
)


def test_gunicorn_continues_a_traceparent(daemon: Any, http: Any, tmp_path: Any) -> None:
    pytest.importorskip("gunicorn")
    (tmp_path / "w3capp.py").write_text(GUNICORN_APP)
    env = {**os.environ, "TEST_DAEMON": daemon.address, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.getcwd()}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", "127.0.0.1:0", "w3capp:app"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(server.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 30
        port = None
        while port is None and time.monotonic() < deadline:
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", "".join(lines))
            port = found and found.group(1)
            time.sleep(0.05)
        assert port, "".join(lines)
        base = f"http://127.0.0.1:{port}"
        sampled = http(base, "/sampled", headers={"traceparent": SAMPLED, "Connection": "close"})
        unsampled = http(
            base, "/unsampled", headers={"traceparent": UNSAMPLED, "tracestate": STATE, "Connection": "close"}
        )
        (segment,) = daemon.segments(1, timeout=10)
    finally:
        server.terminate()
        server.wait(15)
        reader.join(5)
        server.stderr.close()  # type: ignore[union-attr]
    assert (segment["trace_id"], segment["parent_id"]) == (ROOT, SPAN)
    assert segment["http"]["request"]["url"].endswith("/sampled")
    assert json.loads(sampled.body)["traceparent"] == f"00-{TRACE}-{segment['id']}-01"
    assert unsampled.headers["x-amzn-trace-id"] == "Root=" + ROOT
    assert json.loads(unsampled.body) == {
        "X-Amzn-Trace-Id": f"Root={ROOT};Parent={SPAN};Sampled=0",
        "traceparent": UNSAMPLED,
        "tracestate": STATE,
    }


# --- ASGI, behind uvicorn --------------------------------------------------------------------
async def seen_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    sent = {name: value for _key, (name, value) in _recorder.trace_headers() or ()}
    body = json.dumps(sent).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def test_uvicorn_continues_a_traceparent(daemon: Any, configure_to: Any, serve_asgi: Any, http: Any) -> None:
    never_sample(configure_to)
    with serve_asgi(k8sxray.instrument(seen_asgi)) as base:
        sampled = http(base, "/sampled", headers={"traceparent": SAMPLED, "tracestate": STATE})
        unsampled = http(base, "/unsampled", headers={"traceparent": UNSAMPLED})
        winner = http(
            base,
            "/both",
            headers={
                "X-Amzn-Trace-Id": f"Root={OTHER_ROOT};Parent={OTHER_PARENT};Sampled=0",
                "traceparent": SAMPLED,
            },
        )
        invalid = http(base, "/invalid", headers={"traceparent": f"00-{'0' * 32}-{SPAN}-01"})
    (segment,) = daemon.segments(1)
    assert (segment["trace_id"], segment["parent_id"]) == (ROOT, SPAN)
    assert sampled.headers["x-amzn-trace-id"] == "Root=" + ROOT
    assert json.loads(sampled.body) == {
        "X-Amzn-Trace-Id": f"Root={ROOT};Parent={segment['id']};Sampled=1",
        "traceparent": f"00-{TRACE}-{segment['id']}-01",
        "tracestate": STATE,
    }
    assert json.loads(unsampled.body)["traceparent"] == UNSAMPLED
    assert winner.headers["x-amzn-trace-id"] == "Root=" + OTHER_ROOT
    assert (
        json.loads(winner.body)["traceparent"] == f"00-{OTHER_ROOT[2:10]}{OTHER_ROOT[11:]}-{OTHER_PARENT}-00"
    )
    assert invalid.status == 200
    assert invalid.headers["x-amzn-trace-id"] != "Root=" + ROOT


def test_asgi_joins_repeated_w3c_headers(daemon: Any, configure_to: Any) -> None:
    """Two ``traceparent`` make an invalid one (a new trace); two ``tracestate`` one list."""
    import asyncio

    never_sample(configure_to)
    app = k8sxray.instrument(seen_asgi)

    def call(headers: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], dict[str, str]]:
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b""}
        asyncio.run(app(scope, receive, send))
        response = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
        return response, json.loads(sent[1]["body"])

    twice, _ = call([(b"traceparent", SAMPLED.encode()), (b"traceparent", UNSAMPLED.encode())])
    assert twice["x-amzn-trace-id"] != "Root=" + ROOT
    _, body = call([(b"traceparent", UNSAMPLED.encode()), (b"tracestate", b"a=1"), (b"tracestate", b"b=2")])
    assert body["tracestate"] == "a=1,b=2"
    assert daemon.quiet() == []
