"""The SDKs' two sampling calls, answered by the daemon itself when no X-Ray is behind it.

With a sink that ships nowhere near X-Ray (stdout, the local console) the daemon's TCP port still
answers ``POST /GetSamplingRules`` and ``POST /SamplingTargets`` in X-Ray's shapes (botocore's
``xray`` service model), so centralized samplers work unchanged. The rules come from a file
(:func:`load_rules`) or are X-Ray's ``Default`` rule alone: a reservoir of 1 request a second, then 5%.

Quotas are handed out as X-Ray describes them: each rule's ``ReservoirSize`` is a number of requests
a second shared by the clients (``ClientID``) that reported statistics for the rule recently; one
client alone gets all of it. A client's share is its ``ReservoirQuota``, valid until
``ReservoirQuotaTTL``; clients report again every ``Interval`` (10 s). A client counts as active for
two intervals after its last report, so one reporting a little late keeps its share.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

INTERVAL = 10
"""Seconds between two reports of a client (``Interval`` in the answer)."""

MAX_STATISTICS = 25
"""Statistics documents one GetSamplingTargets call may carry (the API's limit)."""

DEFAULT_NAME = "Default"
DEFAULT_PRIORITY = 10000  # X-Ray's Default rule applies after every other (priorities are 1..9999)

_TEXT_LIMITS = {
    "ServiceName": 64,
    "ServiceType": 64,
    "Host": 64,
    "HTTPMethod": 10,
    "URLPath": 128,
    "ResourceARN": 500,
}
_KNOWN_KEYS = frozenset(
    {"RuleName", "RuleARN", "Priority", "FixedRate", "ReservoirSize", "Version", "Attributes"}
    | set(_TEXT_LIMITS)
    | {"SamplingRateBoost"}  # accepted from X-Ray's output, not served: boosts are not computed here
)


class RulesError(ValueError):
    """A sampling rules file the daemon cannot use; the message says what to fix."""


def default_rule(reservoir: int = 1, rate: float = 0.05) -> dict[str, Any]:
    """X-Ray's ``Default`` rule: ``reservoir`` requests a second, then ``rate`` of the rest."""
    return _complete(
        {
            "RuleName": DEFAULT_NAME,
            "Priority": DEFAULT_PRIORITY,
            "FixedRate": rate,
            "ReservoirSize": reservoir,
        }
    )


def load_rules(path: str | Path) -> list[dict[str, Any]]:
    """The rules of a JSON file, as complete ``SamplingRule`` objects, ``Default`` last.

    Accepted forms: a list of X-Ray ``SamplingRule`` objects (or of records ``{"SamplingRule": ...}``);
    ``{"SamplingRuleRecords": [...]}`` as ``aws xray get-sampling-rules`` prints it; or the SDKs'
    local rules file (``{"version": 2, "rules": [...], "default": {...}}``, version 1 too).
    Without a ``Default`` rule, X-Ray's is added. Raises RulesError.
    """
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise RulesError(f"cannot read sampling rules {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise RulesError(f"sampling rules {path} are not valid JSON: {exc}") from None
    try:
        return rules_from_json(data)
    except RulesError as exc:
        raise RulesError(f"sampling rules {path}: {exc}") from None


def rules_from_json(data: Any) -> list[dict[str, Any]]:
    """Rules from an already parsed file (see :func:`load_rules`). Raises RulesError."""
    if isinstance(data, Mapping) and "version" in data:
        rules = _from_sdk_file(data)
    else:
        if isinstance(data, Mapping) and "SamplingRuleRecords" in data:
            data = data["SamplingRuleRecords"]
        if not isinstance(data, list):
            raise RulesError(
                'expected a list of SamplingRule objects, {"SamplingRuleRecords": [...]}, or the '
                'SDKs\' local rules file ({"version": 2, "rules": [...], "default": {...}})'
            )
        rules = [_checked(_unwrap(item), i) for i, item in enumerate(data)]
    names = [r["RuleName"] for r in rules]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise RulesError(f"two rules are named {duplicate!r}")
    if DEFAULT_NAME not in names:
        rules.append(default_rule())
    return sorted(rules, key=lambda r: (r["RuleName"] == DEFAULT_NAME, r["Priority"], r["RuleName"]))


def _unwrap(item: Any) -> Any:
    if isinstance(item, Mapping) and "SamplingRule" in item:
        return item["SamplingRule"]
    return item


def _checked(rule: Any, index: int) -> dict[str, Any]:
    where = f"rule {index + 1}"
    if not isinstance(rule, Mapping):
        raise RulesError(f"{where}: expected an object")
    name = rule.get("RuleName")
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        raise RulesError(f"{where}: RuleName must be a string of 1 to 32 characters")
    where = f"rule {name!r}"
    unknown = sorted(set(rule) - _KNOWN_KEYS)
    if unknown:
        raise RulesError(
            f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(_KNOWN_KEYS))})"
        )
    priority: Any = rule.get("Priority")
    rate: Any = rule.get("FixedRate")
    size: Any = rule.get("ReservoirSize")
    highest = DEFAULT_PRIORITY if name == DEFAULT_NAME else 9999
    if not _is_int(priority) or not 1 <= priority <= highest:
        raise RulesError(f"{where}: Priority must be a whole number from 1 to {highest}")
    if not _is_number(rate) or not 0 <= rate <= 1:
        raise RulesError(f"{where}: FixedRate must be a number from 0 to 1")
    if not _is_int(size) or size < 0:
        raise RulesError(f"{where}: ReservoirSize must be a whole number, 0 or more")
    if rule.get("Version", 1) != 1:
        raise RulesError(f"{where}: only Version 1 rules exist")
    for key, limit in _TEXT_LIMITS.items():
        value = rule.get(key, "*")
        if not isinstance(value, str) or len(value) > limit:
            raise RulesError(f"{where}: {key} must be a string of at most {limit} characters")
    attributes = rule.get("Attributes", {})
    if not isinstance(attributes, Mapping) or len(attributes) > 5:
        raise RulesError(f"{where}: Attributes must be an object with at most 5 entries")
    return _complete({k: v for k, v in rule.items() if k != "SamplingRateBoost"})


def _complete(rule: Mapping[str, Any]) -> dict[str, Any]:
    full: dict[str, Any] = {key: "*" for key in _TEXT_LIMITS}
    full.update({"Version": 1, "Attributes": {}})
    full.update(rule)
    full["FixedRate"] = float(full["FixedRate"])
    return full


def _from_sdk_file(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The SDKs' local rules file: ``rules`` in order (first match wins), then ``default``."""
    version = data.get("version")
    if version not in (1, 2):
        raise RulesError(f"the SDKs' local rules file has version 1 or 2, got {version!r}")
    raw_rules = data.get("rules", [])
    default = data.get("default")
    if not isinstance(raw_rules, list) or not isinstance(default, Mapping):
        raise RulesError('the SDKs\' local rules file needs "rules" (a list) and "default" (an object)')
    rules: list[dict[str, Any]] = []
    taken: set[str] = {DEFAULT_NAME}
    for i, raw in enumerate(raw_rules):
        if not isinstance(raw, Mapping):
            raise RulesError(f"rule {i + 1}: expected an object")
        description = str(raw.get("description") or "").strip()[:32]
        name = description if description and description not in taken else f"rule-{i + 1}"
        taken.add(name)
        host = raw.get("host", raw.get("service_name", "*")) if version == 2 else raw.get("service_name", "*")
        rule = {
            "RuleName": name,
            "Priority": i + 1,
            "FixedRate": raw.get("rate"),
            "ReservoirSize": raw.get("fixed_target"),
            "Host": host,
            "HTTPMethod": raw.get("http_method", "*"),
            "URLPath": raw.get("url_path", "*"),
        }
        rules.append(_checked(rule, i))
    rules.append(
        _checked(
            {
                "RuleName": DEFAULT_NAME,
                "Priority": DEFAULT_PRIORITY,
                "FixedRate": default.get("rate"),
                "ReservoirSize": default.get("fixed_target"),
            },
            len(raw_rules),
        )
    )
    return rules


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class InvalidRequest(ValueError):
    """A sampling call X-Ray would refuse with ``InvalidRequestException``."""


class LocalSampling:
    """Answers GetSamplingRules and GetSamplingTargets from ``rules``; safe to call from many threads."""

    def __init__(
        self,
        rules: list[dict[str, Any]] | None = None,
        *,
        now: Callable[[], float] = time.time,
        interval: int = INTERVAL,
    ) -> None:
        self.rules = rules_from_json(rules if rules is not None else [])
        self._by_name = {rule["RuleName"]: rule for rule in self.rules}
        self._now = now
        self.interval = interval
        self.loaded_at = now()
        self._seen: dict[str, dict[str, float]] = {name: {} for name in self._by_name}
        self._lock = threading.Lock()

    def answer(self, path: str, body: bytes) -> tuple[int, dict[str, Any], str | None]:
        """Status, JSON answer and error type (``x-amzn-ErrorType``) for one call; never raises."""
        try:
            request = json.loads(body) if body.strip() else {}
            if not isinstance(request, dict):
                raise InvalidRequest("the request body must be a JSON object")
            if path == "/GetSamplingRules":
                return 200, self.get_sampling_rules(request), None
            if path == "/SamplingTargets":
                return 200, self.get_sampling_targets(request), None
            return 404, {"Message": f"no sampling call at {path}"}, None
        except (ValueError, RecursionError) as exc:  # InvalidRequest, or JSON that does not parse
            return 400, {"Message": str(exc)}, "InvalidRequestException"

    def get_sampling_rules(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Every rule, in one page (``NextToken`` is accepted and ignored)."""
        token = request.get("NextToken")
        if token is not None and not isinstance(token, str):
            raise InvalidRequest("NextToken must be a string")
        stamp = self.loaded_at
        return {
            "SamplingRuleRecords": [
                {"SamplingRule": dict(rule), "CreatedAt": stamp, "ModifiedAt": stamp} for rule in self.rules
            ]
        }

    def get_sampling_targets(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Record who reported for which rule; give each reporting client its share of the reservoir."""
        documents = request.get("SamplingStatisticsDocuments")
        if not isinstance(documents, list):
            raise InvalidRequest("SamplingStatisticsDocuments (a list) is required")
        if len(documents) > MAX_STATISTICS:
            raise InvalidRequest(f"at most {MAX_STATISTICS} SamplingStatisticsDocuments per call")
        reports = [_statistics(doc, i) for i, doc in enumerate(documents)]
        now = self._now()
        targets: list[dict[str, Any]] = []
        unprocessed: list[dict[str, Any]] = []
        with self._lock:
            for rule_name, client in reports:
                if rule_name in self._by_name:
                    self._seen[rule_name][client] = now
            for rule_name, client in reports:
                rule = self._by_name.get(rule_name)
                if rule is None:
                    unprocessed.append(
                        {
                            "RuleName": rule_name,
                            "ErrorCode": "400",
                            "Message": "no sampling rule with this name",
                        }
                    )
                    continue
                targets.append(
                    {
                        "RuleName": rule_name,
                        "FixedRate": rule["FixedRate"],
                        "ReservoirQuota": self._share(rule_name, rule["ReservoirSize"], client, now),
                        "ReservoirQuotaTTL": now + 2 * self.interval,
                        "Interval": self.interval,
                    }
                )
        return {
            "SamplingTargetDocuments": targets,
            "LastRuleModification": self.loaded_at,
            "UnprocessedStatistics": unprocessed,
        }

    def _share(self, rule_name: str, reservoir: int, client: str, now: float) -> int:
        """``client``'s part of ``reservoir``: an equal split among the rule's active clients, the
        remainder going one each to the first clients by ``ClientID`` (the parts add up exactly)."""
        seen = self._seen[rule_name]
        for other in [c for c, at in seen.items() if now - at > 2 * self.interval]:
            del seen[other]
        active = sorted(seen)
        base, extra = divmod(reservoir, len(active))
        return base + (1 if active.index(client) < extra else 0)

    def active_clients(self, rule_name: str) -> int:
        """Clients that reported for ``rule_name`` in the last two intervals."""
        now = self._now()
        with self._lock:
            return sum(1 for at in self._seen.get(rule_name, {}).values() if now - at <= 2 * self.interval)


def _statistics(doc: Any, index: int) -> tuple[str, str]:
    where = f"SamplingStatisticsDocuments[{index}]"
    if not isinstance(doc, Mapping):
        raise InvalidRequest(f"{where} must be an object")
    for key in ("RuleName", "ClientID"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise InvalidRequest(f"{where}.{key} is required (a string)")
    for key in ("RequestCount", "SampledCount"):
        if not _is_int(doc.get(key)) or doc[key] < 0:
            raise InvalidRequest(f"{where}.{key} is required (a whole number, 0 or more)")
    if not _is_number(doc.get("Timestamp")):
        raise InvalidRequest(f"{where}.Timestamp is required (epoch seconds)")
    borrow = doc.get("BorrowCount", 0)
    if not _is_int(borrow) or borrow < 0:
        raise InvalidRequest(f"{where}.BorrowCount must be a whole number, 0 or more")
    return doc["RuleName"], doc["ClientID"]


__all__ = [
    "INTERVAL",
    "InvalidRequest",
    "LocalSampling",
    "RulesError",
    "default_rule",
    "load_rules",
    "rules_from_json",
]
