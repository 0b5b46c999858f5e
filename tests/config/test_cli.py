"""``python -m k8sxray config``: the resolved configuration, its sources, and a daemon probe."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

CLEAN = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY_", "K8SXRAY_", "KUBERNETES_"))}
for _name in ("HOST_IP", "POD_NAME", "POD_NAMESPACE"):
    CLEAN.pop(_name, None)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k8sxray", "config", *args],
        env={**CLEAN, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def cli_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = cli("--json", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.fixture
def listener() -> Iterator[int]:
    """A real TCP listener standing in for the daemon's sampling port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_env_case(listener: int) -> None:
    out = cli_json(
        {
            "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{listener}",
            "AWS_XRAY_TRACING_NAME": "orders",
            "K8SXRAY_SAMPLING_RATE": "0.5",
        }
    )
    settings = out["settings"]
    assert settings["service_name"] == {"value": "orders", "source": "env", "detail": "AWS_XRAY_TRACING_NAME"}
    assert settings["sampling_rate"]["value"] == 0.5
    assert settings["daemon_udp"] == {
        "value": f"127.0.0.1:{listener}",
        "source": "env",
        "detail": "AWS_XRAY_DAEMON_ADDRESS",
    }
    assert out["daemon"]["answers"] is True
    assert out["daemon"]["probe"].startswith("TCP connect in")


def test_downward_api_case() -> None:
    out = cli_json(
        {
            "KUBERNETES_SERVICE_HOST": "10.96.0.1",
            "HOST_IP": "10.0.4.4",
            "POD_NAME": "checkout-7d9f8b6c5-x2k4p",
            "POD_NAMESPACE": "shop",
        },
        "--no-probe",
    )
    assert out["daemon"]["udp_resolved"] == "10.0.4.4:2000"
    assert out["daemon"]["source"] == "discovery"
    assert "HOST_IP" in out["daemon"]["reason"]
    assert out["daemon"]["answers"] is None
    assert out["settings"]["service_name"]["value"] == "checkout"
    assert out["settings"]["service_name"]["source"] == "discovery"
    assert out["settings"]["plugins"] == {
        "value": ["kubernetes"],
        "source": "discovery",
        "detail": "KUBERNETES_SERVICE_HOST is set",
    }


def test_default_case_reports_a_daemon_that_does_not_answer() -> None:
    with socket.socket() as sock:  # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = cli_json({"AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{port}"})
    assert out["daemon"]["answers"] is False
    assert "refused" in out["daemon"]["probe"].lower()


def test_human_output_names_every_source(listener: int) -> None:
    proc = cli(env={"AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{listener}", "AWS_XRAY_TRACING_NAME": "orders"})
    assert proc.returncode == 0, proc.stderr
    assert "orders    <- env (AWS_XRAY_TRACING_NAME)" in proc.stdout
    assert "answers  yes (TCP connect in" in proc.stdout
    assert "found    env: set by AWS_XRAY_DAEMON_ADDRESS" in proc.stdout


def test_bad_value_is_a_clear_error_and_exit_2() -> None:
    proc = cli(env={"K8SXRAY_SAMPLING_RATE": "2"})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "K8SXRAY_SAMPLING_RATE='2' is outside 0..1" in proc.stderr
    assert "Traceback" not in proc.stderr
