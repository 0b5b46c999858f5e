"""Centralized sampling against a real HTTP server on loopback that answers like X-Ray."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from k8sxray import _config
from k8sxray.sampling import make_sampler
from k8sxray.sampling.api import SamplingAPIError
from k8sxray.sampling.central import CentralSampler
from k8sxray.sampling.sampler import RateSampler

FakeXRay = Any  # conftest.FakeXRay (fixture ``xray``)
RuleFactory = Callable[..., dict[str, Any]]  # fixture ``make_rule``


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def half() -> float:
    return 0.5  # below a rate of 1, not below a rate of 0


class Recorder:
    """A fallback sampler that says what it was asked."""

    def __init__(self, answer: bool = True) -> None:
        self.asked: list[tuple[str, str, str]] = []
        self.answer = answer

    def decide(self, host: str, method: str, path: str) -> bool:
        self.asked.append((host, method, path))
        return self.answer

    def close(self) -> None:
        return None


@pytest.fixture
def samplers() -> Iterator[list[CentralSampler]]:
    made: list[CentralSampler] = []
    yield made
    for sampler in made:
        sampler.close()


def central(xray: FakeXRay, samplers: list[CentralSampler], **options: Any) -> CentralSampler:
    options.setdefault("fallback", Recorder())
    options.setdefault("service_name", "shop")
    options.setdefault("random", half)
    options.setdefault("poller", False)  # these tests poll by hand
    sampler = CentralSampler(address=lambda: xray.address, **options)
    samplers.append(sampler)
    return sampler


def test_rules_are_paginated_filtered_and_ordered(
    xray: FakeXRay, make_rule: RuleFactory, samplers: list[CentralSampler]
) -> None:
    xray.pages = {
        None: {
            "SamplingRuleRecords": [
                make_rule("Default", 10000, FixedRate=0.05),
                make_rule("b-health", 5, URLPath="/healthz"),
                make_rule("a-api", 5, URLPath="/api/*"),
                make_rule("billing", 1, ServiceName="billing"),
                make_rule("shop-glob", 9, ServiceName="SH*"),
            ],
            "NextToken": "page-2",
        },
        "page-2": {
            "SamplingRuleRecords": [
                make_rule("eks-only", 2, ServiceType="AWS::EKS::Container"),
                make_rule("ec2-only", 3, ServiceType="AWS::EC2::Instance"),
                make_rule("one-arn", 4, ResourceARN="arn:aws:ecs:us-east-1:1:cluster/x"),
                make_rule("with-attributes", 4, Attributes={"user": "admin"}),
                make_rule("version-2", 4, Version=2),
                make_rule("bad-rate", 4, FixedRate=7),
                {"SamplingRule": {"RuleName": "broken"}},
                "not a record",
            ]
        },
    }
    sampler = central(xray, samplers, origin=lambda: "AWS::EKS::Container")
    sampler.refresh_rules()
    assert xray.calls("/GetSamplingRules") == [{}, {"NextToken": "page-2"}]
    assert [r.name for r in sampler.rules] == ["eks-only", "a-api", "b-health", "shop-glob", "Default"]


def test_without_an_origin_only_any_type_rules_apply(
    xray: FakeXRay, make_rule: RuleFactory, samplers: list[CentralSampler]
) -> None:
    xray.pages = {
        None: {
            "SamplingRuleRecords": [
                make_rule("eks-only", 2, ServiceType="AWS::EKS::Container"),
                make_rule("any", 3),
            ]
        }
    }
    sampler = central(xray, samplers)
    sampler.refresh_rules()
    assert [r.name for r in sampler.rules] == ["any"]


def test_borrow_then_quota_and_the_statistics_reported(
    xray: FakeXRay, make_rule: RuleFactory, samplers: list[CentralSampler]
) -> None:
    xray.pages = {
        None: {
            "SamplingRuleRecords": [
                make_rule("Default", 10000, FixedRate=0.0, ReservoirSize=1),
                make_rule("api", 1, URLPath="/api/*", HTTPMethod="GET", FixedRate=0.0, ReservoirSize=5),
                make_rule("never-borrow", 2, URLPath="/quiet", ReservoirSize=0),
            ]
        }
    }
    clock = Clock(1000.0)
    fallback = Recorder()
    sampler = central(xray, samplers, fallback=fallback, now=clock)
    sampler.refresh_rules()

    def decide(path: str, n: int, method: str = "GET") -> list[bool]:
        return [sampler.decide("shop.example", method, path) for _ in range(n)]

    # no quota yet: each rule borrows one request a second
    assert decide("/api/users", 3) == [True, False, False]
    assert decide("/other", 2) == [True, False]
    assert decide("/api/users", 1, method="POST") == [False]  # Default, already borrowed
    assert decide("/quiet", 2) == [False, False]  # ReservoirSize 0: never borrows
    assert fallback.asked == []

    xray.targets = {
        "SamplingTargetDocuments": [
            {
                "RuleName": "api",
                "FixedRate": 0.0,
                "ReservoirQuota": 3,
                "ReservoirQuotaTTL": 1100,
                "Interval": 10,
            },
            {"RuleName": "Default", "FixedRate": 1.0},
            {"RuleName": "unknown", "FixedRate": 1.0},
        ],
        "LastRuleModification": 900,
    }
    sampler.report_targets()
    (first,) = xray.calls("/SamplingTargets")
    documents = sorted(first["SamplingStatisticsDocuments"], key=lambda d: d["RuleName"])
    client_id = sampler.client_id
    assert len(client_id) == 24
    int(client_id, 16)
    assert {d["ClientID"] for d in documents} == {client_id}
    assert {d["Timestamp"] for d in documents} == {1000}
    counts = [(d["RuleName"], d["RequestCount"], d["SampledCount"], d["BorrowCount"]) for d in documents]
    assert counts == [("Default", 3, 1, 1), ("api", 3, 1, 1), ("never-borrow", 2, 0, 0)]
    assert sorted(documents[0]) == sorted(
        ["RuleName", "ClientID", "Timestamp", "RequestCount", "SampledCount", "BorrowCount"]
    )

    clock.t = 1001.0
    assert decide("/api/users", 4) == [True, True, True, False]  # the quota, not borrowing
    assert decide("/other", 3) == [True, True, True]  # Default's FixedRate is now 1
    clock.t = 1005.0
    sampler.report_targets()  # api is not due before its Interval; Default is
    second = xray.calls("/SamplingTargets")[1]["SamplingStatisticsDocuments"]
    assert [(d["RuleName"], d["RequestCount"], d["SampledCount"], d["ClientID"]) for d in second] == [
        ("Default", 3, 3, client_id)
    ]
    clock.t = 1010.0
    sampler.report_targets()
    third = xray.calls("/SamplingTargets")[2]["SamplingStatisticsDocuments"]
    assert [(d["RuleName"], d["RequestCount"], d["SampledCount"], d["BorrowCount"]) for d in third] == [
        ("api", 4, 3, 0)
    ]
    clock.t = 1011.0
    sampler.report_targets()  # nothing matched since: nothing sent
    assert len(xray.calls("/SamplingTargets")) == 3

    clock.t = 1101.0  # the quota's TTL has passed: borrow again
    assert decide("/api/users", 2) == [True, False]

    sampler.refresh_rules()  # the same rules again keep their state
    api = next(r for r in sampler.rules if r.name == "api")
    assert api.reservoir.quota == 3
    assert api.requests == 2


def test_a_failed_report_keeps_the_counts(
    xray: FakeXRay, make_rule: RuleFactory, samplers: list[CentralSampler]
) -> None:
    xray.pages = {None: {"SamplingRuleRecords": [make_rule("Default", 10000)]}}
    sampler = central(xray, samplers, now=Clock(50.0))
    sampler.refresh_rules()
    for _ in range(4):
        sampler.decide("h", "GET", "/")
    xray.mode = "500"
    with pytest.raises(SamplingAPIError, match=r"/SamplingTargets: HTTP 500"):
        sampler.report_targets()
    xray.mode = "ok"
    sampler.report_targets()
    last = xray.calls("/SamplingTargets")[-1]["SamplingStatisticsDocuments"]
    assert [(d["RequestCount"], d["SampledCount"], d["BorrowCount"]) for d in last] == [(4, 1, 1)]


def test_no_matching_rule_and_no_default_falls_back(
    xray: FakeXRay, make_rule: RuleFactory, samplers: list[CentralSampler]
) -> None:
    xray.pages = {None: {"SamplingRuleRecords": [make_rule("api", 1, URLPath="/api/*")]}}
    fallback = Recorder(answer=False)
    sampler = central(xray, samplers, fallback=fallback, now=Clock(7.0))
    sampler.refresh_rules()
    assert sampler.decide("h", "GET", "/api/x") is True  # borrowed
    assert sampler.decide("h", "GET", "/elsewhere") is False
    assert fallback.asked == [("h", "GET", "/elsewhere")]


def test_rules_older_than_the_cache_ttl_are_dropped(
    xray: FakeXRay, make_rule: RuleFactory, samplers: list[CentralSampler]
) -> None:
    xray.pages = {None: {"SamplingRuleRecords": [make_rule("Default", 10000)]}}
    clock = Clock(1000.0)
    fallback = Recorder()
    sampler = central(xray, samplers, fallback=fallback, now=clock, cache_ttl=3600)
    sampler.refresh_rules()
    sampler.decide("h", "GET", "/")
    assert fallback.asked == []
    clock.t = 1000.0 + 3601
    xray.mode = "500"
    with pytest.raises(SamplingAPIError):
        sampler.refresh_rules()
    assert sampler.rules == ()
    sampler.decide("h", "GET", "/")
    assert fallback.asked == [("h", "GET", "/")]


@pytest.mark.parametrize("mode", ["500", "garbage", "wrong", "down"])
def test_the_poller_falls_back_and_logs_once(
    xray: FakeXRay,
    make_rule: RuleFactory,
    samplers: list[CentralSampler],
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    caplog.set_level(logging.INFO, logger="k8sxray.sampling")
    xray.pages = {None: {"SamplingRuleRecords": [make_rule("Default", 10000, FixedRate=1.0)]}}
    fallback = Recorder(answer=False)
    address: tuple[str, int] = xray.address
    if mode == "down":
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            address = probe.getsockname()
    else:
        xray.mode = mode
    target = {"address": address}
    attempts: list[float] = []

    def where() -> tuple[str, int]:
        attempts.append(0.0)  # one per poll that reaches for the daemon
        return target["address"]

    sampler = CentralSampler(
        fallback,
        address=where,
        service_name="shop",
        rules_interval=60.0,
        targets_interval=0.02,
        timeout=0.5,
    )
    samplers.append(sampler)
    assert sampler.decide("h", "GET", "/") is False
    xray.wait_for(lambda: len(attempts) >= 5)  # failed rules polls are retried at the short interval
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert "using local sampling" in warnings[0].getMessage()
    assert sampler.rules == ()
    assert sampler.decide("h", "GET", "/") is False
    assert len(fallback.asked) >= 2

    # the daemon comes back: rules arrive within a few poll periods, and that is logged once
    xray.mode = "ok"
    target["address"] = xray.address
    xray.wait_for(lambda: sampler.rules != ())
    assert sampler.decide("h", "GET", "/") is True  # Default rule, FixedRate 1
    assert sum("reached the daemon again" in r.getMessage() for r in caplog.records) == 1


def test_the_poller_starts_lazily_uses_the_tcp_address_and_stops_on_close(
    xray: FakeXRay, make_rule: RuleFactory
) -> None:
    xray.pages = {None: {"SamplingRuleRecords": [make_rule("Default", 10000, FixedRate=1.0)]}}
    port = xray.address[1]
    config = _config.configure(
        daemon_address=f"udp:127.0.0.1:9 tcp:127.0.0.1:{port}", sampling_central=True, service_name="shop"
    )
    before = set(_poller_threads())  # a poller of an earlier test may still be finishing
    sampler = make_sampler(config, origin="AWS::EKS::Container")
    assert isinstance(sampler, CentralSampler)
    assert isinstance(sampler.fallback, RateSampler)
    assert set(_poller_threads()) == before
    assert xray.requests == []
    try:
        sampler.decide("h", "GET", "/")  # first decision: the fallback's reservoir; starts the poller
        (ours,) = set(_poller_threads()) - before
        xray.wait_for(lambda: sampler.rules != ())
        assert all(sampler.decide("h", "GET", "/") for _ in range(20))  # FixedRate 1
        assert set(_poller_threads()) - before == {ours}
    finally:
        sampler.close()
    assert not ours.is_alive()
    sampler.close()  # idempotent
    sampler.decide("h", "GET", "/")  # still decides; does not restart
    assert not set(_poller_threads()) - before


def test_a_rule_change_at_xray_triggers_a_refresh(
    xray: FakeXRay, make_rule: RuleFactory, samplers: list[CentralSampler]
) -> None:
    xray.pages = {None: {"SamplingRuleRecords": [make_rule("Default", 10000, FixedRate=0.0)]}}
    sampler = central(xray, samplers, rules_interval=60.0, targets_interval=0.02, poller=True)
    sampler.decide("h", "GET", "/")
    xray.wait_for(lambda: sampler.rules != ())
    xray.targets = {"SamplingTargetDocuments": [], "LastRuleModification": 4e9}  # far in the future
    xray.pages = {None: {"SamplingRuleRecords": [make_rule("Default", 10000, FixedRate=1.0)]}}
    for _ in range(3):
        sampler.decide("h", "GET", "/")  # something to report
    xray.wait_for(lambda: len(xray.calls("/GetSamplingRules")) >= 2)  # well before 60 s
    xray.wait_for(lambda: sampler.rules[0].rate == 1.0)


def _poller_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "k8sxray-sampling" and t.is_alive()]


def test_decide_is_safe_from_many_threads(
    xray: FakeXRay, make_rule: RuleFactory, samplers: list[CentralSampler]
) -> None:
    xray.pages = {None: {"SamplingRuleRecords": [make_rule("Default", 10000, FixedRate=0.0)]}}
    sampler = central(xray, samplers, now=Clock(3.0))
    sampler.refresh_rules()
    results: list[bool] = []
    errors: list[BaseException] = []

    def work(decide: Callable[[str, str, str], bool]) -> None:
        try:
            results.extend(decide("h", "GET", "/") for _ in range(2000))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(sampler.decide,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert errors == []
    assert len(results) == 8000
    assert 1 <= sum(results) <= 4  # one borrow a second; a race may let a few more through


def test_polls_stay_out_of_the_official_sdks_httplib_patch(
    xray: FakeXRay, make_rule: RuleFactory, samplers: list[CentralSampler], caplog: pytest.LogCaptureFixture
) -> None:
    """An app that ran the SDK's patch_all() must not get 'cannot find the current segment' per poll."""
    from aws_xray_sdk.ext.httplib import patch, unpatch

    xray.pages = {None: {"SamplingRuleRecords": [make_rule("Default", 10000)]}}
    sampler = central(xray, samplers)
    caplog.set_level(logging.DEBUG, logger="aws_xray_sdk")
    patch()
    try:
        sampler.refresh_rules()
    finally:
        unpatch()
    assert sampler.rules != ()
    assert not [
        r for r in caplog.records if r.name.startswith("aws_xray_sdk") and "segment" in r.getMessage()
    ]


def test_fixed_rate_beyond_the_quota_statistically(
    xray: FakeXRay, make_rule: RuleFactory, samplers: list[CentralSampler]
) -> None:
    import random

    xray.pages = {
        None: {"SamplingRuleRecords": [make_rule("Default", 10000, FixedRate=0.25, ReservoirSize=0)]}
    }
    sampler = central(xray, samplers, now=Clock(5.0), random=random.Random(99).random)
    sampler.refresh_rules()
    n = 8000
    hits = sum(sampler.decide("h", "GET", "/") for _ in range(n))
    spread = 5 * (n * 0.25 * 0.75) ** 0.5
    assert 0.25 * n - spread < hits < 0.25 * n + spread


def test_pagination_stops_on_a_repeated_token(
    xray: FakeXRay, make_rule: RuleFactory, samplers: list[CentralSampler]
) -> None:
    xray.pages = {
        None: {"SamplingRuleRecords": [make_rule("Default", 10000)], "NextToken": "same"},
        "same": {"SamplingRuleRecords": [make_rule("api", 1, URLPath="/api")], "NextToken": "same"},
    }
    sampler = central(xray, samplers)
    sampler.refresh_rules()
    assert xray.calls("/GetSamplingRules") == [{}, {"NextToken": "same"}]
    assert [r.name for r in sampler.rules] == ["api", "Default"]


def test_target_fields_of_the_wrong_type_are_ignored(
    xray: FakeXRay, make_rule: RuleFactory, samplers: list[CentralSampler]
) -> None:
    xray.pages = {None: {"SamplingRuleRecords": [make_rule("Default", 10000, FixedRate=0.0)]}}
    clock = Clock(100.0)
    sampler = central(xray, samplers, now=clock)
    sampler.refresh_rules()
    sampler.decide("h", "GET", "/")
    xray.targets = {
        "SamplingTargetDocuments": [
            {
                "RuleName": "Default",
                "FixedRate": "1",
                "ReservoirQuota": -3,
                "ReservoirQuotaTTL": "soon",
                "Interval": 0,
            },
            {"FixedRate": 1.0},
            7,
        ],
    }
    assert sampler.report_targets()
    (rule,) = sampler.rules
    assert (rule.rate, rule.reservoir.quota, rule.interval) == (0.0, None, None)
    xray.targets = {
        "SamplingTargetDocuments": [
            {"RuleName": "Default", "ReservoirQuota": 2, "ReservoirQuotaTTL": "160.5"}
        ]
    }
    sampler.decide("h", "GET", "/")
    assert sampler.report_targets()
    assert (rule.reservoir.quota, rule.reservoir.ttl) == (2, 160.5)
