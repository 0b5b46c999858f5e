"""Packing traces for the store: the facts' stored form, the blob versions, and the shortcuts on the
ingest path giving what the general paths give."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8sxray.console.app import derive
from k8sxray.console.assembly import assemble, latest
from k8sxray.console.compact import compact, expand
from k8sxray.console.packing import _parse, pack, span, unpack, unpack_facts
from k8sxray.console.trace import trace_facts

from . import _traces

# The weather trace as the previous version (blob version 1: facts as a plain record) packed it.
V1_WEATHER = (
    "Aa2Xy27CMBBF/8VrDLGN81j2G7pkUU2Co1qiCqK8ytd3bCDYiZ1AU6Mskkhjc+fMnUkn76mUomYJpxxYySuxXipZp0nGcl4IWJbSASNL"
    "7OI28VdGHo+Ej4sI4CJewOX7s9nO1Rm+thu1wPJRFfpVTz9TauZXkC5J79cb+hZDarZCA9Xzk0I3V7v7Vg/bf5K5FSmbksxWmJoh/Iim"
    "CTDggJqChBQyyEnLJFEHelLGj4H8F59jAsy8dHqJbC9L9JhQXiDm3vECw/D8FgujDVfHH1J+QIat/kRbnkMqG5HxlSMxFtxjY9POAv9v"
    "cWSLfbO2XSVUs17Bjmo9WUGTBXeX1h+mptlzFDeY1RN44i7WtZqn3eNuP10L6T8Xo4PDeDP3mncMq07HvjIV78im/4ZGlpvrUKDZuqjz"
    "Mq0kPfNzcenPMuYk/XkGJi5zZlVxcyLHdOLFcASNM6Te6P3Px6UxA6xXGzdvawsrMnOEgQ5BwwcYYBEIkPvwR8MruR+t7KFk4xz/Cw=="
)


def _json(value: Any) -> str:
    return json.dumps(value)


# --- generated traces: segments calling each other, subsegments calling out, flags and fields ----------

_IDS = st.sampled_from(["a1", "a2", "b1", "b2", "c1", "c2", "d1"])
_TIME = st.sampled_from([100.0, 100.25, 100.5, 100.125, 101.0, 1_700_000_000.123456, 0.0])
_STATUS = st.sampled_from([200, 404, 429, 500, 503])


@st.composite
def _subsegment(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "name": draw(st.sampled_from(["DynamoDB", "SQS", "S3", "svc-b", "work", "STS"])),
        "id": draw(_IDS),
        "start_time": draw(_TIME),
        "end_time": draw(_TIME),
        "namespace": draw(st.sampled_from(["remote", "aws", "local", None])),
    }
    if draw(st.booleans()):
        sub["aws"] = {"table_name": "orders", "queue_url": "https://sqs/1/jobs", "operation": "Put"}
    if draw(st.booleans()):
        sub["http"] = {
            "request": {"url": "http://b/", "method": "GET"},
            "response": {"status": draw(_STATUS)},
        }
    for flag in ("error", "throttle", "fault"):
        if draw(st.integers(0, 5)) == 0:
            sub[flag] = True
    if draw(st.integers(0, 3)) == 0:
        sub["annotations"] = {draw(st.sampled_from("kj")): draw(st.sampled_from([1, "x", True, 2.5]))}
    if draw(st.integers(0, 3)) == 0:
        sub["cause"] = {"exceptions": [{"message": "m", "type": "T", "remote": draw(st.booleans())}]}
    if depth < 2 and draw(st.integers(0, 2)) == 0:
        sub["subsegments"] = draw(st.lists(_subsegment(depth + 1), max_size=2))
    return sub


@st.composite
def _segment(draw: st.DrawFn) -> dict[str, Any]:
    seg: dict[str, Any] = {
        "name": draw(st.sampled_from(["A", "B", "C"])),
        "id": draw(_IDS),
        "trace_id": _traces.CHECKOUT_ID,
        "start_time": draw(_TIME),
        "end_time": draw(_TIME),
        "origin": draw(st.sampled_from(["AWS::EKS::Container", ""])),
    }
    if draw(st.integers(0, 5)) == 0:
        del seg["end_time"]
        seg["in_progress"] = True
    if draw(st.booleans()):
        seg["parent_id"] = draw(_IDS)
    if draw(st.booleans()):
        seg["http"] = {
            "request": {"url": "http://a/", "method": "GET", "client_ip": "10.0.0.1"},
            "response": {"status": draw(_STATUS)},
        }
    for flag in ("error", "throttle", "fault"):
        if draw(st.integers(0, 5)) == 0:
            seg[flag] = True
    for field, values in (("user", ["u1", "u2"]), ("resource_arn", ["arn:x"])):
        if draw(st.integers(0, 2)) == 0:
            seg[field] = draw(st.sampled_from(values))
    if draw(st.integers(0, 2)) == 0:
        seg["aws"] = {
            "ec2": {"instance_id": draw(st.sampled_from(["i-1", "i-2"])), "availability_zone": "az"}
        }
    if draw(st.integers(0, 2)) == 0:
        seg["annotations"] = {draw(st.sampled_from("kjc")): draw(st.sampled_from([1, "x", True, 2.5, "y"]))}
    if draw(st.booleans()):
        seg["subsegments"] = draw(st.lists(_subsegment(), max_size=3))
    return seg


_TRACES = st.lists(_segment(), min_size=1, max_size=5)
_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(_TRACES)
def test_the_stored_form_of_facts_expands_back_to_them_exactly(segments: list[dict[str, Any]]) -> None:
    facts = trace_facts(segments)
    stored = compact(facts)
    assert stored is not None
    assert _json(expand(json.loads(_json(stored)))) == _json(facts)


def test_facts_not_made_by_the_trace_model_are_stored_as_they_are() -> None:
    for facts in ({"id": "x", "nodes": [], "edges": []}, {**trace_facts(_traces.weather()), "extra": 1}):
        assert compact(facts) is None
        assert expand(json.loads(_json(facts))) == json.loads(_json(facts))


@_SETTINGS
@given(_TRACES)
def test_a_packed_trace_unpacks_to_its_facts_and_documents(segments: list[dict[str, Any]]) -> None:
    raws = [json.dumps(s).encode() for s in segments]
    [packed] = pack([(_traces.CHECKOUT_ID, raws, None)], derive).traces
    facts, documents = unpack(packed.blob)
    parsed = [json.loads(r) for r in raws]
    kept = latest(parsed)
    expected = derive(_traces.CHECKOUT_ID, assemble(kept)[0], True)
    assert _json(facts) == _json(expected) == _json(unpack_facts(packed.blob))
    assert documents == [r for r, d in zip(raws, parsed, strict=True) if any(d is k for k in kept)]
    assert (packed.start, packed.end) == span(kept)


def test_a_blob_of_the_first_version_still_unpacks() -> None:
    facts, documents = unpack(base64.b64decode(V1_WEATHER))
    assert documents == [json.dumps(d, separators=(",", ":")).encode() for d in _traces.weather()]
    assert _json(facts) == _json(derive(_traces.WEATHER_ID, _traces.weather(), True))


@_SETTINGS
@given(st.lists(st.tuples(_IDS, st.booleans(), _segment()), max_size=6))
def test_assembling_documents_already_one_per_id_gives_what_the_general_path_gives(
    drawn: list[tuple[str, bool, dict[str, Any]]],
) -> None:
    docs = []
    for parent, alone, doc in drawn:
        # sent on its own: under a segment or a subsegment of this trace, or of none
        docs.append({**doc, "type": "subsegment", "parent_id": parent} if alone else doc)
    unique = latest(docs)
    assert _json(assemble(json.loads(_json(unique)), owned=True, unique=True)) == _json(assemble(docs))


def _reference_parse(raw: bytes) -> Any:
    """What the store made of a document before: json.loads, then the checks."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(doc, dict):
        return "not an object"
    if not isinstance(doc.get("trace_id"), str) or not doc["trace_id"] or not isinstance(doc.get("id"), str):
        return "no trace_id or id"
    return doc


_JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=40),
        _JSON.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(st.sampled_from(["trace_id", "id", "x"]), _JSON, max_size=3).map(
            lambda v: json.dumps(v).encode()
        ),
        st.sampled_from(
            [
                b'{"a":1} ',
                b'{"a":1}x',
                b"{",
                b'{"a":"\xff"}',
                b'\xef\xbb\xbf{"a":1}',
                b'{\x00"',
                b'{"id":"a"}\n',
            ]
        ),
        st.text(max_size=20).map(lambda t: t.encode("utf-16")),
    )
)
def test_documents_parse_as_json_loads_parses_them(raw: bytes) -> None:
    rejected: dict[str, int] = {}
    doc = _parse(raw, rejected)
    expected = _reference_parse(raw)
    assert repr(doc if doc is not None else next(iter(rejected))) == repr(expected)


def test_a_document_nested_too_deep_is_refused_not_a_stop_to_its_batch() -> None:
    deep = b'{"trace_id":"%s","id":"a","x":%s%s}' % (_traces.CHECKOUT_ID.encode(), b"[" * 5000, b"]" * 5000)
    ok = json.dumps(_traces.weather()[0]).encode()
    result = pack([(_traces.CHECKOUT_ID, [deep], None), (_traces.WEATHER_ID, [ok], None)], derive)
    assert result.rejected == {"not JSON": 1}
    assert [t.trace_id for t in result.traces] == [_traces.WEATHER_ID]
