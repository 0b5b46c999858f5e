"""ASGI apps (FastAPI, a bare callable) behind a real uvicorn, segments read from a UDP socket."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.responses import PlainTextResponse, StreamingResponse

import k8sxray

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"
TRACE_ID = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")


def fastapi_app(events: list[str] | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if events is not None:
            events.append("startup")
        yield
        if events is not None:
            events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/hello")
    async def hello() -> PlainTextResponse:
        return PlainTextResponse("hello")

    @app.get("/sync")
    def sync_route() -> PlainTextResponse:  # runs in a worker thread
        k8sxray.annotate("where", "thread")
        with k8sxray.subsegment("sync-work"):
            pass
        return PlainTextResponse("sync")

    @app.get("/status/{code}")
    async def status(code: int) -> PlainTextResponse:
        return PlainTextResponse("status", status_code=code)

    @app.get("/boom")
    async def boom() -> PlainTextResponse:
        raise ValueError("async kaboom")

    @app.get("/gather")
    async def gather() -> PlainTextResponse:
        async def child(name: str) -> None:
            with k8sxray.subsegment(name):
                await asyncio.sleep(0.01)

        await asyncio.gather(child("a"), child("b"))
        return PlainTextResponse("gathered")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                await asyncio.sleep(0.1)
                yield b"chunk%d;" % i

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/forever")
    async def forever() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(200):  # bounded: 10 s at most
                yield b"tick;"
                await asyncio.sleep(0.05)

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        for _ in range(2):
            text = await websocket.receive_text()
            await websocket.send_text("echo:" + text)
        await websocket.close()

    return app


def test_fastapi_segment_fields_and_header(
    daemon: Any, configure_to: Any, serve_asgi: Any, http: Any
) -> None:
    configure_to()
    app = fastapi_app()
    assert k8sxray.instrument(app) is app  # traced in place: keep serving `app`
    with serve_asgi(app) as base:
        before = time.time()
        resp = http(
            base,
            "/hello?q=1&access_token=abc",
            headers={"User-Agent": "tester/2.0", "Authorization": "Basic c2Vrcml0", "Cookie": "sid=sekrit"},
        )
    assert (resp.status, resp.body) == (200, b"hello")
    (doc,) = daemon.segments(1)
    assert doc["name"] == "svc"
    assert TRACE_ID.fullmatch(doc["trace_id"])
    assert before <= doc["start_time"] <= doc["end_time"] <= time.time()
    assert doc["http"] == {
        "request": {
            "method": "GET",
            "url": f"{base}/hello?q=1&access_token=REDACTED",
            "user_agent": "tester/2.0",
            "client_ip": "127.0.0.1",
        },
        "response": {"status": 200, "content_length": 5},
    }
    assert resp.headers["x-amzn-trace-id"] == f"Root={doc['trace_id']}"
    raw = b"".join(daemon.raw)
    assert b"sekrit" not in raw
    assert b"c2Vrcml0" not in raw


@pytest.mark.parametrize(
    ("code", "flags"), [(404, {"error"}), (429, {"error", "throttle"}), (502, {"fault"})]
)
def test_status_flags(  # noqa: PLR0917  # pytest fixtures and parameters
    daemon: Any, configure_to: Any, serve_asgi: Any, http: Any, code: int, flags: set[str]
) -> None:
    configure_to()
    with serve_asgi(k8sxray.instrument(fastapi_app())) as base:
        assert http(base, f"/status/{code}").status == code
    (doc,) = daemon.segments(1)
    assert {f for f in ("error", "throttle", "fault") if doc.get(f)} == flags


def test_exception_is_the_cause_and_the_500_is_recorded(
    daemon: Any, configure_to: Any, serve_asgi: Any, http: Any
) -> None:
    configure_to()
    with serve_asgi(k8sxray.instrument(fastapi_app())) as base:
        resp = http(base, "/boom")
    assert resp.status == 500
    (doc,) = daemon.segments(1)
    assert doc["fault"] is True
    assert doc["http"]["response"]["status"] == 500
    (exc,) = doc["cause"]["exceptions"]
    assert (exc["type"], exc["message"]) == ("ValueError", "async kaboom")
    assert any(frame["label"] == "boom" for frame in exc["stack"])


def test_context_follows_gather_and_worker_threads(
    daemon: Any, configure_to: Any, serve_asgi: Any, http: Any
) -> None:
    configure_to()
    with serve_asgi(k8sxray.instrument(fastapi_app())) as base:
        assert http(base, "/gather").body == b"gathered"
        assert http(base, "/sync").body == b"sync"
    gathered, synced = daemon.segments(2)
    assert sorted(s["name"] for s in gathered["subsegments"]) == ["a", "b"]
    assert synced["annotations"] == {"where": "thread"}
    assert [s["name"] for s in synced["subsegments"]] == ["sync-work"]


def test_header_round_trip(daemon: Any, configure_to: Any, serve_asgi: Any, http: Any) -> None:
    configure_to()
    with serve_asgi(k8sxray.instrument(fastapi_app())) as base:
        sampled = http(base, "/hello", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=1"})
        asked = http(base, "/hello", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=?"})
        unsampled = http(
            base, "/hello", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=0"}
        )
        hostile = http(base, "/hello", headers={"X-Amzn-Trace-Id": "Root=" + "9" * 3000 + ";Sampled=1"})
    assert sampled.headers["x-amzn-trace-id"] == f"Root={ROOT}"
    assert asked.headers["x-amzn-trace-id"] == f"Root={ROOT};Sampled=1"
    assert unsampled.headers["x-amzn-trace-id"] == f"Root={ROOT}"
    assert hostile.status == 200
    docs = daemon.segments(3)
    assert [d["trace_id"] for d in docs[:2]] == [ROOT, ROOT]
    assert [d.get("parent_id") for d in docs[:2]] == [PARENT, PARENT]
    assert TRACE_ID.fullmatch(docs[2]["trace_id"])
    assert docs[2]["trace_id"] != ROOT
    assert "parent_id" not in docs[2]
    assert daemon.quiet(0.2) == docs  # the Sampled=0 request sent nothing


def test_streaming_segment_ends_after_the_last_chunk(
    daemon: Any, configure_to: Any, serve_asgi: Any, http: Any
) -> None:
    configure_to()
    with serve_asgi(k8sxray.instrument(fastapi_app())) as base:
        resp = http(base, "/stream")
    assert resp.body == b"chunk0;chunk1;chunk2;"
    (doc,) = daemon.segments(1)
    assert doc["end_time"] - doc["start_time"] >= 0.3


def test_client_disconnect_still_ends_and_emits(daemon: Any, configure_to: Any, serve_asgi: Any) -> None:
    configure_to()
    with serve_asgi(k8sxray.instrument(fastapi_app())) as base:
        port = int(base.rsplit(":", 1)[1])
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            client.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            for _ in range(50):  # bounded: until the first chunk of the body arrived
                received += client.recv(4096)
                if b"tick;" in received:
                    break
            assert b"tick;" in received
        finally:
            client.close()
        (doc,) = daemon.segments(1, timeout=8)
    assert doc["http"]["response"]["status"] == 200
    assert doc["end_time"] - doc["start_time"] < 5


def test_websocket_gets_one_segment_per_connection(daemon: Any, configure_to: Any, serve_asgi: Any) -> None:
    pytest.importorskip("websockets")  # uvicorn's websocket support (and our client)
    from websockets.sync.client import connect

    configure_to()
    with serve_asgi(k8sxray.instrument(fastapi_app())) as base:
        url = base.replace("http://", "ws://") + "/ws"
        with connect(
            url, additional_headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=1"}
        ) as ws:
            assert ws.response is not None
            assert ws.response.headers["x-amzn-trace-id"] == f"Root={ROOT}"
            for text in ("one", "two"):
                ws.send(text)
                assert ws.recv(timeout=5) == "echo:" + text
        (doc,) = daemon.segments(1)
    assert doc["trace_id"] == ROOT
    assert doc["http"]["request"]["url"] == url
    assert doc["http"]["response"]["status"] == 101
    assert "subsegments" not in doc  # no noise per send/receive
    assert daemon.quiet(0.2) == [doc]


def test_lifespan_passes_through_untouched(
    daemon: Any, configure_to: Any, serve_asgi: Any, http: Any
) -> None:
    configure_to()
    events: list[str] = []
    with serve_asgi(k8sxray.instrument(fastapi_app(events)), lifespan="on") as base:
        assert events == ["startup"]
        http(base, "/hello")
    assert events == ["startup", "shutdown"]
    assert len(daemon.quiet(0.2)) == 1  # the request's segment only


Scope = dict[str, Any]


async def bare_asgi(
    scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 418, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"tea", "more_body": True})
    await send({"type": "http.response.body", "body": b"pot"})


def test_bare_asgi_callable(daemon: Any, configure_to: Any, serve_asgi: Any, http: Any) -> None:
    configure_to()
    traced = k8sxray.instrument(bare_asgi)
    assert traced is not bare_asgi
    assert k8sxray.instrument(traced) is traced
    with serve_asgi(traced, lifespan="on") as base:
        resp = http(base, "/teapot", method="PUT")
        with serve_asgi(bare_asgi) as plain_base:
            plain = http(plain_base, "/teapot", method="PUT")
    assert (resp.status, resp.body) == (plain.status, plain.body) == (418, b"teapot")
    drop = {"date", "x-amzn-trace-id"}
    assert {k: v for k, v in resp.headers.items() if k not in drop} == {
        k: v for k, v in plain.headers.items() if k not in drop
    }
    (doc,) = daemon.segments(1)
    assert doc["http"]["request"]["method"] == "PUT"
    assert doc["http"]["response"] == {"status": 418}
    assert doc["error"] is True
    assert k8sxray.uninstrument(traced) is bare_asgi


def test_uninstrument_fastapi(daemon: Any, configure_to: Any, serve_asgi: Any, http: Any) -> None:
    configure_to()
    app = k8sxray.instrument(fastapi_app())
    assert k8sxray.uninstrument(app) is app
    with serve_asgi(app) as base:
        resp = http(base, "/hello")
    assert "x-amzn-trace-id" not in resp.headers
    assert daemon.quiet(0.2) == []


class _RaisingEmitter:
    def send(self, document: bytes) -> None:
        raise RuntimeError("emitter exploded")

    def flush(self, timeout: float = 1.0) -> bool:
        return False

    def close(self) -> None:
        pass


def test_app_answers_when_the_emitter_raises(configure_to: Any, serve_asgi: Any, http: Any) -> None:
    from k8sxray import _recorder

    configure_to()
    _recorder.set_emitter(_RaisingEmitter())
    with serve_asgi(k8sxray.instrument(fastapi_app())) as base:
        for _ in range(3):
            resp = http(base, "/stream")
            assert (resp.status, resp.body) == (200, b"chunk0;chunk1;chunk2;")
            assert http(base, "/status/404").status == 404


def test_a_trace_header_the_app_set_is_not_added_twice(
    daemon: Any, configure_to: Any, serve_asgi: Any, http: Any
) -> None:
    """An app (or an SDK middleware inside it) that answers with its own X-Amzn-Trace-Id keeps
    it, alone: sampled, unsampled, W3C, any spelling of the name."""
    configure_to()

    async def own_header(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        name = scope["path"].strip("/").encode()  # the name's spelling, from the path
        await send({"type": "http.response.start", "status": 200, "headers": [(name, b"the app's")]})
        await send({"type": "http.response.body", "body": b"ok"})

    incoming: list[dict[str, str]] = [
        {},
        {"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=1"},
        {"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=0"},
        {"traceparent": f"00-{ROOT[2:10]}{ROOT[11:]}-{PARENT}-00"},
        {"traceparent": f"00-{ROOT[2:10]}{ROOT[11:]}-{PARENT}-01"},
    ]
    with serve_asgi(k8sxray.instrument(own_header)) as base:
        for headers in incoming:
            for spelling in ("x-amzn-trace-id", "X-Amzn-Trace-Id", "X-AMZN-TRACE-ID"):
                resp = http(base, f"/{spelling}", headers=headers)
                assert resp.all("X-Amzn-Trace-Id") == ["the app's"], (headers, resp.raw_headers)
    assert len(daemon.segments(3)) == 3  # the sampled requests are still traced


def test_a_websocket_accepted_with_the_apps_own_trace_header_keeps_it_alone(
    daemon: Any, configure_to: Any, serve_asgi: Any
) -> None:
    pytest.importorskip("websockets")  # uvicorn's websocket support (and our client)
    from websockets.sync.client import connect

    configure_to()

    async def own_header(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept", "headers": [(b"X-Amzn-Trace-Id", b"the app's")]})
        await send({"type": "websocket.close", "code": 1000})

    with serve_asgi(k8sxray.instrument(own_header)) as base:
        url = base.replace("http://", "ws://") + "/ws"
        with connect(
            url, additional_headers={"traceparent": f"00-{ROOT[2:10]}{ROOT[11:]}-{PARENT}-01"}
        ) as ws:
            assert ws.response is not None
            assert ws.response.headers.get_all("X-Amzn-Trace-Id") == ["the app's"]
        (doc,) = daemon.segments(1)
    assert doc["trace_id"] == ROOT  # traced all the same, from the traceparent
    assert doc["parent_id"] == PARENT
