"""Local sampling: reservoirs on an injected clock, rates measured on seeded randomness."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from k8sxray import _config
from k8sxray.sampling import make_sampler
from k8sxray.sampling.reservoir import QuotaReservoir, Reservoir, Take
from k8sxray.sampling.rules import parse_rules
from k8sxray.sampling.sampler import AlwaysSampler, RateSampler, RulesSampler, local_sampler


class Clock:
    """A settable wall clock (epoch seconds)."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def never() -> float:
    return 1.0  # random() never < rate unless rate > 1: only the reservoir samples


def always() -> float:
    return 0.0  # random() < any positive rate


def test_reservoir_refills_each_second() -> None:
    clock = Clock()
    reservoir = Reservoir(3, clock)
    assert [reservoir.take() for _ in range(5)] == [True, True, True, False, False]
    clock.t += 0.5  # same second
    assert not reservoir.take()
    clock.t = float(int(clock.t) + 1)  # next second
    assert [reservoir.take() for _ in range(4)] == [True, True, True, False]
    clock.t += 10
    assert reservoir.take()


def test_zero_reservoir_never_takes() -> None:
    reservoir = Reservoir(0, Clock())
    assert not any(reservoir.take() for _ in range(10))


def test_default_sampler_takes_one_a_second_then_the_rate() -> None:
    clock = Clock()
    sampler = RateSampler(now=clock, random=never)
    assert [sampler.decide("h", "GET", "/") for _ in range(3)] == [True, False, False]
    clock.t += 1
    assert [sampler.decide("h", "GET", "/") for _ in range(3)] == [True, False, False]
    eager = RateSampler(now=clock, random=always)
    assert all(eager.decide("h", "GET", "/") for _ in range(10))


@pytest.mark.parametrize("rate", [0.05, 0.3, 0.9])
def test_rate_is_respected_statistically(rate: float) -> None:
    clock = Clock()
    n = 20_000
    sampler = RateSampler(1, rate, now=clock, random=random.Random(1234).random)
    sampled = sum(sampler.decide("h", "GET", "/") for _ in range(n)) - 1  # one from the reservoir
    expected = rate * (n - 1)
    spread = 5 * (n * rate * (1 - rate)) ** 0.5
    assert expected - spread < sampled < expected + spread


def test_rate_zero_still_takes_the_reservoir() -> None:
    clock = Clock()
    sampler = local_sampler(None, 0.0, now=clock, random=always)
    assert [sampler.decide("h", "GET", "/") for _ in range(5)] == [True, False, False, False, False]
    clock.t += 1
    assert sampler.decide("h", "GET", "/")


def test_rate_one_samples_everything() -> None:
    sampler = local_sampler(None, 1.0)
    assert isinstance(sampler, AlwaysSampler)
    assert all(sampler.decide("h", "GET", "/") for _ in range(1000))


def test_nothing_set_is_xrays_default() -> None:
    sampler = local_sampler(None, None)
    assert isinstance(sampler, RateSampler)
    assert repr(sampler) == "RateSampler(fixed_target=1, rate=0.05)"


RULES = {
    "version": 2,
    "rules": [
        {"host": "*", "http_method": "GET", "url_path": "/healthz", "fixed_target": 0, "rate": 0},
        {"host": "*", "http_method": "*", "url_path": "/api/*", "fixed_target": 2, "rate": 0},
        {"host": "*", "http_method": "*", "url_path": "/api/admin", "fixed_target": 100, "rate": 1},
    ],
    "default": {"fixed_target": 1, "rate": 0},
}


def test_rules_first_match_each_with_its_own_reservoir() -> None:
    clock = Clock()
    sampler = RulesSampler(parse_rules(RULES), now=clock, random=never)
    assert not any(sampler.decide("h", "GET", "/healthz") for _ in range(5))
    # /api/admin matches rule 1 first (order, not specificity): 2 a second
    assert [sampler.decide("h", "GET", "/api/admin") for _ in range(3)] == [True, True, False]
    assert not sampler.decide("h", "POST", "/API/x")  # same reservoir, same second
    # the default has its own reservoir
    assert [sampler.decide("h", "GET", "/other") for _ in range(2)] == [True, False]
    clock.t += 1
    assert sampler.decide("h", "POST", "/api/x")
    assert sampler.decide("h", "GET", "/other")


def test_rules_rate_applies_beyond_the_reservoir() -> None:
    doc = {
        "version": 2,
        "rules": [{"host": "*", "http_method": "*", "url_path": "/a", "fixed_target": 0, "rate": 0.5}],
        "default": {"fixed_target": 0, "rate": 0},
    }
    sampler = RulesSampler(parse_rules(doc), now=Clock(), random=random.Random(7).random)
    n = 4000
    hits = sum(sampler.decide("h", "GET", "/a") for _ in range(n))
    assert 0.45 * n < hits < 0.55 * n
    assert not any(sampler.decide("h", "GET", "/b") for _ in range(100))


def test_rules_and_rate_together_the_rate_replaces_the_default_rate(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(RULES))
    sampler = local_sampler(str(path), 1.0, now=Clock(), random=lambda: 0.99)
    assert isinstance(sampler, RulesSampler)
    assert all(sampler.decide("h", "GET", "/other") for _ in range(10))  # default rate is now 1
    assert not any(sampler.decide("h", "GET", "/healthz") for _ in range(10))  # rules still apply


def test_a_rules_file_broken_after_configure_falls_back_to_the_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rules.json"
    path.write_text("{broken")
    with caplog.at_level(logging.ERROR, logger="k8sxray.sampling"):
        sampler = local_sampler(str(path), None)
    assert repr(sampler) == "RateSampler(fixed_target=1, rate=0.05)"
    assert "sampling rules ignored" in caplog.text


def test_quota_reservoir_takes_the_quota_while_fresh_then_borrows() -> None:
    clock = Clock(1000.0)
    reservoir = QuotaReservoir(can_borrow=True, now=clock)
    # no quota yet: borrow one a second
    assert [reservoir.take() for _ in range(3)] == [Take.BORROWED, Take.NO, Take.NO]
    reservoir.load(3, 1005.0)
    clock.t = 1001.0
    assert [reservoir.take() for _ in range(4)] == [Take.TAKEN] * 3 + [Take.NO]
    reservoir.load(None, None)  # keeps the quota
    clock.t = 1005.0
    assert reservoir.take() == Take.TAKEN
    clock.t = 1006.0  # expired: borrow again
    assert [reservoir.take() for _ in range(2)] == [Take.BORROWED, Take.NO]
    reservoir.load(0, 2000.0)  # a zero quota is a quota: nothing is taken or borrowed
    clock.t = 1007.0
    assert reservoir.take() == Take.NO


def test_quota_reservoir_without_borrowing() -> None:
    reservoir = QuotaReservoir(can_borrow=False, now=Clock())
    assert reservoir.take() == Take.NO


def test_make_sampler_from_config(tmp_path: Path) -> None:
    common = {"environ": {}, "daemon_address": "127.0.0.1:2000", "sampling_central": False}
    assert isinstance(make_sampler(_config.build(**common)), RateSampler)  # type: ignore[arg-type]
    assert isinstance(make_sampler(_config.build(sampling_rate=1.0, **common)), AlwaysSampler)  # type: ignore[arg-type]
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(RULES))
    sampler = make_sampler(_config.build(sampling_rules=str(path), **common))  # type: ignore[arg-type]
    assert isinstance(sampler, RulesSampler)
    assert len(sampler.rules) == 3
    sampler.close()
