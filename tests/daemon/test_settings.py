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


# Every flag of AWS's Go daemon, each way Go's flag package accepts it: (argv, Settings field, value).
_GO_VALUES = [
    (
        "a",
        "resource-arn",
        "arn:aws:eks:us-east-1:1:cluster/c",
        "resource_arn",
        "arn:aws:eks:us-east-1:1:cluster/c",
    ),
    ("m", "buffer-memory", "8", "buffer_bytes", 8 * MIB),
    ("n", "region", "us-east-1", "region", "us-east-1"),
    ("b", "bind", "0.0.0.0:2001", "udp", ("0.0.0.0", 2001)),
    ("t", "bind-tcp", "0.0.0.0:2002", "tcp", ("0.0.0.0", 2002)),
    ("r", "role-arn", "arn:aws:iam::1:role/r", "role_arn", "arn:aws:iam::1:role/r"),
    ("f", "log-file", "/tmp/xray.log", "log_file", "/tmp/xray.log"),
    ("l", "log-level", "warn", "log_level", "WARNING"),
    ("p", "proxy-address", "http://proxy:3128", "proxy_address", "http://proxy:3128"),
]


def _spellings(short: str, long: str, value: str) -> list[list[str]]:
    out = []
    for name in (short, long):
        for dashes in ("-", "--"):
            out += [[f"{dashes}{name}", value], [f"{dashes}{name}={value}"]]
    return out


@pytest.mark.parametrize(
    ("argv", "field", "expected"),
    [
        pytest.param(argv, field, expected, id=" ".join(argv))
        for short, long, value, field, expected in _GO_VALUES
        for argv in _spellings(short, long, value)
    ],
)
def test_every_go_daemon_spelling_of_a_value_flag(argv: list[str], field: str, expected: object) -> None:
    assert getattr(parse(argv, environ={}, cgroup_root=NO_CGROUP), field) == expected


def test_every_go_daemon_spelling_of_the_config_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("Region: eu-north-1\n")
    for argv in _spellings("c", "config", str(cfg)):
        s = parse(argv, environ={}, cgroup_root=NO_CGROUP)
        assert (s.config_file, s.region) == (str(cfg), "eu-north-1"), argv


@pytest.mark.parametrize("name", ["-o", "--o", "-local-mode", "--local-mode"])
def test_every_go_daemon_spelling_of_local_mode(name: str, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("LocalMode: true\n")

    def local_mode(*argv: str) -> bool:
        return parse(list(argv), environ={}, cgroup_root=NO_CGROUP).local_mode

    assert local_mode(name)
    assert not local_mode()
    for true in ("1", "t", "T", "TRUE", "true", "True"):
        assert local_mode(f"{name}={true}")
    for false in ("0", "f", "F", "FALSE", "false", "False"):
        assert not local_mode(f"{name}={false}", "-c", str(cfg))  # an explicit false wins over the file
    assert local_mode(name, "-n", "us-east-1")  # a bare boolean does not take the next argument
    with pytest.raises(SystemExit):
        parse([f"{name}=maybe"], environ={}, cgroup_root=NO_CGROUP)


def test_k8sxray_flags_take_one_dash_too() -> None:
    s = parse(
        ["-sink", "stdout", "-http=off", "-concurrency", "3", "-no-telemetry", "-shutdown-timeout=9"],
        environ={},
        cgroup_root=NO_CGROUP,
    )
    assert (s.sink, s.http, s.concurrency, s.telemetry, s.shutdown_timeout) == ("stdout", None, 3, False, 9.0)
    assert parse(["--no-telemetry=false"], environ={}, cgroup_root=NO_CGROUP).telemetry


def test_a_value_that_starts_with_a_dash_stays_a_value() -> None:
    assert parse(["-a", "-odd"], environ={}, cgroup_root=NO_CGROUP).resource_arn == "-odd"


def test_unknown_and_abbreviated_flags_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["-regio", "x"], ["--reg", "x"], ["-region"], ["-x"]):
        with pytest.raises(SystemExit) as exc:
            parse(argv, environ={}, cgroup_root=NO_CGROUP)
        assert exc.value.code == 2
    assert "expected one argument" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "257"])
def test_concurrency_out_of_range_is_an_error(value: str, tmp_path: Path) -> None:
    with pytest.raises(
        SettingsError, match=f"concurrency must be between 1 and 256 concurrent calls, got {value}"
    ):
        parse(["--concurrency", value], environ={}, cgroup_root=NO_CGROUP)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"Concurrency: {value}\n")
    with pytest.raises(SettingsError, match="concurrency must be between"):
        parse(["-c", str(cfg)], environ={}, cgroup_root=NO_CGROUP)


def test_buffer_memory_zero_means_the_default_as_in_go() -> None:
    assert parse(["-m", "0"], environ={}, cgroup_root=NO_CGROUP).buffer_bytes == 16 * MIB
    with pytest.raises(SettingsError, match="at least 3 MB"):
        parse(["-m", "-1"], environ={}, cgroup_root=NO_CGROUP)
