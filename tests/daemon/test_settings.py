"""Flags, the official daemon's YAML, and the buffer default from the cgroup limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from k8sxray.daemon._memory import MIB, cgroup_memory_limit, default_buffer_bytes
from k8sxray.daemon.settings import SettingsError, parse, parse_address

NO_CGROUP = Path("/nonexistent-cgroup")


def test_defaults_match_the_official_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no ./cfg.yaml
    s = parse([], environ={}, cgroup_root=NO_CGROUP)
    assert s.udp == ("127.0.0.1", 2000)
    assert s.tcp == ("127.0.0.1", 2000)
    assert s.http == ("127.0.0.1", 2020)
    assert s.concurrency == 8
    assert s.buffer_bytes == 16 * MIB
    assert s.region is None
    assert s.log_level == "INFO"
    assert s.shutdown_timeout < 30


def test_official_yaml_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "Version: 2\nTotalBufferSizeMB: 24\nConcurrency: 3\nRegion: eu-west-1\n"
        "Endpoint: https://xray.example\nSocket:\n  UDPAddress: 0.0.0.0:2001\n  TCPAddress: 0.0.0.0:2002\n"
        "Logging:\n  LogRotation: true\n  LogLevel: warn\n  LogPath: ''\nLocalMode: true\n"
        "ResourceARN: arn:aws:eks:eu-west-1:1:cluster/x\nRoleARN: arn:aws:iam::1:role/r\n"
        "NoVerifySSL: true\nProxyAddress: http://proxy:3128\n"
    )
    s = parse(["-c", str(cfg)], environ={"AWS_REGION": "us-east-2"}, cgroup_root=NO_CGROUP)
    assert s.buffer_bytes == 24 * MIB
    assert s.concurrency == 3
    assert s.region == "eu-west-1"  # the file wins over the environment
    assert s.endpoint_url == "https://xray.example"
    assert s.udp == ("0.0.0.0", 2001)
    assert s.tcp == ("0.0.0.0", 2002)
    assert s.log_level == "WARNING"
    assert s.log_file is None
    assert s.local_mode
    assert s.resource_arn == "arn:aws:eks:eu-west-1:1:cluster/x"
    assert s.role_arn == "arn:aws:iam::1:role/r"
    assert not s.verify_ssl
    assert s.proxy_address == "http://proxy:3128"


def test_flags_win_over_yaml(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("Region: eu-west-1\nSocket:\n  UDPAddress: 0.0.0.0:2001\nTotalBufferSizeMB: 24\n")
    s = parse(
        ["-c", str(cfg), "-n", "ap-south-1", "-b", "127.0.0.1:3000", "-m", "5"],
        environ={},
        cgroup_root=NO_CGROUP,
    )
    assert (s.region, s.udp, s.buffer_bytes) == ("ap-south-1", ("127.0.0.1", 3000), 5 * MIB)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Regoin: us-east-1\n", "unknown key 'Regoin'"),
        ("Socket:\n  UDPAdress: 0.0.0.0:2000\n", "unknown key Socket.'UDPAdress'"),
        ("- a\n- b\n", "expected a mapping"),
        ("Region: [unclosed\n", "not valid YAML"),
        ("TotalBufferSizeMB: 2\n", "at least 3 MB"),
        ("Concurrency: many\n", "whole number"),
        ("Logging:\n  LogLevel: loud\n", "log level must be one of"),
    ],
)
def test_bad_yaml_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(text)
    with pytest.raises(SettingsError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse(["-c", str(cfg)], environ={}, cgroup_root=NO_CGROUP)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read config file"):
        parse(["-c", str(tmp_path / "nope.yaml")], environ={}, cgroup_root=NO_CGROUP)


def test_cfg_yaml_in_the_working_directory_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text("Concurrency: 5\n")
    monkeypatch.chdir(tmp_path)
    s = parse([], environ={}, cgroup_root=NO_CGROUP)
    assert s.concurrency == 5
    assert s.config_file == "cfg.yaml"


def test_region_from_environment() -> None:
    assert parse([], environ={"AWS_DEFAULT_REGION": "us-west-1"}, cgroup_root=NO_CGROUP).region == "us-west-1"
    env = {"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-west-1"}
    assert parse([], environ=env, cgroup_root=NO_CGROUP).region == "us-west-2"


def test_addresses() -> None:
    assert parse_address("0.0.0.0:2000", "x") == ("0.0.0.0", 2000)
    assert parse_address("[::1]:2000", "x") == ("::1", 2000)
    assert parse_address(":2000", "x") == ("0.0.0.0", 2000)
    for bad in ("2000", "host:", "host:99999", "host:port"):
        with pytest.raises(SettingsError, match="expected host:port"):
            parse_address(bad, "x")
    s = parse(["-t", "off", "--http", "none"], environ={}, cgroup_root=NO_CGROUP)
    assert s.tcp is None
    assert s.http is None


def test_buffer_default_follows_the_cgroup_limit(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("67108864\n")  # 64 MiB Pod
    assert cgroup_memory_limit(v2) == 64 * MIB
    assert parse([], environ={}, cgroup_root=v2).buffer_bytes == 16 * MIB
    (v2 / "memory.max").write_text("max\n")
    assert cgroup_memory_limit(v2) is None
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1 "unlimited"
    assert cgroup_memory_limit(v1) is None
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(8 * MIB))
    assert parse([], environ={}, cgroup_root=v1).buffer_bytes == 3 * MIB  # never below the minimum
    assert default_buffer_bytes(4096 * MIB) == 64 * MIB  # capped however large the Pod


def test_log_levels_by_official_names() -> None:
    levels = {
        name: parse(["-l", name], environ={}, cgroup_root=NO_CGROUP).log_level
        for name in ("dev", "debug", "info", "warn", "error", "prod")
    }
    assert levels == {
        "dev": "DEBUG",
        "debug": "DEBUG",
        "info": "INFO",
        "warn": "WARNING",
        "error": "ERROR",
        "prod": "INFO",
    }


def test_non_positive_timeouts_are_refused() -> None:
    with pytest.raises(SettingsError, match="--shutdown-timeout must be positive"):
        parse(["--shutdown-timeout", "0"], environ={}, cgroup_root=NO_CGROUP)
