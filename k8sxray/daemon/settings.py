"""The daemon's settings: the official daemon's flags and YAML keys, plus k8sxray's own.

Precedence: command-line flags, then the YAML file (``-c``, else ``/etc/amazon/xray/cfg.yaml`` or
``./cfg.yaml`` when present, as the official daemon does), then defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from k8sxray._protocol import DEFAULT_PORT
from k8sxray.daemon._goflags import boolean, normalize
from k8sxray.daemon._memory import MIB, MIN_BUFFER, cgroup_memory_limit, default_buffer_bytes
from k8sxray.daemon.sinks import SINK_NAMES

DEFAULT_CONFIG_PATHS = (Path("/etc/amazon/xray/cfg.yaml"), Path("cfg.yaml"))
LOG_LEVELS = {
    "dev": "DEBUG",
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "error": "ERROR",
    "prod": "INFO",
}

_YAML_KEYS: dict[str, Any] = {
    "TotalBufferSizeMB": None,
    "Concurrency": None,
    "Region": None,
    "Endpoint": None,
    "Socket": {"UDPAddress": None, "TCPAddress": None},
    "Logging": {"LogRotation": None, "LogLevel": None, "LogPath": None},
    "LocalMode": None,
    "ResourceARN": None,
    "RoleARN": None,
    "NoVerifySSL": None,
    "ProxyAddress": None,
    "Version": None,
}


class SettingsError(ValueError):
    """A flag or configuration file the daemon cannot use; the message says what to fix."""


@dataclass(frozen=True)
class Settings:
    """Everything the daemon needs to start."""

    udp: tuple[str, int] = ("127.0.0.1", DEFAULT_PORT)
    tcp: tuple[str, int] | None = ("127.0.0.1", DEFAULT_PORT)
    http: tuple[str, int] | None = ("127.0.0.1", 2020)
    buffer_bytes: int = 16 * MIB
    receive_buffer_bytes: int = 8 * MIB
    concurrency: int = 8
    region: str | None = None
    endpoint_url: str | None = None
    resource_arn: str | None = None
    role_arn: str | None = None
    proxy_address: str | None = None
    local_mode: bool = False
    verify_ssl: bool = True
    sink: str | None = None
    sampling_rules: str | None = None
    store_path: str | None = None
    retention: float = 24 * 3600.0
    store_max_bytes: int = 512 * MIB
    console_token: str | None = None
    log_level: str = "INFO"
    log_format: str = "text"
    log_file: str | None = None
    shutdown_timeout: float = 25.0
    request_timeout: float = 5.0
    flush_interval: float = 0.1
    telemetry: bool = True
    config_file: str | None = None
    otlp: tuple[str, int] | None = None
    otlp_endpoint: str | None = None
    otlp_sigv4: bool = False


def parse_address(text: str, what: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as a tuple; a clear error otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f"{what}: expected host:port, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _optional_address(text: str, what: str) -> tuple[str, int] | None:
    if text.strip().lower() in ("", "off", "none", "false"):
        return None
    return parse_address(text, what)


_VALUE, _BOOL, _ACTION = "value", "bool", "action"


@dataclass(frozen=True)
class _Flag:
    long: str
    short: str | None
    kind: str
    help: str
    metavar: str | None = None
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None


_FLAGS = (
    # The official daemon's flags, short and long as it spells them.
    _Flag("bind", "b", _VALUE, "UDP address for segments (default 127.0.0.1:2000)", "ADDR"),
    _Flag(
        "bind-tcp",
        "t",
        _VALUE,
        "TCP address for sampling calls (default 127.0.0.1:2000; 'off' disables)",
        "ADDR",
    ),
    _Flag(
        "buffer-memory",
        "m",
        _VALUE,
        "buffer size in MB (minimum 3; 0 or absent: a quarter of the container's memory limit, "
        "at most 64, or 16 without a limit)",
        "MB",
        int,
    ),
    _Flag("region", "n", _VALUE, "AWS region (default: AWS_REGION, then instance metadata)", "REGION"),
    _Flag("resource-arn", "a", _VALUE, "ARN of the AWS resource running the daemon", "ARN"),
    _Flag("role-arn", "r", _VALUE, "assume this IAM role to upload segments", "ARN"),
    _Flag("proxy-address", "p", _VALUE, "HTTPS proxy for calls to AWS", "URL"),
    _Flag("local-mode", "o", _BOOL, "do not read instance metadata"),
    _Flag("config", "c", _VALUE, "YAML file with the official daemon's keys", "FILE"),
    _Flag("log-level", "l", _VALUE, "log level (default prod = info)", choices=tuple(sorted(LOG_LEVELS))),
    _Flag("log-file", "f", _VALUE, "write logs to this file instead of stderr", "FILE"),
    _Flag("version", "v", _ACTION, "print the version and exit"),
    _Flag("help", "h", _ACTION, "show this help and exit"),
    # k8sxray's own.
    _Flag(
        "http", None, _VALUE, "health and metrics address (default 127.0.0.1:2020; 'off' disables)", "ADDR"
    ),
    _Flag("receive-buffer", None, _VALUE, "UDP socket receive buffer to ask for (default 8)", "MB", float),
    _Flag("concurrency", None, _VALUE, "concurrent calls to the sink (default 8)", "N", int),
    _Flag("endpoint-url", None, _VALUE, "X-Ray endpoint URL (default: the region's)", "URL"),
    _Flag(
        "sink",
        None,
        _VALUE,
        "where segments go: xray, local (kept here, with X-Ray's API and a viewer on --http), "
        "otlp (as OpenTelemetry spans, see --otlp-endpoint) or stdout (default: xray when AWS "
        "credentials and a region are found, else local)",
        choices=SINK_NAMES,
    ),
    _Flag(
        "store",
        None,
        _VALUE,
        "the local sink's SQLite file (default: $XDG_DATA_HOME/k8sxray/traces.db, "
        "else ~/.local/share/k8sxray/traces.db)",
        "FILE",
    ),
    _Flag(
        "retention", None, _VALUE, "how long the local sink keeps traces: 90m, 24h, 7d (default 24h)", "AGE"
    ),
    _Flag(
        "store-max-mb", None, _VALUE, "the local sink's file stays within this size (default 512)", "MB", int
    ),
    _Flag(
        "console-token",
        None,
        _VALUE,
        "token the console asks for (default: none on loopback; generated and logged when --http is not)",
        "TOKEN",
    ),
    _Flag(
        "sampling-rules",
        None,
        _VALUE,
        "sampling rules the daemon answers with when it does not forward to X-Ray (JSON: X-Ray's "
        "SamplingRule objects or the SDKs' local rules file; default: the Default rule, 1/s + 5%%)",
        "FILE",
    ),
    _Flag("log-format", None, _VALUE, "one line per event, text or JSON", choices=("text", "json")),
    _Flag(
        "shutdown-timeout",
        None,
        _VALUE,
        "time to ship what is buffered after SIGTERM (default 25, below Kubernetes' 30)",
        "SECONDS",
        float,
    ),
    _Flag(
        "request-timeout", None, _VALUE, "time to wait for one call to the sink (default 5)", "SECONDS", float
    ),
    _Flag(
        "flush-interval",
        None,
        _VALUE,
        "time a partial batch waits for more segments before it is sent (default 0.1)",
        "SECONDS",
        float,
    ),
    _Flag("no-telemetry", None, _BOOL, "do not send PutTelemetryRecords"),
    _Flag(
        "otlp",
        None,
        _VALUE,
        "also receive OpenTelemetry traces, OTLP/HTTP POST /v1/traces, on this address "
        "(e.g. 127.0.0.1:4318, 0.0.0.0:4318 in a DaemonSet; default off)",
        "ADDR",
    ),
    _Flag(
        "otlp-endpoint",
        None,
        _VALUE,
        "where --sink otlp sends spans (default: X-Ray's https://xray.<region>.amazonaws.com/v1/traces, "
        "signed; other endpoints unsigned unless --otlp-sigv4)",
        "URL",
    ),
    _Flag("otlp-sigv4", None, _BOOL, "sign requests to --otlp-endpoint with SigV4 for service xray"),
)


def daemon_version() -> str:
    """This daemon's version: the k8sxray package's, from its installed metadata."""
    try:
        return metadata.version("k8sxray")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m k8sxray.daemon",
        description="Receive X-Ray segments over UDP and ship them to AWS X-Ray (drop-in for the "
        "official X-Ray daemon). Every flag may be written with one dash or two, its value after a "
        "space or '=', as the official daemon accepts them.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
        add_help=False,
    )
    for flag in _FLAGS:
        names = ([f"-{flag.short}"] if flag.short else []) + [f"--{flag.long}"]
        if flag.long == "help":
            p.add_argument(*names, action="help", help=flag.help)
        elif flag.long == "version":
            p.add_argument(
                *names, action="version", version=f"k8sxray daemon {daemon_version()}", help=flag.help
            )
        elif flag.kind == _BOOL:
            p.add_argument(*names, nargs="?", const=True, type=boolean, metavar="true|false", help=flag.help)
        else:
            p.add_argument(
                *names, metavar=flag.metavar, type=flag.type or str, choices=flag.choices, help=flag.help
            )
    return p


def _go_style(argv: list[str]) -> list[str]:
    names: dict[str, str] = {}
    for flag in _FLAGS:
        names[flag.long] = flag.long
        if flag.short:
            names[flag.short] = flag.long
    return normalize(argv, names, {flag.long: flag.kind for flag in _FLAGS})


def load_yaml(path: Path) -> dict[str, Any]:
    """Read an official daemon configuration file; unknown keys are an error naming the key."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path}: expected a mapping at the top level")
    _check_keys(data, _YAML_KEYS, path, "")
    return data


def _check_keys(data: dict[str, Any], known: dict[str, Any], path: Path, prefix: str) -> None:
    for key, value in data.items():
        if key not in known:
            allowed = ", ".join(prefix + k for k in known)
            raise SettingsError(f"config file {path}: unknown key {prefix}{key!r} (known keys: {allowed})")
        if isinstance(known[key], dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise SettingsError(f"config file {path}: {prefix}{key} must be a mapping")
            _check_keys(value, known[key], path, f"{prefix}{key}.")


def _yaml_value(data: dict[str, Any], *keys: str) -> Any:
    node: Any = data
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return None if node == "" else node


def parse(
    argv: list[str] | None = None,
    environ: dict[str, str] | None = None,
    cgroup_root: Path = Path("/sys/fs/cgroup"),
) -> Settings:
    """Settings from the command line and configuration file. Raises SettingsError."""
    env = os.environ if environ is None else environ
    args = vars(_parser().parse_args(_go_style(sys.argv[1:] if argv is None else list(argv))))
    config_path = args.get("config")
    yaml_data: dict[str, Any] = {}
    if config_path is not None:
        yaml_data = load_yaml(Path(config_path))
    else:
        for candidate in DEFAULT_CONFIG_PATHS:
            if candidate.is_file():
                config_path = str(candidate)
                yaml_data = load_yaml(candidate)
                break

    def pick(flag: str, *yaml_keys: str) -> Any:
        if flag in args:
            return args[flag]
        return _yaml_value(yaml_data, *yaml_keys) if yaml_keys else None

    udp = parse_address(pick("bind", "Socket", "UDPAddress") or f"127.0.0.1:{DEFAULT_PORT}", "UDP address")
    tcp_text = pick("bind_tcp", "Socket", "TCPAddress")
    tcp = _optional_address(tcp_text if tcp_text is not None else f"127.0.0.1:{DEFAULT_PORT}", "TCP address")
    http_text = pick("http")
    http = _optional_address(http_text if http_text is not None else "127.0.0.1:2020", "--http")

    buffer_mb = pick("buffer_memory", "TotalBufferSizeMB")
    if buffer_mb is not None and _int(buffer_mb, "buffer memory (MB)") != 0:  # 0: the default, as in Go
        buffer_bytes = _int(buffer_mb, "buffer memory (MB)") * MIB
        if buffer_bytes < MIN_BUFFER:
            raise SettingsError(f"buffer memory must be at least {MIN_BUFFER // MIB} MB, got {buffer_mb}")
    else:
        buffer_bytes = default_buffer_bytes(cgroup_memory_limit(cgroup_root))

    concurrency_value = pick("concurrency", "Concurrency")
    concurrency = 8 if concurrency_value is None else _int(concurrency_value, "concurrency")
    if not 1 <= concurrency <= 256:
        raise SettingsError(f"concurrency must be between 1 and 256 concurrent calls, got {concurrency}")

    level_name = str(pick("log_level", "Logging", "LogLevel") or "prod").lower()
    if level_name not in LOG_LEVELS:
        raise SettingsError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level_name!r}")

    region = pick("region", "Region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    endpoint = pick("endpoint_url", "Endpoint") or env.get("AWS_ENDPOINT_URL_XRAY") or None
    positive = {
        "shutdown_timeout": 25.0,
        "request_timeout": 5.0,
        "flush_interval": 0.1,
        "receive_buffer": 8.0,
    }
    numbers = {}
    for name, default in positive.items():
        value = float(args.get(name, default))
        if value <= 0:
            raise SettingsError(f"--{name.replace('_', '-')} must be positive, got {value}")
        numbers[name] = value

    retention = _age(args.get("retention", "24h"))
    store_mb = _int(args.get("store_max_mb", 512), "--store-max-mb")
    if store_mb < 1:
        raise SettingsError(f"--store-max-mb must be at least 1, got {store_mb}")

    return Settings(
        udp=udp,
        tcp=tcp,
        http=http,
        buffer_bytes=buffer_bytes,
        receive_buffer_bytes=int(numbers["receive_buffer"] * MIB),
        concurrency=concurrency,
        region=str(region) if region else None,
        endpoint_url=str(endpoint) if endpoint else None,
        resource_arn=_str_or_none(pick("resource_arn", "ResourceARN")),
        role_arn=_str_or_none(pick("role_arn", "RoleARN")),
        proxy_address=_str_or_none(pick("proxy_address", "ProxyAddress")),
        local_mode=bool(pick("local_mode", "LocalMode")),
        sampling_rules=_str_or_none(args.get("sampling_rules")),
        store_path=_str_or_none(args.get("store")),
        retention=retention,
        store_max_bytes=store_mb * MIB,
        console_token=_str_or_none(args.get("console_token")),
        verify_ssl=not bool(_yaml_value(yaml_data, "NoVerifySSL")),
        sink=args.get("sink"),
        log_level=LOG_LEVELS[level_name],
        log_format=args.get("log_format", "text"),
        log_file=_str_or_none(pick("log_file", "Logging", "LogPath")),
        shutdown_timeout=numbers["shutdown_timeout"],
        request_timeout=numbers["request_timeout"],
        flush_interval=numbers["flush_interval"],
        telemetry=not args.get("no_telemetry", False),
        config_file=config_path,
        otlp=_optional_address(str(args.get("otlp", "off")), "--otlp"),
        otlp_endpoint=_url_or_none(args.get("otlp_endpoint"), "--otlp-endpoint"),
        otlp_sigv4=bool(args.get("otlp_sigv4", False)),
    )


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{what} must be a whole number, got {value!r}") from None


_AGE_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _age(text: Any) -> float:
    """``90m``, ``24h``, ``7d`` or plain seconds, as seconds; a clear error otherwise."""
    raw = str(text).strip().lower()
    number, unit = (raw[:-1], raw[-1]) if raw[-1:].isalpha() else (raw, "")
    try:
        value = float(number) * _AGE_UNITS[unit]
    except (ValueError, KeyError):
        raise SettingsError(f"--retention: expected an age such as 90m, 24h or 7d, got {text!r}") from None
    if not value > 0:
        raise SettingsError(f"--retention must be positive, got {text!r}")
    return value


def _url_or_none(value: Any, what: str) -> str | None:
    url = _str_or_none(value)
    if url is not None and not url.startswith(("http://", "https://")):
        raise SettingsError(f"{what} must be an http:// or https:// URL, got {url!r}")
    return url


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
