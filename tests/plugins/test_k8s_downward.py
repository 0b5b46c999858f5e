"""Downward API env, volume files (the kubelet's Go-quoted format), namespace file, hostname."""

from __future__ import annotations

from pathlib import Path

import pytest

from k8sxray.plugins._downward import (
    PodEnv,
    from_env,
    hostname,
    namespace_from_file,
    parse_key_values,
    read_labels,
    read_podinfo,
    unquote_go,
)

FIXTURES = Path(__file__).parent / "fixtures"


def test_from_env_reads_every_documented_name() -> None:
    env = {
        "POD_NAME": "checkout-7d9f8b6c5d-x7k2p",
        "POD_NAMESPACE": "shop",
        "POD_UID": "8d1e2a9f-4b5c-4e0b-9a6e-1c2d3e4f5a6b",
        "POD_IP": "10.0.3.17",
        "NODE_NAME": "ip-10-0-3-5.eu-west-1.compute.internal",
        "CONTAINER_NAME": "app",
        "K8SXRAY_CLUSTER_NAME": "prod-eu",
    }
    assert from_env(env) == PodEnv(
        pod_name="checkout-7d9f8b6c5d-x7k2p",
        namespace="shop",
        pod_uid="8d1e2a9f-4b5c-4e0b-9a6e-1c2d3e4f5a6b",
        pod_ip="10.0.3.17",
        node_name="ip-10-0-3-5.eu-west-1.compute.internal",
        container_name="app",
        cluster_name="prod-eu",
    )


def test_from_env_drops_blank_and_absurd_values() -> None:
    assert from_env({"POD_NAME": "  ", "POD_NAMESPACE": "x" * 300, "POD_IP": " 10.0.0.1\n"}) == PodEnv(
        pod_ip="10.0.0.1"
    )
    assert from_env({}) == PodEnv()


def test_read_podinfo_fixture() -> None:
    labels, annotations = read_podinfo(str(FIXTURES / "podinfo"))
    assert labels == {
        "app": "checkout",
        "app.kubernetes.io/component": "api",
        "app.kubernetes.io/name": "checkout",
        "app.kubernetes.io/part-of": "shop",
        "app.kubernetes.io/version": "1.4.2",
        "pod-template-hash": "7d9f8b6c5d",
        "team": 'payments "core" \\ ops',
    }
    assert annotations["example.com/note"] == "first line\nsecond\tline: café \u200b \ufffd!"
    assert annotations["kubernetes.io/config.source"] == "api"


def test_read_podinfo_missing_directory(tmp_path: Path) -> None:
    assert read_podinfo(str(tmp_path / "absent")) == ({}, {})
    assert read_labels(str(tmp_path / "absent")) == {}


def test_read_labels_is_the_labels_half() -> None:
    assert read_labels(str(FIXTURES / "podinfo")) == read_podinfo(str(FIXTURES / "podinfo"))[0]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("plain", "plain"),
        ("", ""),
        (r"a\"b", 'a"b'),
        (r"\a\b\f\n\r\t\v\\", "\a\b\f\n\r\t\v\\"),
        (r"\u00e9\U0001F600", "é\U0001f600"),
        (r"\xc3\xa9", "é"),  # raw bytes that form UTF-8
        (r"\303\251", "é"),  # octal bytes
        (r"\xff", "\ufffd"),  # invalid UTF-8 is replaced, not raised
        (r"bad\q", None),
        (r"trailing\\", "trailing\\"),
        ("trailing\\", None),
        (r"\u12", None),
        (r"\UFFFFFFFF", None),
        (r"\ud800", None),
        (r"\400", None),
        ('inner"quote', None),
    ],
)
def test_unquote_go(body: str, expected: str | None) -> None:
    assert unquote_go(body) == expected


def test_parse_key_values_skips_malformed_lines() -> None:
    text = 'good="1"\nno-quotes=2\n="empty key"\nunterminated="x\nbad="\\q"\n\n  spaced = "ok" \n'
    assert parse_key_values(text) == {"good": "1", "spaced": "ok"}


def test_namespace_file(tmp_path: Path) -> None:
    (tmp_path / "namespace").write_text("shop\n")
    assert namespace_from_file(str(tmp_path)) == "shop"
    assert namespace_from_file(str(tmp_path / "absent")) is None


def test_hostname_is_this_machines() -> None:
    import socket

    assert hostname() == socket.gethostname()
