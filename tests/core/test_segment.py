"""The serialiser: valid JSON for any input, static parts merged, large documents split."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k8sxray import _segment as segment_module
from k8sxray._recorder import documents
from k8sxray._segment import (
    Entity,
    Segment,
    Static,
    Subsegment,
    plain_json,
    plain_subsegment_json,
    scrub_url,
    split,
    time_json,
)

ROOT = "1-5759e988-bd862e3fe1be46a994272793"


def _segment(static: Static | None = None) -> Segment:
    seg = Segment(static or Static("svc", sdk_version="1.0"), ROOT, "0123456789abcdef", None, 100.5)
    seg.end_time = 101.25
    return seg


@given(st.text(), st.text(), st.text(), st.text(), st.text())
def test_any_request_strings_serialise_to_valid_json(
    method: str, url: str, agent: str, ip: str, annotation: str
) -> None:
    seg = _segment()
    seg.method, seg.url, seg.user_agent, seg.client_ip = method, url, agent, ip
    seg.set_status(200)
    seg.put_annotation("value", annotation)
    sub = Subsegment(annotation or "x", "remote", seg, 100.6)
    seg._add_child(sub)
    doc = json.loads(seg.to_json())
    assert doc["http"]["request"] == {"method": method, "url": url, "user_agent": agent, "client_ip": ip}
    assert doc["annotations"] == {"value": annotation}
    assert doc["subsegments"][0]["name"] == (annotation or "x")
    assert doc["subsegments"][0]["in_progress"] is True


def test_static_parts_and_user_metadata_merge() -> None:
    static = Static(
        "svc",
        sdk_version="9.9",
        origin="AWS::EKS::Container",
        aws={"eks": {"pod": "p-1", "cluster_name": "c"}},
        metadata={"k8s": {"namespace": "shop", "node": "n1"}},
    )
    plain = json.loads(_segment(static).to_json())
    assert plain["origin"] == "AWS::EKS::Container"
    assert plain["aws"] == {
        "eks": {"pod": "p-1", "cluster_name": "c"},
        "xray": {"sdk": "k8sxray", "sdk_version": "9.9"},
    }
    assert plain["metadata"] == {"k8s": {"namespace": "shop", "node": "n1"}}
    seg = _segment(static)
    seg.put_metadata("team", "payments", namespace="k8s")
    seg.put_metadata("order", 7)
    seg.set_aws({"account_id": "123"})
    doc = json.loads(seg.to_json())
    assert doc["metadata"] == {
        "k8s": {"namespace": "shop", "node": "n1", "team": "payments"},
        "default": {"order": 7},
    }
    assert doc["aws"]["account_id"] == "123"
    assert doc["aws"]["eks"]["pod"] == "p-1"
    assert static.metadata == {"k8s": {"namespace": "shop", "node": "n1"}}  # never mutated
    assert json.loads(_segment(static).to_json())["metadata"] == plain["metadata"]


def test_unserialisable_metadata_never_breaks_the_document() -> None:
    seg = _segment()
    circular: dict[str, Any] = {}
    circular["self"] = circular
    seg.put_metadata("circular", circular)
    seg.put_metadata("nan", float("nan"))
    seg.put_metadata("obj", object())
    seg.put_metadata("reserved", 1, namespace="AWS.internal")
    doc = json.loads(seg.to_json())
    assert set(doc["metadata"]["default"]) == {"circular", "nan", "obj"}
    assert "AWS.internal" not in doc["metadata"]


def test_exception_referenced_by_id_in_the_parent() -> None:
    seg = _segment()
    sub = Subsegment("call", "remote", seg, 100.6)
    seg._add_child(sub)
    try:
        raise OSError("down")
    except OSError as exc:
        sub.add_exception(exc)
        seg.add_exception(exc)
    doc = json.loads(seg.to_json())
    exc_id = doc["subsegments"][0]["cause"]["exceptions"][0]["id"]
    assert doc["cause"] == exc_id
    assert doc["fault"] is True


def test_split_streams_subsegments_and_trims_what_does_not_fit_alone() -> None:
    seg = _segment()
    for i in range(5):
        sub = Subsegment(f"sub{i}", "remote", seg, 100.6)
        sub.put_metadata("blob", "x" * 3000)
        sub.end_time = 100.7
        seg._add_child(sub)
        inner = Subsegment(f"inner{i}", "local", sub, 100.61)
        inner.end_time = 100.62
        sub._add_child(inner)
    huge = Subsegment("huge", "local", seg, 100.6)
    huge.put_metadata("blob", "y" * 20000)
    seg._add_child(huge)
    docs = split(seg, 8000)
    assert all(len(d) <= 8000 for d in docs)
    parsed = [json.loads(d) for d in docs]
    streamed = [d for d in parsed if d.get("type") == "subsegment"]
    assert sorted(d["name"] for d in streamed) == ["huge"] + [f"sub{i}" for i in range(5)]
    assert all(d["trace_id"] == ROOT and d["parent_id"] == seg.id for d in streamed)
    assert all(d["subsegments"][0]["name"].startswith("inner") for d in streamed if d["name"] != "huge")
    (trimmed,) = [d for d in streamed if d["name"] == "huge"]
    assert trimmed["id"] == huge.id
    assert trimmed["metadata"]["default"]["blob"].startswith("yyy")
    assert trimmed["metadata"]["k8sxray"] == {"trimmed": ["metadata.default.blob"], "trimmed_count": 1}
    (root,) = [d for d in parsed if "type" not in d]
    assert root["id"] == seg.id
    assert "subsegments" not in root


def test_split_keeps_a_small_document_whole() -> None:
    seg = _segment()
    assert split(seg, 65000) == [seg.to_json()]


def test_scrub_url() -> None:
    assert scrub_url("https://u:p@h.example/a?b=1") == "https://h.example/a?b=1"
    assert scrub_url("https://h/a?X-Amz-Credential=AKIA&X-Amz-Signature=s&keep=1#f") == (
        "https://h/a?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&keep=1"
    )
    assert scrub_url("http://h/p?api_key=1&sessionid=2&Password=3&q=@x") == (
        "http://h/p?api_key=REDACTED&sessionid=REDACTED&Password=REDACTED&q=@x"
    )
    assert scrub_url("/relative/path") == "/relative/path"
    assert scrub_url("https://u@h.example") == "https://h.example"
    assert scrub_url("http://h.example/a#frag") == "http://h.example/a"
    assert scrub_url("http://[::1]:8080/a/b") == "http://[::1]:8080/a/b"
    assert scrub_url("http://h.example:8080/a/b") == "http://h.example:8080/a/b"


def test_the_same_exception_recorded_twice_on_one_entity_keeps_its_details() -> None:
    seg = _segment()
    try:
        raise ValueError("once")
    except ValueError as exc:
        seg.add_exception(exc)
        seg.add_exception(exc)
    doc = json.loads(seg.to_json())
    assert doc["cause"]["exceptions"][0]["message"] == "once"


def _plain(static: Static | None = None, parent: str | None = None) -> Segment:
    """A segment as a middleware leaves it for the usual request."""
    seg = Segment(static or Static("svc", sdk_version="1.0"), ROOT, "0123456789abcdef", parent, 100.5)
    seg.method, seg.url, seg.user_agent, seg.client_ip = "GET", "http://h/p", "curl/8", "10.0.0.1"
    seg.status, seg.content_length, seg.end_time = 200, 5, 101.25
    seg.response_header, seg._token, seg._sent = "Root=" + ROOT, None, True
    return seg


@given(st.text(), st.text(), st.text(), st.text(), st.text())
def test_the_one_step_document_is_the_general_one(
    name: str, method: str, url: str, agent: str, ip: str
) -> None:
    origin = "AWS::EKS::Container"
    static = Static(
        name, sdk_version="1.0", origin=origin, aws={"eks": {"pod": "p"}}, metadata={"k8s": {"n": 1}}
    )
    for parent in (None, "53995c3f42cd8ad8"):
        seg = _plain(static, parent)
        seg.method, seg.url, seg.user_agent, seg.client_ip = method, url, agent, ip
        fast = plain_json(seg)
        assert fast is not None
        assert fast == seg.to_json()
        assert json.loads(fast)["http"]["request"]["url"] == url


def _with_annotation(seg: Segment) -> None:
    seg.put_annotation("k", "v")


def _with_child(seg: Segment) -> None:
    seg._add_child(Subsegment("db", "remote", seg, 100.6))


def _without_agent(seg: Segment) -> None:
    del seg.user_agent


def _with_fault(seg: Segment) -> None:
    seg.set_status(503)


def _with_user(seg: Segment) -> None:
    seg.user = "alice"


def _forwarded(seg: Segment) -> None:
    seg.x_forwarded_for = True


def _unfinished(seg: Segment) -> None:
    del seg.end_time


def _with_metadata(seg: Segment) -> None:
    seg.put_metadata("k", "v")


def _with_aws(seg: Segment) -> None:
    seg.set_aws({"operation": "x"})


def _with_cause(seg: Entity) -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        seg.add_exception(exc)


@pytest.mark.parametrize(
    "change",
    [_with_annotation, _with_child, _without_agent, _with_fault, _with_user, _forwarded, _unfinished,
     _with_metadata, _with_aws, _with_cause],
)  # fmt: skip
def test_anything_beyond_the_usual_takes_the_general_path(change: Callable[[Segment], None]) -> None:
    seg = _plain()
    change(seg)
    assert plain_json(seg) is None
    document = json.loads(seg.to_json())
    assert document["trace_id"] == ROOT  # and the general path still writes it whole
    assert documents(seg) == [seg.to_json().encode()]


_ALWAYS_THERE = {"method", "url", "user_agent", "client_ip", "status", "content_length", "end_time"}
_NOT_WRITTEN = {"response_header", "sampled", "late"}


def _optional_fields() -> list[str]:
    """Every field a segment leaves at its class-level default until something sets it."""
    names = []
    for cls in (Entity, Segment):
        for name, value in vars(cls).items():
            if name.startswith("_") or name in _ALWAYS_THERE | _NOT_WRITTEN:
                continue
            if value is None or value is False:
                names.append(name)
    return sorted(set(names))


def test_every_optional_field_sends_a_segment_down_the_general_path() -> None:
    fields = _optional_fields()
    assert {"cause", "annotations", "fault", "user", "x_forwarded_for", "subsegments"} <= set(fields)
    for name in fields:
        seg = _plain()
        setattr(seg, name, {"k": "v"} if name in {"annotations", "aws", "metadata", "cause"} else True)
        if name == "subsegments":
            seg.subsegments = [Subsegment("db", "remote", seg, 100.6)]
        assert plain_json(seg) is None, f"plain_json ignores {name}"


# --- the one-step subsegment document ----------------------------------------------------------
def _call(status: int | None = 200, length: int | None = 2) -> Subsegment:
    sub = Subsegment("api.example.com", "remote", _segment(), 100.6)
    sub.set_http_request("GET", "http://api.example.com/orders")
    if status is not None:
        sub.set_http_response(status, length)
    sub.end_time = 100.75
    return sub


@given(
    st.text(),
    st.one_of(st.none(), st.text()),
    st.text(),
    st.one_of(st.none(), st.integers(100, 599)),
    st.one_of(st.none(), st.integers(0, 2**40)),
    st.one_of(st.none(), st.sampled_from(["remote", "aws", "local", ""]), st.text()),
    st.booleans(),
)
def test_the_one_step_subsegment_document_is_the_general_one(  # noqa: PLR0917
    name: str,
    method: str | None,
    url: str,
    status: int | None,
    length: int | None,
    namespace: str | None,
    traced: bool,
) -> None:
    for _ in range(2):  # written, then from the kept tail
        sub = Subsegment(name, namespace, _segment(), 100.6)
        if method is not None:
            sub.set_http_request(method, url, traced=traced)
        if status is not None:
            sub.set_http_response(status, length)
        sub.end_time = 100.75
        fast = plain_subsegment_json(sub)
        assert fast is not None
        assert fast == sub._document(children=True, streaming=False)
        assert json.loads(fast)["name"] == name


def test_calls_that_differ_after_their_times_do_not_share_a_tail() -> None:
    ok, missing, failed = _call(200, 2), _call(404, 9), _call(503, None)
    documents = [json.loads(plain_subsegment_json(sub) or "") for sub in (ok, missing, failed, _call(200, 2))]
    assert [d["http"]["response"] for d in documents] == [
        {"status": 200, "content_length": 2},
        {"status": 404, "content_length": 9},
        {"status": 503},
        {"status": 200, "content_length": 2},
    ]
    assert [(d.get("error"), d.get("fault")) for d in documents] == [
        (None, None), (True, None), (None, True), (None, None)
    ]  # fmt: skip
    assert documents[0]["id"] != documents[3]["id"]


@pytest.mark.parametrize(
    "change",
    [
        lambda sub: sub.put_annotation("k", "v"),
        lambda sub: sub.put_metadata("k", "v"),
        lambda sub: sub.set_aws({"operation": "GetItem"}),
        lambda sub: sub._add_child(Subsegment("inner", "local", sub, 100.7)),
        _with_cause,
        lambda sub: setattr(sub, "end_time", None),
        lambda sub: setattr(sub, "user_agent", "curl/8"),
        lambda sub: setattr(sub, "client_ip", "10.0.0.1"),
        lambda sub: setattr(sub, "x_forwarded_for", True),
    ],
)
def test_anything_beyond_a_call_takes_the_general_subsegment_path(
    change: Callable[[Subsegment], None],
) -> None:
    sub = _call()
    change(sub)
    assert plain_subsegment_json(sub) is None
    parent = _segment()
    parent._add_child(sub)
    assert json.loads(parent.to_json())["subsegments"][0]["id"] == sub.id  # still written whole


def test_every_optional_subsegment_field_is_checked() -> None:
    """A field added to Entity later must be handled by plain_subsegment_json (or listed here)."""
    in_the_key = {"method", "url", "status", "content_length", "traced", "fault", "error", "throttle"}
    checked = {"cause", "subsegments", "annotations", "metadata", "aws", "user_agent", "client_ip"}
    checked |= {"x_forwarded_for", "end_time"}
    not_written = {"sampled", "wire"}  # wire: the header a transport sends, not part of the document
    fields = {
        name
        for cls in (Entity, Subsegment)
        for name, value in vars(cls).items()
        if not name.startswith("_") and not callable(value) and not isinstance(value, property)
    }
    assert fields - {"late"} == in_the_key | checked | not_written


def test_the_kept_tails_stay_bounded_with_a_new_url_per_call() -> None:
    from k8sxray import _segment

    for n in range(3 * _segment._MAX_TAILS):
        sub = _call()
        sub.set_http_request("GET", f"http://api.example.com/orders/{n}")
        document = json.loads(plain_subsegment_json(sub) or "")
        assert document["http"]["request"]["url"].endswith(f"/orders/{n}")
        assert len(_segment._TAILS) <= _segment._MAX_TAILS


@given(st.floats(min_value=1.0, max_value=1e11), st.floats(min_value=0.0, max_value=3600.0))
def test_times_are_json_numbers_rounded_to_the_microsecond(start: float, took: float) -> None:
    text = time_json(start)
    assert abs(json.loads(text) - start) <= 5.1e-7 + start * 1e-15  # rounded, within float precision
    assert len(text.partition(".")[2]) == 6
    # the one-step writers inline the same steps: both writers give the same digits
    sub = Subsegment("call", "remote", _segment(), start)
    sub.end_time = start + took
    sub.method, sub.url, sub.status = "GET", "http://h/", 200
    fast = plain_subsegment_json(sub)
    assert fast is not None
    assert fast == sub._document(True, False)
    assert json.loads(fast)["start_time"] == json.loads(text)


def test_times_that_no_clock_gives_are_still_written() -> None:
    assert time_json(0.5) == "0.500000"
    assert time_json(1e12) == "1000000000000.000000"
    assert time_json(float("nan")) == "nan"  # as float formatting writes it
    sub = Subsegment("call", "remote", _segment(), 0.5)
    sub.end_time = 0.75
    assert plain_subsegment_json(sub) is None  # the general writer takes it
    assert '"start_time":0.500000,"end_time":0.750000' in sub.to_json()


def test_an_invalid_annotation_is_dropped_with_a_warning_once_per_key(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segment_module, "_WARNED_KEYS", set())  # whatever earlier tests warned about
    seg = Segment(Static("svc", sdk_version="1"), ROOT, "0123456789abcdef", None, 100.5)
    with caplog.at_level(logging.WARNING, logger="k8sxray._segment"):
        seg.put_annotation("bad-key", "v")
        seg.put_annotation("bad-key", "v")  # the same key again: said once
        seg.put_annotation("listed", [1, 2])  # type: ignore[arg-type]
        seg.put_annotation("ratio", float("nan"))
        seg.put_annotation("ok", 1)
    assert seg.annotations == {"ok": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "annotation 'bad-key' dropped: a key is one or more letters, digits or underscores" in messages[0]
    assert "annotation 'listed' dropped: values are strings, numbers or booleans, not list" in messages[1]
    assert "annotation 'ratio' dropped: values are finite numbers, not nan" in messages[2]
