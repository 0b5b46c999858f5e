"""Property: segment -> spans -> OTLP protobuf -> spans -> segment keeps ids, parents, times, names
and HTTP fields, for generated documents."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("opentelemetry.proto")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8sxray.otlp import codec, segments, spans

HEX = "0123456789abcdef"
ids = st.text(HEX, min_size=16, max_size=16).filter(lambda s: s != "0" * 16)
names = (
    st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABC0123456789_.:/-@ "), min_size=1, max_size=40)
    .map(str.strip)
    .filter(bool)
)
times = st.floats(min_value=1.0e9, max_value=2.0e9, allow_nan=False, allow_infinity=False)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)

http_request = (
    st.fixed_dictionaries(
        {},
        optional={
            "method": st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
            "url": text.map(lambda s: "http://svc/" + s),
            "user_agent": text,
            "client_ip": st.sampled_from(["10.0.0.1", "2001:db8::1", "203.0.113.7"]),
            "x_forwarded_for": st.just(True),
        },
    )
    .map(lambda r: r if "client_ip" in r else {k: v for k, v in r.items() if k != "x_forwarded_for"})
    .filter(bool)
)
http_response = st.fixed_dictionaries(
    {},
    optional={"status": st.integers(100, 599), "content_length": st.integers(0, 2**40)},
).filter(bool)
http = st.fixed_dictionaries({}, optional={"request": http_request, "response": http_response}).filter(bool)


def entity(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    base = {"name": names, "id": ids, "start_time": times, "duration": st.floats(0, 1e5)}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "http": http,
        "namespace": st.sampled_from(["remote", "aws", "local"]),
        "annotations": st.dictionaries(
            st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True),
            st.integers(-(2**63), 2**63 - 1) | names,
            max_size=3,
        ),
    }
    if depth:
        optional["subsegments"] = st.lists(entity(depth - 1), max_size=3)
    return st.fixed_dictionaries(base, optional=optional)


segment_docs = st.builds(
    lambda root, trace, parent: {**root, "trace_id": trace, **({"parent_id": parent} if parent else {})},
    entity(2),
    st.builds(
        lambda a, b: f"1-{a}-{b}",
        st.text(HEX, min_size=8, max_size=8),
        st.text(HEX, min_size=24, max_size=24),
    ).filter(lambda t: t != "1-00000000-" + "0" * 24),
    st.none() | ids,
)


def finish(doc: dict[str, Any], seen: set[str]) -> dict[str, Any] | None:
    """End times from durations, unique ids, no namespace on the segment itself."""
    if doc["id"] in seen:
        return None
    seen.add(doc["id"])
    doc["end_time"] = doc["start_time"] + doc.pop("duration")
    subs = [finish(s, seen) for s in doc.get("subsegments", [])]
    doc["subsegments"] = [s for s in subs if s is not None]
    if not doc["subsegments"]:
        del doc["subsegments"]
    if not doc.get("annotations"):
        doc.pop("annotations", None)
    return doc


def flatten(
    doc: dict[str, Any], parent: str | None, out: dict[str, tuple[str | None, dict[str, Any]]]
) -> None:
    out[doc["id"]] = (parent, doc)
    for sub in doc.get("subsegments", []):
        flatten(sub, doc["id"], out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segment_docs)
def test_segment_to_spans_and_back_keeps_ids_times_and_http(raw: dict[str, Any]) -> None:
    doc = finish(raw, set())
    assert doc is not None
    doc.pop("namespace", None)
    original = json.loads(json.dumps(doc))
    out = spans.convert(original)
    body = codec.encode_request([(out[0].resource, out)])
    converted = segments.convert(codec.decode_protobuf(body))
    assert not converted.rejected
    back: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for data in converted.documents:
        result = json.loads(data)
        assert result["trace_id"] == doc["trace_id"]
        flatten(result, result.get("parent_id"), back)
    expected: dict[str, tuple[str | None, dict[str, Any]]] = {}
    flatten(doc, doc.get("parent_id"), expected)
    assert back.keys() == expected.keys()
    for entity_id, (parent, want) in expected.items():
        got_parent, got = back[entity_id]
        assert got_parent == parent
        assert got["start_time"] == want["start_time"]
        assert got["end_time"] == want["end_time"]
        assert got["name"] == want["name"]
        assert got.get("http") == want.get("http")
        if want.get("annotations"):
            assert got["annotations"] == want["annotations"]
        if want is not doc and want.get("namespace") in ("aws", "remote"):
            assert got["namespace"] == want["namespace"]
