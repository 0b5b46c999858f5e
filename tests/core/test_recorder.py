"""The recorder API that integrations use, through the in-memory and the UDP emitters."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import socket
import threading
import time
import weakref
from typing import Any

import pytest

import k8sxray
from k8sxray import _recorder
from k8sxray._segment import Segment, UnsampledTrace
from k8sxray.testing import InMemoryEmitter, capture_segments

ROOT = "1-5759e988-bd862e3fe1be46a994272793"


@pytest.fixture(autouse=True)
def _configured() -> None:
    k8sxray.configure(service_name="svc", sampling_rate=1.0, daemon_address="127.0.0.1:9", plugins=())


def _request(header: str | None = None) -> Segment | UnsampledTrace:
    trace = _recorder.start_request(header, "example.com", "GET", "/", time.time())
    assert trace is not None
    return trace


def test_begin_subsegment_outside_a_request_returns_none() -> None:
    assert _recorder.begin_subsegment("x") is None
    assert _recorder.trace_header() is None


def test_subsegments_nest_and_restore_the_current_entity() -> None:
    with capture_segments() as docs:
        seg = _request()
        outer = _recorder.begin_subsegment("outer")
        assert outer is not None
        inner = _recorder.begin_subsegment("inner", namespace="aws")
        assert inner is not None
        assert _recorder.current() is inner
        _recorder.end_subsegment(inner)
        assert _recorder.current() is outer
        _recorder.end_subsegment(outer)
        _recorder.end_subsegment(outer)  # twice is harmless
        assert _recorder.current() is seg
        _recorder.end_segment(seg)
        assert _recorder.current() is None
    (doc,) = docs
    (sub,) = doc["subsegments"]
    assert sub["name"] == "outer"
    assert sub["namespace"] == "remote"
    assert sub["subsegments"][0]["name"] == "inner"
    assert sub["subsegments"][0]["namespace"] == "aws"
    assert doc["start_time"] <= sub["start_time"] <= sub["end_time"] <= doc["end_time"]


def test_subsegment_fields_http_aws_exception_annotations_metadata() -> None:
    with capture_segments() as docs:
        seg = _request()
        sub = _recorder.begin_subsegment("api.example.com")
        assert sub is not None
        sub.set_http_request(
            "POST", "https://user:pw@api.example.com/x?X-Amz-Signature=abc&a=1#frag", traced=True
        )
        sub.set_http_response(503, 12)
        sub.set_aws({"operation": "GetItem", "region": "eu-west-1"})
        sub.set_aws({"table_name": "t"})
        sub.put_annotation("good_key", "v")
        sub.put_annotation("bad key!", "ignored")
        sub.put_annotation("nan", float("nan"))
        sub.put_metadata("k", {"nested": [1, 2]}, namespace="ns")
        sub.put_metadata("x", object())
        try:
            raise ConnectionError("refused")
        except ConnectionError as exc:
            sub.add_exception(exc, remote=True)
        _recorder.end_subsegment(sub)
        _recorder.end_segment(seg)
    sub_doc = docs[0]["subsegments"][0]
    assert sub_doc["http"] == {
        "request": {
            "method": "POST",
            "url": "https://api.example.com/x?X-Amz-Signature=REDACTED&a=1",
            "traced": True,
        },
        "response": {"status": 503, "content_length": 12},
    }
    assert sub_doc["fault"] is True
    assert sub_doc["aws"] == {"operation": "GetItem", "region": "eu-west-1", "table_name": "t"}
    assert sub_doc["annotations"] == {"good_key": "v"}
    assert sub_doc["metadata"]["ns"] == {"k": {"nested": [1, 2]}}
    assert sub_doc["metadata"]["default"]["x"].startswith("<object object")
    (exc_doc,) = sub_doc["cause"]["exceptions"]
    assert exc_doc["type"] == "ConnectionError"
    assert exc_doc["message"] == "refused"
    assert exc_doc["remote"] is True
    assert len(exc_doc["id"]) == 16
    assert exc_doc["stack"][0]["label"] == "test_subsegment_fields_http_aws_exception_annotations_metadata"


@pytest.mark.parametrize(
    ("status", "flags"), [(404, {"error"}), (429, {"error", "throttle"}), (502, {"fault"})]
)
def test_status_flags(status: int, flags: set[str]) -> None:
    with capture_segments() as docs:
        seg = _request()
        sub = _recorder.begin_subsegment("down")
        assert sub is not None
        sub.set_http_response(status)
        _recorder.end_subsegment(sub)
        _recorder.end_segment(seg)
    sub_doc = docs[0]["subsegments"][0]
    assert {f for f in ("error", "throttle", "fault") if sub_doc.get(f)} == flags


def test_trace_header_for_downstream_calls() -> None:
    seg = _request(f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a:1")
    assert isinstance(seg, Segment)
    assert _recorder.trace_header() == f"Root={ROOT};Parent={seg.id};Sampled=1;Lineage=a:1"
    sub = _recorder.begin_subsegment("down")
    assert sub is not None
    assert _recorder.trace_header(sub) == f"Root={ROOT};Parent={sub.id};Sampled=1;Lineage=a:1"
    assert _recorder.trace_header() == f"Root={ROOT};Parent={sub.id};Sampled=1;Lineage=a:1"
    _recorder.end_subsegment(sub)
    _recorder.end_segment(seg)


def test_unsampled_trace_propagates_sampled_0_and_records_nothing() -> None:
    with capture_segments() as docs:
        trace = _request(f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=0")
        assert isinstance(trace, UnsampledTrace)
        assert _recorder.begin_subsegment("x") is None
        k8sxray.annotate("k", "v")
        assert _recorder.trace_header() == f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=0"
        _recorder.end_segment(trace)
    assert docs == []


def test_a_request_the_sampler_turns_down_gets_a_new_trace_to_answer_with() -> None:
    from k8sxray.sampling.sampler import RateSampler

    with capture_segments() as docs:
        _recorder.state().sampler = RateSampler(fixed_target=0, rate=0.0)  # says no, even while capturing
        trace = _request()
        assert isinstance(trace, UnsampledTrace)
        assert trace.response_header == "Root=" + trace.trace_id
        assert len(trace.trace_id) == 35
        assert _recorder.trace_header() == f"Root={trace.trace_id};Sampled=0"  # downstream agrees
        _recorder.end_segment(trace)
    assert docs == []


def test_subsegment_ended_after_its_segment_is_sent_on_its_own() -> None:
    with capture_segments() as docs:
        seg = _request()
        sub = _recorder.begin_subsegment("late")
        assert sub is not None
        _recorder.end_segment(seg)
        _recorder.end_subsegment(sub)
    assert docs[0]["subsegments"][0]["in_progress"] is True  # serialised before it ended
    late = docs[1]
    assert late["type"] == "subsegment"
    assert late["trace_id"] == docs[0]["trace_id"]
    assert late["parent_id"] == docs[0]["id"]
    assert "end_time" in late


def test_context_follows_asyncio_tasks_and_copied_contexts() -> None:
    async def child(name: str) -> None:
        with k8sxray.subsegment(name):
            await asyncio.sleep(0.001)
            k8sxray.annotate("task", name)

    async def main() -> None:
        seg = _request()
        await asyncio.gather(child("a"), child("b"), child("c"))
        _recorder.end_segment(seg)

    with capture_segments() as docs:
        asyncio.run(main())
        seg = _request()
        ctx = contextvars.copy_context()
        worker = threading.Thread(target=ctx.run, args=(lambda: k8sxray.annotate("thread", True),))
        worker.start()
        worker.join(5)
        _recorder.end_segment(seg)
    names = sorted(s["name"] for s in docs[0]["subsegments"])
    assert names == ["a", "b", "c"]
    assert all(s["annotations"] == {"task": s["name"]} for s in docs[0]["subsegments"])
    assert docs[1]["annotations"] == {"thread": True}


def test_subsegment_context_manager_records_and_reraises() -> None:
    with capture_segments() as docs:
        seg = _request()
        with pytest.raises(KeyError), k8sxray.subsegment("lookup"):
            raise KeyError("missing")
        _recorder.end_segment(seg)
    sub = docs[0]["subsegments"][0]
    assert sub["namespace"] == "local"
    assert sub["fault"] is True
    assert sub["cause"]["exceptions"][0]["type"] == "KeyError"


def test_context_missing_logs_once_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    k8sxray.configure(
        service_name="svc", daemon_address="127.0.0.1:9", context_missing="RUNTIME_ERROR", plugins=()
    )
    with caplog.at_level(logging.WARNING, logger="k8sxray"):
        for _ in range(3):
            _recorder.context_missing("requests call")
            k8sxray.annotate("k", 1)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("requests call" in m for m in messages) == 1
    assert sum("annotate" in m for m in messages) == 1
    assert all(r.levelno == logging.ERROR for r in caplog.records)
    caplog.clear()
    k8sxray.configure(
        service_name="svc", daemon_address="127.0.0.1:9", context_missing="IGNORE_ERROR", plugins=()
    )
    with caplog.at_level(logging.DEBUG, logger="k8sxray"):
        _recorder.context_missing("other call")
    assert caplog.records == []


def test_in_memory_emitter_is_usable_directly() -> None:
    emitter = InMemoryEmitter()
    previous = _recorder.set_emitter(emitter)
    try:
        _recorder.end_segment(_request())
    finally:
        _recorder.set_emitter(previous)
    assert len(emitter.wait_for(1, timeout=1)) == 1
    assert emitter.documents[0].startswith(b'{"name":"svc"')


def test_plugin_data_is_collected_once_per_configure_and_on_every_segment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from k8sxray import plugins

    calls: list[tuple[str, ...]] = []

    def fake_collect(names: tuple[str, ...]) -> plugins.PluginData:
        calls.append(tuple(names))
        return plugins.PluginData(
            origin="AWS::EKS::Container",
            aws={"eks": {"pod": "web-1", "cluster_name": "prod", "container_id": "abc"}},
            metadata={"k8s": {"namespace": "shop"}},
        )

    monkeypatch.setattr(plugins, "collect", fake_collect)
    k8sxray.configure(service_name="svc", sampling_rate=1.0, daemon_address="127.0.0.1:9", plugins=())
    with capture_segments() as docs:
        for _ in range(3):
            seg = _request()
            k8sxray.put_metadata("user", "u-1", namespace="k8s")
            _recorder.end_segment(seg)
    assert len(calls) == 1
    for doc in docs:
        assert doc["origin"] == "AWS::EKS::Container"
        assert doc["aws"]["eks"] == {"pod": "web-1", "cluster_name": "prod", "container_id": "abc"}
        assert doc["aws"]["xray"]["sdk"] == "k8sxray"
        assert doc["metadata"] == {"k8s": {"namespace": "shop", "user": "u-1"}}


def test_late_subsegment_is_not_duplicated_when_the_flusher_serialises(receiver: Any) -> None:
    k8sxray.configure(service_name="svc", sampling_rate=1.0, daemon_address=receiver.address, plugins=())
    _recorder.state().own_emitter._delay = 60.0  # only the explicit flush below sends
    seg = _request()
    sub = _recorder.begin_subsegment("late")
    assert sub is not None
    _recorder.end_segment(seg)  # queued as an object: the flusher serialises it later
    _recorder.end_subsegment(sub)
    docs = receiver.documents(2)
    (segment_doc,) = [d for d in docs if "type" not in d]
    (late_doc,) = [d for d in docs if d.get("type") == "subsegment"]
    assert "subsegments" not in segment_doc
    assert late_doc["id"] == sub.id
    assert receiver.quiet(0.1) == receiver.raw


def test_a_sent_segment_and_its_subsegments_are_freed_without_the_gc(receiver: Any) -> None:
    k8sxray.configure(service_name="svc", sampling_rate=1.0, daemon_address=receiver.address, plugins=())
    seg = _request()
    with k8sxray.subsegment("outer"), k8sxray.subsegment("inner"):
        pass
    assert seg.subsegments is not None
    outer = seg.subsegments[0]
    refs = [weakref.ref(seg), weakref.ref(outer)]
    gc.disable()
    try:
        _recorder.end_segment(seg)
        (doc,) = receiver.documents(1)
        del seg, outer
        assert [ref() for ref in refs] == [None, None]  # freed by reference counting alone
    finally:
        gc.enable()
    assert [s["name"] for s in doc["subsegments"]] == ["outer"]
    assert [s["name"] for s in doc["subsegments"][0]["subsegments"]] == ["inner"]


def test_large_segment_is_split_into_datagrams_that_fit(
    receiver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)  # room for the burst
    k8sxray.configure(service_name="svc", sampling_rate=1.0, daemon_address=receiver.address, plugins=())
    seg = _request()
    for i in range(15):
        with k8sxray.subsegment(f"part{i}"):
            k8sxray.put_metadata("blob", "x" * 5000)
    with k8sxray.subsegment("monster"):
        k8sxray.put_metadata("blob", "y" * 70000)  # cannot fit in any datagram: trimmed
        monster = _recorder.current()
    with caplog.at_level(logging.WARNING, logger="k8sxray"):
        _recorder.end_segment(seg)
        docs = receiver.documents(17)
    assert all(len(raw) <= 65507 for raw in receiver.raw)
    (root,) = [d for d in docs if "type" not in d]
    parts = [d for d in docs if d.get("type") == "subsegment"]
    assert root["id"] == seg.id
    assert sorted(p["name"] for p in parts) == sorted([f"part{i}" for i in range(15)] + ["monster"])
    assert all(p["trace_id"] == seg.trace_id and p["parent_id"] == seg.id for p in parts)
    (trimmed,) = [p for p in parts if p["name"] == "monster"]
    assert trimmed["metadata"]["k8sxray"]["trimmed"] == ["metadata.default.blob"]
    (message,) = [r.getMessage() for r in caplog.records if "trimmed" in r.getMessage()]
    assert f"subsegment {monster.id} ('monster')" in message  # type: ignore[union-attr]


def test_kind_of_detects_wsgi_and_asgi_callables() -> None:
    import functools

    from k8sxray._instrument import kind_of

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None: ...

    def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
        return []

    class AsgiObject:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    class WsgiObject:
        def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
            return []

    assert [kind_of(a) for a in (asgi_app, AsgiObject(), functools.partial(asgi_app))] == ["asgi"] * 3
    assert [kind_of(a) for a in (wsgi_app, WsgiObject(), functools.partial(wsgi_app))] == ["wsgi"] * 3


def test_an_incoming_sampled_0_header_in_the_usual_form_continues_unsampled() -> None:
    header = f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=0"
    trace = _recorder.continue_unsampled(header)
    try:
        assert isinstance(trace, UnsampledTrace)
        assert (trace.trace_id, trace.parent_id, trace.extra) == (ROOT, "53995c3f42cd8ad8", "")
        assert trace.response_header == f"Root={ROOT}"
        assert _recorder.current() is trace
        assert _recorder.trace_header() == header
    finally:
        assert trace is not None
        _recorder.end_segment(trace)
    assert _recorder.current() is None


@pytest.mark.parametrize(
    "header",
    [
        f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1",
        f"Root={ROOT.upper()};Parent=53995c3f42cd8ad8;Sampled=0",
        f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=0;Lineage=a:1",
        f"Root={ROOT};Sampled=0",
        f"Parent=53995c3f42cd8ad8;Root={ROOT};Sampled=0",
        f"Root={ROOT[:-1]}x;Parent=53995c3f42cd8ad8;Sampled=0",
        f"Root={ROOT};Parent=53995c3f42cd8ad\n;Sampled=0",
    ],
)
def test_anything_else_is_left_to_start_request(header: str) -> None:
    assert _recorder.continue_unsampled(header) is None
    assert _recorder.current() is None


def test_new_ids_have_x_rays_form_and_follow_the_clock() -> None:
    from k8sxray import _ids

    now = 1_700_000_000.25
    trace, segment = _ids.new_trace(now)
    root = _ids.new_root(now)
    later = _ids.new_root(now + 1)
    for value in (trace, root, later):
        assert len(value) == 35
        assert value[:2] == "1-"
        assert value[10] == "-"
        int(value[2:10] + value[11:], 16)  # hex throughout
    assert trace[2:10] == root[2:10] == f"{int(now):08x}"
    assert later[2:10] == f"{int(now) + 1:08x}"
    assert len(segment) == 16
    int(segment, 16)
    assert len({_ids.new_root(now) for _ in range(100)}) == 100
