"""W3C ``traceparent``/``tracestate``: parsed as Trace Context level 1 says, mapped to X-Ray's ids."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from k8sxray import _header
from k8sxray._header import TraceParent, format_traceparent, parse_traceparent, valid_tracestate

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
ROOT = "1-4bf92f35-77b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("flags", "sampled"),
    [("01", "1"), ("00", "0"), ("03", "1"), ("02", "0"), ("ff", "1"), ("fe", "0")],
)
def test_a_valid_traceparent_maps_to_xray_ids_and_its_sampled_bit(flags: str, sampled: str) -> None:
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-{flags}") == TraceParent(ROOT, SPAN, sampled)


def test_an_aws_xray_id_generator_trace_id_is_the_xray_trace_id() -> None:
    """OpenTelemetry's AwsXRayIdGenerator puts epoch seconds first, as X-Ray does: same trace."""
    parsed = parse_traceparent("00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01")
    assert parsed is not None
    assert parsed.root == "1-5759e988-bd862e3fe1be46a994272793"


@pytest.mark.parametrize(
    "value",
    [
        f"cc-{TRACE}-{SPAN}-01",  # a later version: the first four fields are read
        f"cc-{TRACE}-{SPAN}-01-what-the-future-will-be-like",
        f" 00-{TRACE}-{SPAN}-01\t",  # optional whitespace around the value
    ],
)
def test_later_versions_and_surrounding_whitespace_are_accepted(value: str) -> None:
    assert parse_traceparent(value) == TraceParent(ROOT, SPAN, "1")


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE.upper()}-{SPAN}-01",  # uppercase
        f"00-{TRACE}-{SPAN.upper()}-01",
        f"00-{TRACE}-{SPAN}-0A",
        f"00-{TRACE}-{SPAN}-01-",  # version 00 is exactly 55 characters
        f"00-{TRACE}-{SPAN}-01-extra",
        f"00-{TRACE}-{SPAN}-1",
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}0-{SPAN}-01",
        f"00-{TRACE}-{SPAN}0-01",
        f"00_{TRACE}_{SPAN}_01",
        f"0-{TRACE}-{SPAN}-01",
        f"g0-{TRACE}-{SPAN}-01",
        f"cc-{TRACE}-{SPAN}-01x",  # a later version still puts a dash after the flags
        f"cc-{TRACE}-{SPAN}-01.",
        f"00-{TRACE}-{SPAN}-01,00-{TRACE}-{SPAN}-01",  # sent twice, joined by the server
        f"00-{TRACE}-{SPAN}-01" + " " * 600,  # too long
        f"cc-{TRACE}-{SPAN}-01-" + "x" * 600,
        "Root=" + ROOT,
    ],
)
def test_invalid_traceparents_are_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


@given(st.text(max_size=120) | st.from_regex(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}.{0,9}"))
@example(f"00-{TRACE}-{SPAN}-01\x00")
def test_any_value_parses_to_none_or_to_valid_xray_ids(value: str) -> None:
    parsed = parse_traceparent(value)
    if parsed is not None:
        assert _header.valid_root(parsed.root)
        assert len(parsed.parent) == 16
        assert set(parsed.parent) <= set("0123456789abcdef")
        assert parsed.parent != "0" * 16
        assert parsed.sampled in ("0", "1")


@given(
    root=st.from_regex(r"1-[0-9a-f]{8}-[0-9a-f]{24}", fullmatch=True).filter(lambda r: r[2:].strip("0-")),
    parent=st.from_regex(r"[0-9a-f]{16}", fullmatch=True).filter(lambda p: p.strip("0")),
    sampled=st.booleans(),
)
def test_a_formatted_traceparent_parses_back(root: str, parent: str, sampled: bool) -> None:
    value = format_traceparent(root, parent, sampled)
    assert len(value) == 55
    assert parse_traceparent(value) == TraceParent(root, parent, "1" if sampled else "0")


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        ("  vendor=x ", "vendor=x"),
        (",".join(f"k{i}=v" for i in range(32)), ",".join(f"k{i}=v" for i in range(32))),
        (",".join(f"k{i}=v" for i in range(32)) + ",,", ",".join(f"k{i}=v" for i in range(32)) + ",,"),
        (",".join(f"k{i}=v" for i in range(33)), ""),  # more than 32 members: dropped whole
        ("a=b\r\nX-Injected: 1", ""),  # never a second header line
        ("a=\u00e9", ""),
        ("a=" + "b" * 600, ""),
        ("", ""),
        (None, ""),
    ],
)
def test_a_tracestate_is_passed_on_unchanged_or_not_at_all(value: str | None, kept: str) -> None:
    assert valid_tracestate(value) == kept


def _spec_traceparent(value: str) -> TraceParent | None:
    """W3C Trace Context level 1's rules for a traceparent, written out field by field (no
    shortcut), to check the parser's one-step reading of the usual form against."""
    value = value.strip(" \t")
    fields = value.split("-")
    if len(fields) < 4 or any(not field or set(field) - set(HEX) for field in fields[:4]):
        return None
    version, trace, parent, flags = fields[:4]
    if (len(version), len(trace), len(parent), len(flags)) != (2, 32, 16, 2) or version == "ff":
        return None
    if version == "00" and len(fields) != 4:
        return None
    if trace == "0" * 32 or parent == "0" * 16:
        return None
    return TraceParent(f"1-{trace[:8]}-{trace[8:]}", parent, "1" if int(flags, 16) & 1 else "0")


HEX = "0123456789abcdef"


@given(
    st.builds(
        lambda version, trace, parent, flags, tail: f"{version}-{trace}-{parent}-{flags}{tail}",
        st.sampled_from(["00", "01", "cc", "ff", "0A", "0"]),
        st.sampled_from(["0" * 32, "0" * 8 + TRACE[8:], TRACE[:8] + "0" * 24, TRACE.upper(), TRACE[:-1]])
        | st.text(HEX, min_size=32, max_size=32),
        st.sampled_from(["0" * 16, SPAN.upper(), SPAN + "0"]) | st.text(HEX, min_size=16, max_size=16),
        st.sampled_from(["00", "01", "02", "03", "0f", "10", "11", "fe", "ff", "0A", "1"]),
        st.sampled_from(["", "", "", "-", "-x", "x", " ", ","]),
    )
)
def test_the_usual_form_is_read_in_one_step_as_the_rules_say(value: str) -> None:
    assert parse_traceparent(value) == _spec_traceparent(value)
