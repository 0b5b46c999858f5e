"""Daemon discovery through the real system resolver.

Each test runs a child in its own network and mount namespace (``unshare --net --mount``),
with a Kubernetes-style resolv.conf (``search <ns>.svc.cluster.local ...``, ``ndots:5``)
bind-mounted over /etc/resolv.conf and a real DNS server on 127.0.0.1:53. The machine's own
resolver and network are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CHILD = Path(__file__).with_name("netns_child.py")
K8S = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "POD_NAMESPACE": "prod"}
NOT_SET = ["AWS_XRAY_DAEMON_ADDRESS", "K8SXRAY_NODE_IP", "HOST_IP", "K8SXRAY_DAEMON_SERVICE"]


def _namespaces_available() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True, check=False)
    return probe.returncode == 0


pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not _namespaces_available(), reason="needs root and unshare --net --mount"),
]


def run(scenario: dict[str, Any]) -> dict[str, Any]:
    scenario.setdefault("namespace", "prod")
    scenario.setdefault("unset", NOT_SET)
    proc = subprocess.run(
        ["unshare", "--net", "--mount", sys.executable, str(CHILD), json.dumps(scenario)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_service_in_the_pods_namespace_is_found_through_the_search_list() -> None:
    result = run({"run": "cli", "env": K8S, "records": {"xray-service.prod.svc.cluster.local": "10.100.7.7"}})
    daemon = result["config"]["daemon"]
    assert daemon["udp"] == "xray-service.prod:2000"
    assert daemon["udp_resolved"] == "10.100.7.7:2000"
    assert daemon["tcp_resolved"] == "10.100.7.7:2000"
    assert daemon["source"] == "discovery"
    assert "Pod's namespace" in daemon["reason"]
    assert "10.100.7.7" in daemon["reason"]
    # The real resolver expanded the short name with the Pod's search domains (ndots:5).
    assert "A xray-service.prod.svc.cluster.local" in result["queries"]
    assert "A xray-service.prod.prod.svc.cluster.local" in result["queries"]
    assert result["config"]["settings"]["daemon_udp"]["source"] == "discovery"


def test_service_found_only_in_default() -> None:
    result = run(
        {"run": "cli", "env": K8S, "records": {"xray-service.default.svc.cluster.local": "10.100.0.9"}}
    )
    daemon = result["config"]["daemon"]
    assert daemon["udp"] == "xray-service.default:2000"
    assert daemon["udp_resolved"] == "10.100.0.9:2000"
    assert daemon["tried"] == ["xray-service.prod: not found"]
    assert "default" in daemon["reason"]


def test_custom_service_name() -> None:
    env = {**K8S, "K8SXRAY_DAEMON_SERVICE": "otel-xray"}
    result = run(
        {
            "run": "cli",
            "env": env,
            "unset": [n for n in NOT_SET if n != "K8SXRAY_DAEMON_SERVICE"],
            "records": {"otel-xray.prod.svc.cluster.local": "10.100.1.1"},
        }
    )
    assert result["config"]["daemon"]["udp_resolved"] == "10.100.1.1:2000"
    assert result["config"]["settings"]["daemon_service"] == {
        "value": "otel-xray",
        "source": "env",
        "detail": "K8SXRAY_DAEMON_SERVICE",
    }


def test_no_service_falls_back_to_loopback_quickly() -> None:
    result = run({"run": "cli", "env": K8S, "records": {}})
    daemon = result["config"]["daemon"]
    assert daemon["udp_resolved"] == "127.0.0.1:2000"
    assert daemon["source"] == "default"
    assert daemon["tried"] == ["xray-service.prod: not found", "xray-service.default: not found"]
    assert result["elapsed"] < 5.0  # a whole CLI run, Python start-up included; NXDOMAIN is immediate


def test_unanswered_lookups_are_bounded_by_the_discovery_timeout() -> None:
    # The resolver itself would wait 3 s per query (resolv.conf timeout:3); we give up at 0.3 s.
    env = {**K8S, "K8SXRAY_DISCOVERY_TIMEOUT": "0.3"}
    slow = ["xray-service.prod.prod.svc.cluster.local", "xray-service.default.prod.svc.cluster.local"]
    result = run({"run": "cli", "env": env, "records": {}, "slow": slow})
    daemon = result["config"]["daemon"]
    assert daemon["udp_resolved"] == "127.0.0.1:2000"
    assert daemon["tried"] == [
        "xray-service.prod: timed out after 0.3s",
        "xray-service.default: timed out after 0.3s",
    ]
    assert result["elapsed"] < 2.9  # less than even one of the resolver's own 3 s timeouts


def test_node_ip_wins_over_dns_and_asks_no_dns() -> None:
    env = {**K8S, "HOST_IP": "10.0.3.17"}
    result = run(
        {
            "run": "cli",
            "env": env,
            "unset": [n for n in NOT_SET if n != "HOST_IP"],
            "records": {"xray-service.prod.svc.cluster.local": "10.100.7.7"},
        }
    )
    daemon = result["config"]["daemon"]
    assert daemon["udp_resolved"] == "10.0.3.17:2000"
    assert "HOST_IP" in daemon["reason"]
    assert not [q for q in result["queries"] if "xray-service" in q]


def test_a_restarted_daemon_pod_is_found_again() -> None:
    env = {**K8S, "K8SXRAY_DISCOVERY_INTERVAL": "0.2"}
    result = run(
        {
            "run": "refresh",
            "env": env,
            "records": {"xray-service.prod.svc.cluster.local": "10.100.7.7"},
            "later": {"xray-service.prod.svc.cluster.local": "10.100.7.8"},
        }
    )
    assert result["before"] == ["10.100.7.7", 2000]
    assert result["after"] == ["10.100.7.8", 2000]


def test_a_service_created_after_start_up_is_picked_up() -> None:
    env = {**K8S, "K8SXRAY_DISCOVERY_INTERVAL": "0.2"}
    result = run(
        {
            "run": "refresh",
            "env": env,
            "records": {},
            "later": {"xray-service.default.svc.cluster.local": "10.100.0.5"},
        }
    )
    assert result["before"] == ["127.0.0.1", 2000]
    assert result["after"] == ["10.100.0.5", 2000]
    assert "found after start-up" in result["reason"]


def test_an_explicit_host_name_is_resolved_once_up_front() -> None:
    env = {**K8S, "AWS_XRAY_DAEMON_ADDRESS": "tcp:xray.tools:2001 udp:xray.tools:2000"}
    result = run(
        {
            "run": "cli",
            "env": env,
            "unset": [n for n in NOT_SET if n != "AWS_XRAY_DAEMON_ADDRESS"],
            "records": {"xray.tools.prod.svc.cluster.local": "10.100.2.2"},
        }
    )
    daemon = result["config"]["daemon"]
    assert daemon["udp_resolved"] == "10.100.2.2:2000"
    assert daemon["tcp_resolved"] == "10.100.2.2:2001"
    assert daemon["source"] == "env"
