"""End to end: the centralized sampler through k8sxray's own daemon proxy to an X-Ray stand-in, and
against the daemon's local sampling answers (no X-Ray at all)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import botocore.session

from k8sxray.daemon.local_sampling import LocalSampling
from k8sxray.daemon.proxy import LocalSamplingServer, SamplingProxy
from k8sxray.sampling.central import CentralSampler
from k8sxray.sampling.sampler import RateSampler


def test_rules_and_targets_through_the_daemons_sampling_proxy(
    xray: Any, make_rule: Callable[..., dict[str, Any]]
) -> None:
    xray.pages = {None: {"SamplingRuleRecords": [make_rule("Default", 10000, FixedRate=0.0)]}}
    xray.targets = {
        "SamplingTargetDocuments": [
            {
                "RuleName": "Default",
                "FixedRate": 1.0,
                "ReservoirQuota": 5,
                "ReservoirQuotaTTL": time.time() + 60,
            }
        ],
        "LastRuleModification": 0,
    }
    session = botocore.session.Session()
    session.set_credentials("AKIDEXAMPLE", "not-a-real-secret")
    proxy = SamplingProxy(
        ("127.0.0.1", 0), session, "us-east-1", endpoint_url=f"http://127.0.0.1:{xray.address[1]}"
    )
    proxy.start()
    sampler = CentralSampler(
        RateSampler(0, 0.0), address=lambda: proxy.address, service_name="shop", targets_interval=0.05
    )
    try:
        sampler.decide("h", "GET", "/")  # starts the poller
        xray.wait_for(lambda: sampler.rules != ())
        for _ in range(3):
            sampler.decide("h", "GET", "/")
        xray.wait_for(lambda: sampler.rules[0].rate == 1.0)  # the target came back through the proxy
        assert sampler.rules[0].reservoir.quota == 5
        (report,) = xray.calls("/SamplingTargets")[:1]
        (document,) = report["SamplingStatisticsDocuments"]
        assert document["ClientID"] == sampler.client_id
        assert document["RequestCount"] >= 1
    finally:
        sampler.close()
        proxy.close()


def test_k8sxray_central_sampler_with_the_daemons_local_sampling_answers() -> None:
    rules = [
        {"RuleName": "checkout", "Priority": 1, "FixedRate": 0.0, "ReservoirSize": 3, "URLPath": "/checkout"},
        {"RuleName": "Default", "Priority": 10000, "FixedRate": 1.0, "ReservoirSize": 0},
    ]
    server = LocalSamplingServer(("127.0.0.1", 0), LocalSampling(rules))
    server.start()
    sampler = CentralSampler(
        RateSampler(0, 0.0), address=lambda: server.address, service_name="shop", poller=False
    )
    try:
        assert sampler.refresh_rules()
        assert [(r.name, r.rate) for r in sampler.rules] == [("checkout", 0.0), ("Default", 1.0)]
        assert sampler.decide("shop", "GET", "/other")  # Default: FixedRate 1.0
        sampler.decide("shop", "POST", "/checkout")
        assert sampler.report_targets()
        assert sampler.rules[0].reservoir.quota == 3  # the only client: the whole reservoir
        while time.time() % 1 > 0.3:  # ten decisions within one second
            time.sleep(0.02)
        assert [sampler.decide("shop", "POST", "/checkout") for _ in range(10)].count(True) == 3
    finally:
        sampler.close()
        server.close()
