"""Documents too large for one datagram: split, then trimmed, so that every entity and every parent
link arrives (on a real UDP socket)."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import k8sxray
from k8sxray import _recorder
from k8sxray._emitter import UDPEmitter
from k8sxray._fit import fit
from k8sxray._protocol import HEADER, MAX_DATAGRAM, MAX_DOCUMENT
from k8sxray._segment import Segment, Static, Subsegment

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"


def _request(header: str | None = None) -> Segment:
    trace = _recorder.start_request(header, "example.com", "GET", "/", time.time())
    assert isinstance(trace, Segment)
    return trace


@pytest.fixture
def to_receiver(receiver: Any) -> Any:
    receiver.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)  # room for bursts
    k8sxray.configure(service_name="svc", sampling_rate=1.0, daemon_address=receiver.address, plugins=())
    return receiver


def _parents(docs: list[dict[str, Any]]) -> dict[str, str | None]:
    """Every entity's id and its parent's id, however it arrived (nested or on its own)."""
    found: dict[str, str | None] = {}

    def walk(doc: dict[str, Any], parent: str | None) -> None:
        assert doc["id"] not in found, "an entity arrived twice"
        found[doc["id"]] = parent
        for child in doc.get("subsegments", ()):
            walk(child, doc["id"])

    for doc in docs:
        if doc.get("type") == "subsegment":
            assert doc["trace_id"] == docs[0]["trace_id"]
            walk(doc, doc["parent_id"])
        else:
            walk(doc, None)
    return found


def test_a_request_with_70000_characters_of_metadata_arrives_trimmed(
    to_receiver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seg = _request(f"Root={ROOT};Parent={PARENT};Sampled=1")
    seg.method, seg.url, seg.status = "GET", "http://example.com/", 200
    k8sxray.put_metadata("blob", "x" * 70000)
    k8sxray.put_metadata("small", {"kept": True})
    with caplog.at_level(logging.WARNING, logger="k8sxray"):
        _recorder.end_segment(seg)
        (doc,) = to_receiver.documents(1)
    (raw,) = to_receiver.raw
    assert len(raw) <= MAX_DATAGRAM
    assert (doc["id"], doc["trace_id"], doc["parent_id"]) == (seg.id, ROOT, PARENT)
    assert doc["name"] == "svc"
    assert doc["http"] == {
        "request": {"method": "GET", "url": "http://example.com/"},
        "response": {"status": 200},
    }
    blob = doc["metadata"]["default"]["blob"]
    assert blob.startswith("x" * 60000)
    assert blob.endswith(f"...[trimmed by k8sxray: {70000 - blob.index('.')} chars]")
    assert doc["metadata"]["default"]["small"] == {"kept": True}  # only what did not fit was cut
    assert doc["metadata"]["k8sxray"] == {"trimmed": ["metadata.default.blob"], "trimmed_count": 1}
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"segment {seg.id} ('svc') of trace {ROOT}" in message
    assert "subsegment" not in message  # the log names the request's own segment
    assert "metadata.default.blob" in message


def test_many_subsegments_and_large_metadata_all_arrive_with_their_parents(to_receiver: Any) -> None:
    seg = _request()
    k8sxray.put_metadata("blob", {"rows": ["r" * 100] * 800})  # ~80 KB, not a string
    ids = {seg.id}
    for i in range(40):
        with k8sxray.subsegment(f"call{i}") as sub:
            k8sxray.put_metadata("body", "b" * 2000)
            with k8sxray.subsegment(f"inner{i}") as inner:
                k8sxray.annotate("n", i)
        ids |= {sub.id, inner.id}  # type: ignore[union-attr]
    _recorder.end_segment(seg)
    docs = to_receiver.documents(41)
    assert to_receiver.quiet(0.1) == to_receiver.raw  # nothing more came
    assert all(len(raw) <= MAX_DATAGRAM for raw in to_receiver.raw)
    parents = _parents(docs)
    assert set(parents) == ids  # every entity, once
    assert all(parent in ids for entity, parent in parents.items() if entity != seg.id)
    (root,) = [d for d in docs if "type" not in d]
    assert root["metadata"]["default"]["blob"].startswith("[trimmed by k8sxray: ")
    assert root["metadata"]["k8sxray"]["trimmed"] == ["metadata.default.blob"]


def test_a_subsegment_ended_after_its_request_arrives_trimmed(to_receiver: Any) -> None:
    seg = _request()
    late = _recorder.begin_subsegment("late")
    assert late is not None
    _recorder.end_segment(seg)
    late.put_metadata("blob", "z" * 70000)
    _recorder.end_subsegment(late)
    docs = to_receiver.documents(2)
    streamed = next(d for d in docs if d.get("type") == "subsegment")
    assert all(len(raw) <= MAX_DATAGRAM for raw in to_receiver.raw)
    assert (streamed["id"], streamed["parent_id"], streamed["trace_id"]) == (late.id, seg.id, seg.trace_id)
    assert streamed["metadata"]["k8sxray"]["trimmed"] == ["metadata.default.blob"]


# --- any document ---------------------------------------------------------------------------------
SIZES = st.sampled_from([0, 0, 100, 3000, 20000, 40000, 70000, 100000])
TEXT = st.sampled_from(["x", "é", '"', "\n", "\U0001f600", "ab\\"])  # plain, escaped and widely escaped
NODE = st.tuples(st.integers(0, 30), SIZES, TEXT, st.integers(0, 3000), st.booleans())


def _raise(depth: int) -> None:
    if depth:
        _raise(depth - 1)
    raise ValueError("m" * 5000)


def _tree(root: tuple[int, str, int, bool], nodes: list[tuple[int, int, str, int, bool]]) -> Segment:
    """A finished segment with subsegments under random parents, each with metadata of the given size
    (of the given character), an annotation and maybe an exception with a long stack and message."""
    seg = Segment(Static("svc", sdk_version="1"), ROOT, "0123456789abcdef", PARENT, 100.5)
    seg.end_time = 101.5
    entities: list[Segment | Subsegment] = [seg]

    def fill(entity: Segment | Subsegment, size: int, char: str, label: int, failed: bool) -> None:
        if size:
            entity.put_metadata("blob", char * size)
        entity.put_annotation("label", "l" * label)
        if failed:
            try:
                _raise(60)
            except ValueError as exc:
                entity.add_exception(exc)

    fill(seg, *root)
    for parent, size, char, label, failed in nodes:
        owner = entities[parent % len(entities)]
        sub = Subsegment(f"sub{len(entities)}", "remote", owner, 100.6)
        sub.end_time = 100.7
        owner._add_child(sub)
        fill(sub, size, char, label, failed)
        entities.append(sub)
    return seg


def _expected(entity: Segment | Subsegment, parent: str | None, out: dict[str, str | None]) -> None:
    out[entity.id] = parent
    for sub in entity.subsegments or ():
        _expected(sub, entity.id, out)


@pytest.fixture(scope="module")
def udp() -> Iterator[tuple[socket.socket, UDPEmitter]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    address = sock.getsockname()
    emitter = UDPEmitter(lambda: address, delay=0, serialise=_recorder.datagrams)
    yield sock, emitter
    emitter.close()
    sock.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(root=st.tuples(SIZES, TEXT, st.integers(0, 3000), st.booleans()), nodes=st.lists(NODE, max_size=25))
def test_any_large_document_arrives_whole_in_datagrams_that_fit(
    udp: tuple[socket.socket, UDPEmitter],
    root: tuple[int, str, int, bool],
    nodes: list[tuple[int, int, str, int, bool]],
) -> None:
    sock, emitter = udp
    seg = _tree(root, nodes)
    expected: dict[str, str | None] = {}
    _expected(seg, None, expected)
    sent_before = emitter.sent
    emitter.send_later(seg)  # serialised (and split, trimmed) the way the recorder's segments are
    assert emitter.dropped == 0
    raw = [sock.recv(70000) for _ in range(emitter.sent - sent_before)]
    assert all(len(datagram) <= MAX_DATAGRAM and datagram.startswith(HEADER) for datagram in raw)
    docs = [json.loads(datagram[len(HEADER) :]) for datagram in raw]
    assert _parents(docs) == expected  # every entity, once, under its own parent
    (top,) = [d for d in docs if "type" not in d]
    assert (top["id"], top["trace_id"], top["parent_id"]) == (seg.id, ROOT, PARENT)
    for doc in docs:
        assert doc["name"]
        assert doc["end_time"] > doc["start_time"]


# --- trimming, place by place ------------------------------------------------------------------------
def _doc(**fields: Any) -> dict[str, Any]:
    return {
        "name": "svc",
        "id": "0123456789abcdef",
        "trace_id": ROOT,
        "start_time": 1.0,
        "end_time": 2.0,
        **fields,
    }


def test_a_long_stack_loses_its_outermost_frames_and_counts_them() -> None:
    frames = [{"path": f"/app/module{i}.py" + "/x" * 40, "line": i, "label": "f"} for i in range(2000)]
    cause = {
        "working_directory": "/app",
        "exceptions": [{"id": "e" * 16, "message": "boom", "stack": frames}],
    }
    (doc,), dropped = fit(json.dumps(_doc(fault=True, cause=cause)), 60000)
    parsed = json.loads(doc)
    (exc,) = parsed["cause"]["exceptions"]
    assert dropped == 0
    assert exc["stack"] == frames[: len(exc["stack"])]  # the innermost frames, where it failed, are kept
    assert exc["truncated"] == 2000 - len(exc["stack"]) > 0
    assert parsed["fault"] is True
    assert parsed["metadata"]["k8sxray"]["trimmed"] == ["cause.exceptions[0].stack"]


def test_long_strings_are_cut_largest_first_then_whole_fields_go() -> None:
    document = _doc(
        annotations={"big": "a" * 50000, "small": "s" * 100}, http={"request": {"url": "u" * 30000}}
    )
    (doc,), _ = fit(json.dumps(document), 40000)
    parsed = json.loads(doc)
    assert parsed["annotations"]["big"].endswith("chars]")
    assert parsed["annotations"]["small"] == "s" * 100
    assert parsed["http"]["request"]["url"].startswith("u" * 1000)
    assert parsed["metadata"]["k8sxray"]["trimmed"] == ["annotations.big"]
    numbers = _doc(aws={f"k{i}": i for i in range(20000)}, annotations={"n": 1})
    (doc,), _ = fit(json.dumps(numbers), 20000)
    parsed = json.loads(doc)
    assert "aws" not in parsed  # nothing to cut inside: the field went whole
    assert parsed["annotations"] == {"n": 1}
    assert parsed["metadata"]["k8sxray"] == {"trimmed": ["aws"], "trimmed_count": 1}


def test_what_cannot_fit_even_trimmed_is_dropped_and_said(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="k8sxray"):
        assert fit(json.dumps(_doc(metadata={"d": {"k": "v" * 500}})), 100) == ([], 1)
        assert fit(b"not json" * 10000, 1000) == ([], 1)
    dropped, unreadable = (r.getMessage() for r in caplog.records)
    assert f"segment 0123456789abcdef ('svc') of trace {ROOT} does not fit" in dropped
    assert "is not a JSON object" in unreadable


def test_the_emitter_fits_a_raw_document_too_large_for_one_datagram() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    address = sock.getsockname()
    emitter = UDPEmitter(lambda: address, delay=0)
    try:
        nested = {
            **_doc(),
            "subsegments": [{"name": "c", "id": "1" * 16, "start_time": 1.0, "end_time": 2.0}],
        }
        emitter.send(json.dumps({**nested, "annotations": {"k": "v" * 70000}}).encode())
        first, second = (json.loads(sock.recv(70000)[len(HEADER) :]) for _ in range(2))
    finally:
        emitter.close()
        sock.close()
    assert (first["type"], first["parent_id"], first["trace_id"]) == ("subsegment", "0123456789abcdef", ROOT)
    assert second["id"] == "0123456789abcdef"
    assert len(json.dumps(second, separators=(",", ":"))) <= MAX_DOCUMENT
