"""X-Amzn-Trace-Id parsing and formatting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k8sxray._header import TraceHeader, format_header, parse, valid_root

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"Root={ROOT};Parent={PARENT};Sampled=1", TraceHeader(ROOT, PARENT, "1", "")),
        (f"Root={ROOT};Parent={PARENT};Sampled=0", TraceHeader(ROOT, PARENT, "0", "")),
        (f"Root={ROOT};Parent={PARENT};Sampled=?", TraceHeader(ROOT, PARENT, "?", "")),
        (f"Root={ROOT}", TraceHeader(ROOT, None, "?", "")),
        (f" Root = {ROOT} ; Sampled = 1 ", TraceHeader(ROOT, None, "1", "")),
        (f"Sampled=1;Parent={PARENT};Root={ROOT}", TraceHeader(ROOT, PARENT, "1", "")),
        (
            f"Root={ROOT};Parent={PARENT};Sampled=1;Lineage=a87bd80c:1",
            TraceHeader(ROOT, PARENT, "1", "Lineage=a87bd80c:1"),
        ),
        (f"Self=1-67891233-abcdef012345678912345678;Root={ROOT};Sampled=1", TraceHeader(ROOT, None, "1", "")),
        (f"Root={ROOT};Parent=XYZ;Sampled=2", TraceHeader(ROOT, None, "?", "")),
        (f"Root={ROOT};Evil=a b", TraceHeader(ROOT, None, "?", "")),
    ],
)
def test_parse(value: str, expected: TraceHeader) -> None:
    assert parse(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "Root=",
        "Parent=53995c3f42cd8ad8;Sampled=1",
        "Root=1-5759E988-BD862E3FE1BE46A994272793",  # upper case is not X-Ray's form
        "Root=1-5759e988-bd862e3fe1be46a99427279",  # short
        "Root=1-5759e988bd862e3fe1be46a994272793x",
        f"Root={ROOT};" + "x" * 1000,  # too long to be a real header
    ],
)
def test_parse_rejects(value: str | None) -> None:
    assert parse(value) is None


@given(st.text(max_size=600))
def test_parse_never_raises_and_only_returns_valid_roots(value: str) -> None:
    parsed = parse(value)
    if parsed is not None:
        assert valid_root(parsed.root)
        assert parsed.sampled in {"0", "1", "?"}
        assert parsed.parent is None or len(parsed.parent) == 16
        assert all(ch not in parsed.extra for ch in " \r\n\x00\"'")


@given(st.text(alphabet="0123456789abcdef", min_size=24, max_size=24), st.sampled_from([True, False, None]))
def test_format_then_parse_round_trips(random_part: str, sampled: bool | None) -> None:
    root = f"1-5759e988-{random_part}"
    parsed = parse(format_header(root, PARENT, sampled, "Lineage=x:1"))
    assert parsed == TraceHeader(root, PARENT, {True: "1", False: "0", None: "?"}[sampled], "Lineage=x:1")
