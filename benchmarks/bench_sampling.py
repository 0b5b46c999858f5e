"""Cost of one sampling decision: k8sxray's samplers vs the official SDK's, µs per call.

    python benchmarks/bench_sampling.py

Each case runs 200,000 decisions, 7 times; the table shows medians. The SDK's centralized
sampler is loaded with the same rules through its rule cache (no network on either side).
"""

from __future__ import annotations

import logging
import statistics
import time
import timeit
from collections.abc import Callable

from aws_xray_sdk.core.sampling.local.sampler import LocalSampler
from aws_xray_sdk.core.sampling.sampler import DefaultSampler
from aws_xray_sdk.core.sampling.sampling_rule import SamplingRule

from k8sxray.sampling.api import RuleDefinition
from k8sxray.sampling.central import CentralSampler
from k8sxray.sampling.rules import parse_rules
from k8sxray.sampling.sampler import RateSampler, RulesSampler

RULES = {
    "version": 2,
    "rules": [
        {"host": "*", "http_method": "GET", "url_path": "/healthz", "fixed_target": 0, "rate": 0},
        {"host": "api.*", "http_method": "*", "url_path": "/v1/*", "fixed_target": 2, "rate": 0.1},
        {"host": "*", "http_method": "POST", "url_path": "/orders/*", "fixed_target": 1, "rate": 0.2},
    ],
    "default": {"fixed_target": 1, "rate": 0.05},
}
N = 200_000
REQUEST = ("shop.example", "GET", "/cart/7")


def median_us(fn: Callable[[], object]) -> float:
    return statistics.median(timeit.timeit(fn, number=N) / N * 1e6 for _ in range(7))


def central(rules: list[RuleDefinition]) -> CentralSampler:
    sampler = CentralSampler(
        RateSampler(), address=lambda: ("127.0.0.1", 9), service_name="shop", poller=False
    )
    sampler.install(rules)
    return sampler


def sdk_central(rules: list[SamplingRule]) -> DefaultSampler:
    sampler = DefaultSampler()
    sampler._started = True  # as if its poller had started; rules are loaded below
    sampler._cache.load_rules(rules)
    sampler._cache.last_updated = int(time.time())
    return sampler


def main() -> None:
    logging.disable(logging.CRITICAL)
    default_rule = RuleDefinition("Default", 10000, 0.05, 1)
    two_rules = [
        RuleDefinition("a", 1, 0.1, 1, url_path="/v1/*"),
        RuleDefinition("b", 2, 0.2, 1, http_method="POST"),
        default_rule,
    ]
    sdk_default = SamplingRule("Default", 10000, 0.05, 1, "*", "*", "*", "*", "*")
    sdk_two_rules = [
        SamplingRule("a", 1, 0.1, 1, "*", "*", "/v1/*", "*", "*"),
        SamplingRule("b", 2, 0.2, 1, "*", "POST", "*", "*", "*"),
        sdk_default,
    ]
    ours = {
        "default rule (1/s, then 5%)": RateSampler(),
        "local rules file, 3 rules, no match": RulesSampler(parse_rules(RULES)),
        "centralized, X-Ray's Default rule only": central([default_rule]),
        "centralized, 2 rules + Default": central(two_rules),
    }
    theirs = {
        "default rule (1/s, then 5%)": LocalSampler(),
        "local rules file, 3 rules, no match": LocalSampler(RULES),
        "centralized, X-Ray's Default rule only": sdk_central([sdk_default]),
        "centralized, 2 rules + Default": sdk_central(sdk_two_rules),
    }
    sdk_request = {"host": REQUEST[0], "method": REQUEST[1], "path": REQUEST[2]}
    print(f"{'case':40} {'k8sxray µs':>11} {'aws-xray-sdk µs':>16} {'ratio':>7}")
    for name, sampler in ours.items():
        mine = median_us(lambda s=sampler: s.decide(*REQUEST))  # type: ignore[misc]
        peer = theirs[name]
        other = median_us(lambda p=peer: p.should_trace(dict(sdk_request)))  # type: ignore[misc]
        print(f"{name:40} {mine:11.3f} {other:16.3f} {other / mine:6.1f}x")


if __name__ == "__main__":
    main()
