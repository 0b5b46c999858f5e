"""Sampling answered by the daemon itself (no X-Ray behind it): rules files, quotas, the official SDK."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from daemon_helpers import DaemonProcess, free_tcp_port

from k8sxray.daemon.local_sampling import LocalSampling, RulesError, default_rule, load_rules, rules_from_json
from k8sxray.daemon.proxy import LocalSamplingServer

CLIENT_A, CLIENT_B, CLIENT_C = "a" * 24, "b" * 24, "c" * 24

RULES = [
    {
        "RuleName": "checkout",
        "Priority": 1,
        "FixedRate": 0.0,
        "ReservoirSize": 4,
        "HTTPMethod": "POST",
        "URLPath": "/checkout",
        "ServiceName": "*",
    },
    {"RuleName": "health", "Priority": 2, "FixedRate": 0.0, "ReservoirSize": 0, "URLPath": "/healthz"},
    {"RuleName": "Default", "Priority": 10000, "FixedRate": 1.0, "ReservoirSize": 0},
]


def _xray(port: int) -> Any:
    """botocore's real X-Ray client, unsigned, pointed at a daemon's TCP port (as the SDKs do it)."""
    return botocore.session.get_session().create_client(
        "xray",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-west-2",
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}, parameter_validation=False),
    )


@pytest.fixture
def server() -> Iterator[Callable[..., LocalSamplingServer]]:
    started: list[LocalSamplingServer] = []

    def start(rules: list[dict[str, Any]] | None = None, **kwargs: Any) -> LocalSamplingServer:
        served = LocalSamplingServer(("127.0.0.1", 0), LocalSampling(rules, **kwargs))
        served.start()
        started.append(served)
        return served

    yield start
    for served in started:
        served.close()


# -- rules files ----------------------------------------------------------------------------------


def test_default_rule_is_xrays() -> None:
    (rule,) = LocalSampling().rules
    assert rule == default_rule()
    assert (rule["RuleName"], rule["ReservoirSize"], rule["FixedRate"], rule["Priority"]) == (
        "Default",
        1,
        0.05,
        10000,
    )
    assert {
        rule[k] for k in ("ServiceName", "ServiceType", "Host", "HTTPMethod", "URLPath", "ResourceARN")
    } == {"*"}
    assert (rule["Version"], rule["Attributes"]) == (1, {})


@pytest.mark.parametrize(
    "form",
    ["list", "records", "get-sampling-rules"],
)
def test_xray_shapes_are_read(tmp_path: Path, form: str) -> None:
    rule = {"RuleName": "api", "Priority": 5, "FixedRate": 0.5, "ReservoirSize": 2, "URLPath": "/api/*"}
    data: Any = {
        "list": [rule],
        "records": [{"SamplingRule": rule}],
        "get-sampling-rules": {
            "SamplingRuleRecords": [{"SamplingRule": rule, "CreatedAt": 1.0, "ModifiedAt": 1.0}]
        },
    }[form]
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data))
    api, default = load_rules(path)
    assert (api["RuleName"], api["FixedRate"], api["ReservoirSize"], api["URLPath"], api["Host"]) == (
        "api",
        0.5,
        2,
        "/api/*",
        "*",
    )
    assert default == default_rule()  # added when the file has none


def test_the_sdks_local_rules_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "sampling.json"
    path.write_text(
        json.dumps(
            {
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
                        "description": "health",
                        "host": "api.*",
                        "http_method": "*",
                        "url_path": "*",
                        "fixed_target": 3,
                        "rate": 0.2,
                    },
                ],
                "default": {"fixed_target": 2, "rate": 0.1},
            }
        )
    )
    health, second, default = load_rules(path)
    assert (health["RuleName"], health["Priority"], health["URLPath"], health["HTTPMethod"]) == (
        "health",
        1,
        "/healthz",
        "GET",
    )
    assert (second["RuleName"], second["Priority"], second["Host"], second["ReservoirSize"]) == (
        "rule-2",
        2,
        "api.*",
        3,
    )
    assert (default["RuleName"], default["ReservoirSize"], default["FixedRate"]) == ("Default", 2, 0.1)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"rules": []}', "expected a list of SamplingRule objects"),
        (
            '[{"RuleName": "x", "Priority": 1, "FixedRate": 2, "ReservoirSize": 1}]',
            "rule 'x': FixedRate must be a number from 0 to 1",
        ),
        (
            '[{"RuleName": "x", "Priority": 0, "FixedRate": 0.1, "ReservoirSize": 1}]',
            "Priority must be a whole number from 1 to 9999",
        ),
        (
            '[{"RuleName": "x", "Priority": 1, "FixedRate": 0.1, "ReservoirSize": -1}]',
            "ReservoirSize must be a whole number",
        ),
        (
            '[{"RuleName": "x", "Priority": 1, "FixedRate": 0.1, "ReservoirSize": 1, "UrlPath": "/"}]',
            "unknown key 'UrlPath'",
        ),
        (
            '[{"RuleName": "", "Priority": 1, "FixedRate": 0.1, "ReservoirSize": 1}]',
            "RuleName must be a string of 1 to 32",
        ),
        (
            '[{"RuleName": "x", "Priority": 1, "FixedRate": 0.1, "ReservoirSize": 1},'
            ' {"RuleName": "x", "Priority": 2, "FixedRate": 0.1, "ReservoirSize": 1}]',
            "two rules are named 'x'",
        ),
        ('{"version": 3, "rules": [], "default": {}}', "version 1 or 2"),
        ('{"version": 2, "rules": []}', '"default" (an object)'),
    ],
)
def test_bad_rules_files_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "rules.json"
    path.write_text(content)
    with pytest.raises(RulesError, match=re.escape(message)):
        load_rules(path)
    with pytest.raises(RulesError, match="cannot read sampling rules"):
        load_rules(tmp_path / "missing.json")


# -- quotas ---------------------------------------------------------------------------------------


def _report(sampling: LocalSampling, client: str, rule: str = "checkout") -> dict[str, Any]:
    doc = {"RuleName": rule, "ClientID": client, "Timestamp": 1.0, "RequestCount": 3, "SampledCount": 1}
    status, answer, _ = sampling.answer(
        "/SamplingTargets", json.dumps({"SamplingStatisticsDocuments": [doc]}).encode()
    )
    assert status == 200, answer
    return answer


def test_the_reservoir_is_shared_among_the_clients_seen_in_the_last_two_intervals() -> None:
    clock = [1000.0]
    sampling = LocalSampling([{**RULES[0], "ReservoirSize": 5}], now=lambda: clock[0])

    (alone,) = _report(sampling, CLIENT_B)["SamplingTargetDocuments"]
    assert alone == {
        "RuleName": "checkout",
        "FixedRate": 0.0,
        "ReservoirQuota": 5,
        "ReservoirQuotaTTL": 1020.0,
        "Interval": 10,
    }
    clock[0] += 5
    assert _report(sampling, CLIENT_A)["SamplingTargetDocuments"][0]["ReservoirQuota"] == 3  # 5 = 3 + 2
    assert _report(sampling, CLIENT_B)["SamplingTargetDocuments"][0]["ReservoirQuota"] == 2
    clock[0] += 5
    assert _report(sampling, CLIENT_C)["SamplingTargetDocuments"][0]["ReservoirQuota"] == 1  # 2 + 2 + 1
    assert sampling.active_clients("checkout") == 3
    clock[0] += 21  # A and B stopped reporting two intervals ago
    assert _report(sampling, CLIENT_C)["SamplingTargetDocuments"][0]["ReservoirQuota"] == 5
    assert sampling.active_clients("checkout") == 1


def test_unknown_rules_are_unprocessed_and_the_answer_has_xrays_shape() -> None:
    sampling = LocalSampling(RULES, now=lambda: 50.0)
    answer = _report(sampling, CLIENT_A, rule="gone")
    assert answer["SamplingTargetDocuments"] == []
    assert answer["UnprocessedStatistics"][0]["RuleName"] == "gone"
    assert answer["LastRuleModification"] == 50.0
    status, rules, _ = sampling.answer("/GetSamplingRules", b"")
    assert status == 200
    assert [r["SamplingRule"]["RuleName"] for r in rules["SamplingRuleRecords"]] == [
        "checkout",
        "health",
        "Default",
    ]


# -- over HTTP, with botocore's real X-Ray client ---------------------------------------------------


def test_botocore_reads_the_answers_with_xrays_model(server: Callable[..., LocalSamplingServer]) -> None:
    client = _xray(server(RULES).address[1])
    records = client.get_sampling_rules()["SamplingRuleRecords"]
    assert [r["SamplingRule"]["RuleName"] for r in records] == ["checkout", "health", "Default"]
    answer = client.get_sampling_targets(
        SamplingStatisticsDocuments=[
            {
                "RuleName": "checkout",
                "ClientID": CLIENT_A,
                "Timestamp": time.time(),
                "RequestCount": 9,
                "SampledCount": 4,
            }
        ]
    )
    (target,) = answer["SamplingTargetDocuments"]
    assert (target["ReservoirQuota"], target["Interval"], target["FixedRate"]) == (4, 10, 0.0)
    assert target["ReservoirQuotaTTL"].timestamp() > time.time()
    with pytest.raises(client.exceptions.InvalidRequestException, match="SamplingStatisticsDocuments"):
        client.get_sampling_targets(
            SamplingStatisticsDocuments=[
                {"RuleName": "x", "ClientID": CLIENT_A, "Timestamp": 1, "RequestCount": -1, "SampledCount": 0}
            ]
        )


def test_only_the_two_sampling_calls_are_served(server: Callable[..., LocalSamplingServer]) -> None:
    served = server()
    for method, path, expected in [
        ("POST", "/TraceSegments", 404),
        ("GET", "/GetSamplingRules", 405),
        ("POST", "/SamplingTargets", 400),
    ]:
        conn = http.client.HTTPConnection(*served.address, timeout=5)
        conn.request(method, path, body=b"[1]")
        response = conn.getresponse()
        assert response.status == expected, (method, path)
        assert {"Message", "message"} & set(json.loads(response.read()))  # X-Ray's, the refusals' key
        conn.close()


def _wait_for_a_fresh_second() -> None:
    while time.time() % 1 > 0.3:
        time.sleep(0.02)


def test_the_official_sdks_centralized_sampler_samples_by_the_local_rules(
    server: Callable[..., LocalSamplingServer],
) -> None:
    from aws_xray_sdk.core.context import Context
    from aws_xray_sdk.core.daemon_config import DaemonConfig
    from aws_xray_sdk.core.sampling.sampler import DefaultSampler

    host, port = server(RULES).address

    def sdk_sampler() -> Any:
        sampler = DefaultSampler()
        sampler.load_settings(DaemonConfig(f"tcp:{host}:{port} udp:127.0.0.1:2000"), Context())
        sampler._started = True  # the tests run the pollers' work themselves, without their threads
        sampler._rule_poller._refresh_cache()  # what the rule poller does at start
        return sampler

    def checkout(sampler: Any) -> Any:
        return sampler.should_trace(
            {"host": "shop", "method": "POST", "path": "/checkout", "service": "shop"}
        )

    a = sdk_sampler()
    assert [r.name for r in a._cache.rules] == ["checkout", "health", "Default"]
    assert a.should_trace({"host": "shop", "method": "GET", "path": "/healthz", "service": "shop"}) is False
    assert a.should_trace({"host": "shop", "method": "GET", "path": "/other", "service": "shop"}) == "Default"
    checkout(a)  # the rule is used, so its statistics are reported
    a._target_poller._do_work()  # one report: the whole reservoir, as the only client
    assert (
        a._cache.get_matched_rule({"method": "POST", "path": "/checkout"}, int(time.time())).reservoir.quota
        == 4
    )
    _wait_for_a_fresh_second()
    assert [checkout(a) for _ in range(10)].count("checkout") == 4  # 4 a second, then FixedRate 0

    b = sdk_sampler()  # a second client (another ClientID) joins
    checkout(b)
    b._target_poller._do_work()
    for sampler in (a, b):
        checkout(sampler)  # used again since the last report
    a._target_poller._do_work()
    quotas = [
        s._cache.get_matched_rule({"method": "POST", "path": "/checkout"}, int(time.time())).reservoir.quota
        for s in (a, b)
    ]
    assert quotas == [2, 2]


# -- the daemon program ----------------------------------------------------------------------------


def test_the_stdout_daemon_answers_sampling_and_k8sxray_config_says_so(
    tmp_path: Path, start_daemon: Callable[..., DaemonProcess]
) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"SamplingRuleRecords": [{"SamplingRule": RULES[0]}]}))
    port = free_tcp_port()
    daemon = start_daemon(["--sink", "stdout", "-t", f"127.0.0.1:{port}", "--sampling-rules", str(rules)])
    daemon.wait_log("answering sampling calls on 127.0.0.1")
    assert "checkout, Default" in daemon.log
    records = _xray(port).get_sampling_rules()["SamplingRuleRecords"]
    assert [r["SamplingRule"]["RuleName"] for r in records] == ["checkout", "Default"]

    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{port}",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    config = subprocess.run(
        [sys.executable, "-m", "k8sxray", "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert config.returncode == 0, config.stderr
    assert "answers  yes" in config.stdout
    assert daemon.stop() == 0


def test_a_bad_rules_file_stops_the_daemon_at_start(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text('[{"RuleName": "x"}]')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "k8sxray.daemon",
            "--sink",
            "stdout",
            "-b",
            "127.0.0.1:0",
            "-t",
            "127.0.0.1:0",
            "--http",
            "off",
            "--sampling-rules",
            str(rules),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert f"sampling rules {rules}: rule 'x': Priority must be" in result.stderr
    assert "shipped" not in result.stderr


def test_rules_from_json_keeps_the_default_last() -> None:
    rules = rules_from_json(
        [{"RuleName": "Default", "Priority": 10000, "FixedRate": 0.0, "ReservoirSize": 0}, RULES[1]]
    )
    assert [r["RuleName"] for r in rules] == ["health", "Default"]
