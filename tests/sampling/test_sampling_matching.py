"""Wildcard matching: ``*``, ``?``, case, whole string, first rule in order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8sxray.sampling.matching import RuleMatcher, compile_wildcard


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("*", "", True),
        ("*", "anything/at all", True),
        ("**", "x", True),
        ("", "", True),
        ("", "x", False),
        ("/api/*", "/api/", True),
        ("/api/*", "/api/users/7", True),
        ("/api/*", "/API/users", True),
        ("/api/*", "/apix", False),
        ("/api/?", "/api/7", True),
        ("/api/?", "/api/77", False),
        ("/api/?", "/api/", False),
        ("*.example.com", "shop.EXAMPLE.com", True),
        ("*.example.com", "example.com", False),
        ("GET", "get", True),
        ("GET", "GETX", False),
        ("a*b*c", "aXXbYYc", True),
        ("a*b*c", "aXXcYYb", False),
        ("/a.b", "/aXb", False),  # regex characters are literal
        ("/a[1]", "/a[1]", True),
        ("/x*", "/x\nnewline", True),
    ],
)
def test_wildcards(pattern: str, text: str, expected: bool) -> None:
    assert compile_wildcard(pattern)(text) is expected


def _reference(pattern: str, text: str) -> bool:
    """A slow, obviously correct matcher (dynamic programming) to check the fast one."""
    p, t = pattern.lower(), text.lower()
    row = [True] + [False] * len(t)
    for ch in p:
        new = [row[0] and ch == "*"] + [False] * len(t)
        for j in range(1, len(t) + 1):
            if ch == "*":
                new[j] = new[j - 1] or row[j]
            else:
                new[j] = row[j - 1] and (ch in ("?", t[j - 1]))
        row = new
    return row[len(t)]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab*?.", max_size=8), st.text(alphabet="abAB.", max_size=10))
def test_matches_reference(pattern: str, text: str) -> None:
    assert compile_wildcard(pattern)(text) is _reference(pattern, text)


RULES = [
    ("*", "GET", "/healthz"),
    ("api.*", "*", "/v1/*"),
    ("*", "POST", "*"),
    ("*", "*", "/v1/orders"),
]


@pytest.mark.parametrize(
    ("host", "method", "path", "index"),
    [
        ("a", "GET", "/healthz", 0),
        ("a", "get", "/HEALTHZ", 0),
        ("api.shop", "GET", "/v1/orders", 1),  # rule 1 comes before rule 3
        ("API.shop", "POST", "/v1/x", 1),  # and before rule 2
        ("web", "POST", "/v1/orders", 2),
        ("web", "GET", "/v1/orders", 3),
        ("web", "GET", "/v2", -1),
        ("", "GET", "/v2", -1),
        ("", "", "/healthz", 0),  # an empty value matches any pattern (as in the SDK)
        ("", "", "", 0),
        ("web", "", "/v2", 2),
        ("api.x", "GET", "/v1/\x00weird", 1),  # NUL in the path is just a character
        ("a\x00b", "GET", "/healthz", 0),  # NUL in the host takes the slow path
    ],
)
def test_first_matching_rule(host: str, method: str, path: str, index: int) -> None:
    assert RuleMatcher(RULES).first(host, method, path) == index


def test_no_rules() -> None:
    assert RuleMatcher([]).first("a", "GET", "/") == -1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(*[st.text(alphabet="a*?/", min_size=1, max_size=4)] * 3), min_size=1, max_size=4),
    st.text(alphabet="aA/", max_size=5),
    st.text(alphabet="aA/", max_size=5),
    st.text(alphabet="aA/", max_size=5),
)
def test_combined_regex_equals_rule_by_rule(
    rules: list[tuple[str, str, str]], host: str, method: str, path: str
) -> None:
    expected = -1
    for index, (h, m, p) in enumerate(rules):
        if (
            (not host or _reference(h, host))
            and (not method or _reference(m, method))
            and (not path or _reference(p, path))
        ):
            expected = index
            break
    assert RuleMatcher(rules).first(host, method, path) == expected
