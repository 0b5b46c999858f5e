"""Local sampling rules: the X-Ray SDK's JSON rule file, parsed strictly.

Format (version 2; version 1 writes ``service_name`` where version 2 writes ``host``)::

    {"version": 2,
     "rules": [{"description": "health", "host": "*", "http_method": "GET",
                "url_path": "/healthz", "fixed_target": 0, "rate": 0.0}],
     "default": {"fixed_target": 1, "rate": 0.05}}

Rules apply in file order, the first match wins, else ``default``. ``host``,
``http_method`` and ``url_path`` take ``*`` (any run of characters) and ``?`` (one
character) and match case-insensitively, as the SDK does. Every problem raises
``ValueError`` naming where it is (``rules[2].rate: 1.5 is outside 0..1``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .matching import Matcher, compile_wildcard

__all__ = [
    "DEFAULT_RULES",
    "LocalRule",
    "LocalRules",
    "Target",
    "load_rules_file",
    "parse_rules",
]

_SUPPORTED_VERSIONS = (1, 2)
_MAX_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class Target:
    """How much one rule samples: ``fixed_target`` requests a second, then ``rate`` of the rest."""

    fixed_target: int
    rate: float


@dataclass(frozen=True)
class LocalRule:
    """One rule of a local rules file; :meth:`matches` uses precompiled wildcards."""

    description: str
    host: str
    http_method: str
    url_path: str
    target: Target
    _host_match: Matcher = field(init=False, repr=False, compare=False)
    _method_match: Matcher = field(init=False, repr=False, compare=False)
    _path_match: Matcher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_host_match", compile_wildcard(self.host))
        object.__setattr__(self, "_method_match", compile_wildcard(self.http_method))
        object.__setattr__(self, "_path_match", compile_wildcard(self.url_path))

    def matches(self, host: str, method: str, path: str) -> bool:
        """Whether the rule applies; an empty request value matches anything (as in the SDK)."""
        return (
            (not host or self._host_match(host))
            and (not method or self._method_match(method))
            and (not path or self._path_match(path))
        )


@dataclass(frozen=True)
class LocalRules:
    """A parsed rules file: the rules in order and the default target."""

    rules: tuple[LocalRule, ...]
    default: Target
    version: int = 2


DEFAULT_RULES = LocalRules(rules=(), default=Target(fixed_target=1, rate=0.05))
"""X-Ray's default rule: 1 request a second, then 5%."""


def load_rules_file(path: str) -> LocalRules:
    """Read and validate a rules file; raise ``ValueError`` saying what is wrong and where."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"sampling rules file {path!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"sampling rules file {path!r} is a directory") from None
    except OSError as exc:
        raise ValueError(f"cannot read sampling rules file {path!r}: {exc.strerror or exc}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise ValueError(f"sampling rules file {path!r} is larger than 1 MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"sampling rules file {path!r} is not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"sampling rules file {path!r} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    return parse_rules(data)


def parse_rules(data: Any) -> LocalRules:
    """Validate already-decoded rules (a dict in the file's format)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"the rules document must be a JSON object, not {_kind(data)}")
    version = data.get("version")
    if isinstance(version, bool) or version not in _SUPPORTED_VERSIONS:
        raise ValueError(f"version: {version!r} is not supported (use 2, or 1 with service_name)")
    host_key = "host" if version == 2 else "service_name"
    if "default" not in data:
        raise ValueError('default: missing (for example "default": {"fixed_target": 1, "rate": 0.05})')
    default = _parse_default(data["default"], host_key)
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ValueError(f"rules: must be a list, not {_kind(raw_rules)}")
    rules = tuple(_parse_rule(item, f"rules[{i}]", host_key) for i, item in enumerate(raw_rules))
    return LocalRules(rules=rules, default=default, version=version)


def _parse_default(item: Any, host_key: str) -> Target:
    if not isinstance(item, Mapping):
        raise ValueError(f"default: must be an object, not {_kind(item)}")
    for key in (host_key, "http_method", "url_path"):
        if item.get(key):
            raise ValueError(f"default.{key}: the default rule applies to everything; remove {key}")
    return _parse_target(item, "default")


def _parse_rule(item: Any, where: str, host_key: str) -> LocalRule:
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: must be an object, not {_kind(item)}")
    host = _pattern(item, host_key, where)
    method = _pattern(item, "http_method", where)
    path = _pattern(item, "url_path", where)
    description = item.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"{where}.description: must be a string, not {_kind(description)}")
    return LocalRule(description, host, method, path, _parse_target(item, where))


def _pattern(item: Mapping[str, Any], key: str, where: str) -> str:
    if key not in item:
        raise ValueError(f'{where}.{key}: missing (use "*" to match anything)')
    value = item[key]
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key}: must be a string, not {_kind(value)}")
    if not value:
        raise ValueError(f'{where}.{key}: must not be empty (use "*" to match anything)')
    return value


def _parse_target(item: Mapping[str, Any], where: str) -> Target:
    if "fixed_target" not in item:
        raise ValueError(f"{where}.fixed_target: missing (requests per second sampled before the rate)")
    fixed = item["fixed_target"]
    if isinstance(fixed, float) and fixed.is_integer():
        fixed = int(fixed)
    if isinstance(fixed, bool) or not isinstance(fixed, int):
        raise ValueError(f"{where}.fixed_target: {fixed!r} is not a whole number")
    if fixed < 0:
        raise ValueError(f"{where}.fixed_target: {fixed} is negative")
    if "rate" not in item:
        raise ValueError(f"{where}.rate: missing (fraction 0..1 sampled beyond fixed_target)")
    rate = item["rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise ValueError(f"{where}.rate: {rate!r} is not a number")
    if not math.isfinite(rate) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"{where}.rate: {rate!r} is outside 0..1")
    return Target(fixed_target=fixed, rate=float(rate))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list"}.get(
        type(value), f"a {type(value).__name__}" if not isinstance(value, Mapping) else "an object"
    )
