"""X-Ray wildcard matching, compiled once: ``*`` is any run of characters, ``?`` one.

Matching is case-insensitive and whole-string, as in the official SDKs. An empty
request value matches any pattern (the SDKs treat a missing value as a match).

:class:`RuleMatcher` compiles a whole ordered rule list into one regular expression
over ``host NUL method NUL path``; the alternation tries rules in order, so one
``fullmatch`` finds the first matching rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

__all__ = ["Matcher", "RuleMatcher", "compile_wildcard"]

Matcher = Callable[[str], bool]

_SEP = "\x00"


def _match_any(_text: str) -> bool:
    return True


def _to_regex(pattern: str, *, any_char: str) -> str:
    return "".join(
        any_char + "*" if ch == "*" else any_char if ch == "?" else re.escape(ch) for ch in pattern
    )


def compile_wildcard(pattern: str) -> Matcher:
    """One pattern -> a whole-string, case-insensitive matcher (``*`` alone needs no regex)."""
    if pattern and pattern.strip("*") == "":
        return _match_any
    fullmatch = re.compile(_to_regex(pattern, any_char="."), re.IGNORECASE | re.DOTALL).fullmatch

    def match(text: str) -> bool:
        return fullmatch(text) is not None

    return match


class RuleMatcher:
    """First rule (by position) whose host, method and path patterns all match.

    ``patterns`` holds ``(host, method, path)`` wildcard triples in priority order.
    """

    __slots__ = ("_fullmatch", "_singles")

    def __init__(self, patterns: Sequence[tuple[str, str, str]]) -> None:
        self._singles = tuple(
            (compile_wildcard(h), compile_wildcard(m), compile_wildcard(p)) for h, m, p in patterns
        )
        if not patterns:
            self._fullmatch = None
            return
        field = "[^" + _SEP + "]"
        alternatives = [
            "("
            + _to_regex(h, any_char=field)
            + _SEP
            + _to_regex(m, any_char=field)
            + _SEP
            + _to_regex(p, any_char=".")
            + ")"
            for h, m, p in patterns
        ]
        self._fullmatch = re.compile("|".join(alternatives), re.IGNORECASE | re.DOTALL).fullmatch

    def first(self, host: str, method: str, path: str) -> int:
        """Index of the first matching rule, or -1."""
        fullmatch = self._fullmatch
        if fullmatch is None:
            return -1
        if host and method and path and _SEP not in host and _SEP not in method:
            found = fullmatch(host + _SEP + method + _SEP + path)
            return -1 if found is None or found.lastindex is None else found.lastindex - 1
        for index, (match_host, match_method, match_path) in enumerate(self._singles):
            if (
                (not host or match_host(host))
                and (not method or match_method(method))
                and (not path or match_path(path))
            ):
                return index
        return -1
