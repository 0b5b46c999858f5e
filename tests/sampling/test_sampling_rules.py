"""Local rules files: the SDK's format, and a clear ValueError for every bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from k8sxray.sampling.rules import DEFAULT_RULES, Target, load_rules_file, parse_rules

GOOD: dict[str, Any] = {
    "version": 2,
    "rules": [
        {
            "description": "health",
            "host": "*",
            "http_method": "GET",
            "url_path": "/healthz",
            "fixed_target": 0,
            "rate": 0.0,
        },
        {
            "description": "api",
            "host": "api.*",
            "http_method": "*",
            "url_path": "/v1/*",
            "fixed_target": 3,
            "rate": 1,
        },
    ],
    "default": {"fixed_target": 1, "rate": 0.1},
}


def write(tmp_path: Path, content: str | bytes) -> str:
    path = tmp_path / "rules.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


def test_loads_version_2(tmp_path: Path) -> None:
    rules = load_rules_file(write(tmp_path, json.dumps(GOOD)))
    assert rules.version == 2
    assert rules.default == Target(1, 0.1)
    assert [(r.description, r.host, r.http_method, r.url_path) for r in rules.rules] == [
        ("health", "*", "GET", "/healthz"),
        ("api", "api.*", "*", "/v1/*"),
    ]
    assert rules.rules[0].target == Target(0, 0.0)
    assert rules.rules[1].target == Target(3, 1.0)
    assert isinstance(rules.rules[1].target.rate, float)


def test_loads_version_1_with_service_name(tmp_path: Path) -> None:
    doc = {
        "version": 1,
        "rules": [
            {
                "service_name": "shop.example",
                "http_method": "POST",
                "url_path": "/cart",
                "fixed_target": 2,
                "rate": 0.5,
            }
        ],
        "default": {"fixed_target": 1, "rate": 0.05},
    }
    rules = load_rules_file(write(tmp_path, json.dumps(doc)))
    assert rules.version == 1
    assert rules.rules[0].host == "shop.example"
    assert rules.rules[0].matches("SHOP.example", "post", "/cart")


def test_rules_are_optional_and_bom_is_accepted(tmp_path: Path) -> None:
    text = json.dumps({"version": 2, "default": {"fixed_target": 0, "rate": 1}})
    rules = load_rules_file(write(tmp_path, "\ufeff" + text))
    assert rules.rules == ()
    assert rules.default == Target(0, 1.0)


def test_default_rules_are_xrays() -> None:
    assert DEFAULT_RULES.default == Target(1, 0.05)
    assert DEFAULT_RULES.rules == ()


def _with(path: str, value: Any) -> dict[str, Any]:
    """GOOD with one field replaced (``value`` None removes it)."""
    doc = json.loads(json.dumps(GOOD))
    *parents, last = path.split(".")
    target = doc
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    key: Any = int(last) if last.isdigit() else last
    if value is _REMOVE:
        del target[key]
    else:
        target[key] = value
    return doc


_REMOVE: Any = object()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_with("rules.1.rate", 1.5), "rules[1].rate: 1.5 is outside 0..1"),
        (_with("rules.0.rate", -0.1), "rules[0].rate: -0.1 is outside 0..1"),
        (_with("rules.0.rate", "0.5"), "rules[0].rate: '0.5' is not a number"),
        (_with("rules.0.rate", True), "rules[0].rate: True is not a number"),
        (_with("rules.0.rate", _REMOVE), "rules[0].rate: missing"),
        (_with("rules.1.fixed_target", -1), "rules[1].fixed_target: -1 is negative"),
        (_with("rules.1.fixed_target", 1.5), "rules[1].fixed_target: 1.5 is not a whole number"),
        (_with("rules.1.fixed_target", None), "rules[1].fixed_target: None is not a whole number"),
        (_with("rules.1.fixed_target", _REMOVE), "rules[1].fixed_target: missing"),
        (_with("rules.0.host", _REMOVE), "rules[0].host: missing"),
        (_with("rules.0.host", ""), "rules[0].host: must not be empty"),
        (_with("rules.0.http_method", 7), "rules[0].http_method: must be a string, not a number"),
        (_with("rules.1.url_path", None), "rules[1].url_path: must be a string, not null"),
        (_with("rules.1.description", ["x"]), "rules[1].description: must be a string, not a list"),
        (_with("rules.1", "x"), "rules[1]: must be an object, not a string"),
        (_with("rules", {}), "rules: must be a list, not an object"),
        (_with("default", _REMOVE), "default: missing"),
        (_with("default", []), "default: must be an object, not a list"),
        (_with("default.rate", 2), "default.rate: 2 is outside 0..1"),
        (_with("default.rate", float("nan")), "default.rate: nan is outside 0..1"),
        (_with("default.fixed_target", _REMOVE), "default.fixed_target: missing"),
        (_with("default.url_path", "/x"), "default.url_path: the default rule applies to everything"),
        (_with("version", 3), "version: 3 is not supported"),
        (_with("version", _REMOVE), "version: None is not supported"),
        (_with("version", True), "version: True is not supported"),
        ([1, 2], "the rules document must be a JSON object, not a list"),
    ],
)
def test_malformed_rules_name_the_field(tmp_path: Path, doc: Any, message: str) -> None:
    path = write(tmp_path, json.dumps(doc))
    with pytest.raises(ValueError, match="^" + _re(message)):
        load_rules_file(path)
    with pytest.raises(ValueError, match="^" + _re(message)):
        parse_rules(doc)


def test_version_1_rejects_host_on_default(tmp_path: Path) -> None:
    doc = {"version": 1, "default": {"fixed_target": 1, "rate": 0.1, "service_name": "x"}}
    with pytest.raises(ValueError, match=r"^default\.service_name: "):
        load_rules_file(write(tmp_path, json.dumps(doc)))


def test_version_1_requires_service_name(tmp_path: Path) -> None:
    doc = {"version": 1, "rules": [dict(GOOD["rules"][0])], "default": GOOD["default"]}
    with pytest.raises(ValueError, match=r"^rules\[0\]\.service_name: missing"):
        load_rules_file(write(tmp_path, json.dumps(doc)))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_rules_file(str(tmp_path / "nope.json"))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        load_rules_file(str(tmp_path))


def test_not_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"is not JSON: .* at line 2 column 1"):
        load_rules_file(write(tmp_path, '{"version": 2,\n}'))


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not JSON"):
        load_rules_file(write(tmp_path, ""))


def test_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not UTF-8"):
        load_rules_file(write(tmp_path, b'{"version": "\xff"}'))


def test_huge_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="larger than 1 MiB"):
        load_rules_file(write(tmp_path, " " * (1 << 20) + "{}"))


def test_configure_rejects_a_bad_rules_file(tmp_path: Path) -> None:
    from k8sxray import _config

    path = write(tmp_path, json.dumps(_with("rules.1.rate", 1.5)))
    with pytest.raises(ValueError, match=r"rules\[1\]\.rate: 1\.5 is outside 0\.\.1"):
        _config.build(environ={}, sampling_rules=path, daemon_address="127.0.0.1:2000")


def _re(text: str) -> str:
    import re

    return re.escape(text)
