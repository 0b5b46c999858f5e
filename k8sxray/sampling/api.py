"""The two X-Ray sampling calls, made through the daemon's TCP port with plain http.client.

The daemon signs and forwards ``POST /GetSamplingRules`` and ``POST /SamplingTargets``
to X-Ray; the JSON shapes are the X-Ray API's (GetSamplingRules, GetSamplingTargets).
Every failure (connection, timeout, HTTP status, bad JSON, wrong shape) raises
:class:`SamplingAPIError` with a one-line reason; malformed single records are skipped.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "Address",
    "RuleDefinition",
    "SamplingAPIError",
    "TargetDocument",
    "get_sampling_rules",
    "get_sampling_targets",
]

Address = tuple[str, int]

_MAX_BODY = 4 << 20
_MAX_PAGES = 100
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class SamplingAPIError(Exception):
    """A sampling call failed; the message says why in one line."""


class _Connection(http.client.HTTPConnection):
    """Our own class, so that the official SDK's http.client patch can be told to skip it."""


_PATHS = ("/GetSamplingRules", "/SamplingTargets")


def _skip_xray_sdk_patch() -> None:
    """If the app ran the SDK's ``patch_all()``, keep our polls out of its traces (and its logs)."""
    patch = sys.modules.get("aws_xray_sdk.ext.httplib.patch")
    if patch is not None:
        try:
            patch.add_ignored(subclass=f"{__name__}._Connection", urls=_PATHS)
        except Exception:  # an SDK version without add_ignored: its patch just records the poll
            log.debug("k8sxray: could not exclude sampling polls from the SDK's httplib patch", exc_info=True)


@dataclass(frozen=True)
class RuleDefinition:
    """One ``SamplingRule`` as GetSamplingRules returns it."""

    name: str
    priority: int
    fixed_rate: float
    reservoir_size: int
    service_name: str = "*"
    service_type: str = "*"
    host: str = "*"
    http_method: str = "*"
    url_path: str = "*"
    resource_arn: str = "*"
    version: int = 1
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetDocument:
    """One ``SamplingTargetDocument``: the quota X-Ray gives this client for one rule."""

    rule_name: str
    fixed_rate: float | None
    reservoir_quota: int | None
    reservoir_quota_ttl: float | None
    interval: int | None


def get_sampling_rules(address: Address, timeout: float) -> list[RuleDefinition]:
    """All rules, following ``NextToken`` pages (at most 100 pages)."""
    rules: list[RuleDefinition] = []
    token: str | None = None
    for _ in range(_MAX_PAGES):
        answer = _post(address, "/GetSamplingRules", {"NextToken": token} if token else {}, timeout)
        records = answer.get("SamplingRuleRecords")
        if not isinstance(records, list):
            raise SamplingAPIError("/GetSamplingRules: the answer has no SamplingRuleRecords list")
        for record in records:
            rule = _rule(record.get("SamplingRule") if isinstance(record, Mapping) else None)
            if rule is not None:
                rules.append(rule)
        next_token = answer.get("NextToken")
        if not isinstance(next_token, str) or not next_token or next_token == token:
            return rules
        token = next_token
    raise SamplingAPIError(f"/GetSamplingRules: more than {_MAX_PAGES} pages")


def get_sampling_targets(
    address: Address, statistics: Sequence[Mapping[str, Any]], timeout: float
) -> tuple[list[TargetDocument], float | None]:
    """Report statistics; return the new targets and ``LastRuleModification`` (epoch seconds)."""
    answer = _post(address, "/SamplingTargets", {"SamplingStatisticsDocuments": list(statistics)}, timeout)
    documents = answer.get("SamplingTargetDocuments")
    if not isinstance(documents, list):
        raise SamplingAPIError("/SamplingTargets: the answer has no SamplingTargetDocuments list")
    targets = [t for t in (_target(doc) for doc in documents) if t is not None]
    return targets, _timestamp(answer.get("LastRuleModification"))


def _post(address: Address, path: str, body: Mapping[str, Any], timeout: float) -> Mapping[str, Any]:
    host, port = address
    _skip_xray_sdk_patch()
    connection = _Connection(host, port, timeout=timeout)
    try:
        connection.request("POST", path, body=json.dumps(body).encode(), headers=_HEADERS)
        response = connection.getresponse()
        data = response.read(_MAX_BODY + 1)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        raise SamplingAPIError(f"{path}: {type(exc).__name__}: {exc}".rstrip(": ")) from None
    finally:
        connection.close()
    if status != 200:
        raise SamplingAPIError(f"{path}: HTTP {status}: {data[:200]!r}")
    if len(data) > _MAX_BODY:
        raise SamplingAPIError(f"{path}: the answer is larger than {_MAX_BODY} bytes")
    try:
        answer = json.loads(data)
    except ValueError:
        raise SamplingAPIError(f"{path}: the answer is not JSON: {data[:100]!r}") from None
    if not isinstance(answer, dict):
        raise SamplingAPIError(f"{path}: the answer is not a JSON object")
    return answer


def _rule(raw: Any) -> RuleDefinition | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        name = raw["RuleName"]
        priority = raw["Priority"]
        rate = raw["FixedRate"]
        size = raw["ReservoirSize"]
        texts = {key: raw.get(key, "*") for key in _TEXT_FIELDS}
        version = raw.get("Version", 1)
        attributes = raw.get("Attributes") or {}
    except (KeyError, TypeError):
        log.debug("k8sxray: skipping a sampling rule without RuleName/Priority/FixedRate/ReservoirSize")
        return None
    if not (
        isinstance(name, str)
        and name
        and _is_int(priority)
        and _is_rate(rate)
        and _is_int(size)
        and size >= 0
        and _is_int(version)
        and all(isinstance(value, str) for value in texts.values())
        and isinstance(attributes, Mapping)
    ):
        log.debug("k8sxray: skipping a malformed sampling rule %r", raw.get("RuleName"))
        return None
    return RuleDefinition(
        name=name,
        priority=priority,
        fixed_rate=float(rate),
        reservoir_size=size,
        service_name=texts["ServiceName"],
        service_type=texts["ServiceType"],
        host=texts["Host"],
        http_method=texts["HTTPMethod"],
        url_path=texts["URLPath"],
        resource_arn=texts["ResourceARN"],
        version=version,
        attributes=dict(attributes),
    )


_TEXT_FIELDS = ("ServiceName", "ServiceType", "Host", "HTTPMethod", "URLPath", "ResourceARN")


def _target(raw: Any) -> TargetDocument | None:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("RuleName"), str):
        return None
    rate: Any = raw.get("FixedRate")
    quota: Any = raw.get("ReservoirQuota")
    interval: Any = raw.get("Interval")
    return TargetDocument(
        rule_name=raw["RuleName"],
        fixed_rate=float(rate) if _is_rate(rate) else None,
        reservoir_quota=quota if _is_int(quota) and quota >= 0 else None,
        reservoir_quota_ttl=_timestamp(raw.get("ReservoirQuotaTTL")),
        interval=interval if _is_int(interval) and interval > 0 else None,
    )


def _timestamp(value: Any) -> float | None:
    """X-Ray's JSON timestamps are epoch seconds (a number); accept a numeric string too."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_rate(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0.0 <= value <= 1.0
    )
