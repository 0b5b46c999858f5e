"""Every source of every setting, and every malformed value."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from k8sxray import _config
from k8sxray._addresses import Address, parse_daemon_address
from k8sxray._config import Source, build

K8S = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}


def no_dns(host: str, port: int, timeout: float) -> None:
    raise AssertionError(f"unexpected DNS lookup of {host}")


# --- daemon address format ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "udp", "tcp"),
    [
        ("127.0.0.1:2000", ("127.0.0.1", 2000), ("127.0.0.1", 2000)),
        ("xray.local:3000", ("xray.local", 3000), ("xray.local", 3000)),
        ("tcp:10.0.0.1:2001 udp:10.0.0.2:2002", ("10.0.0.2", 2002), ("10.0.0.1", 2001)),
        ("udp:10.0.0.2:2002 tcp:10.0.0.1:2001", ("10.0.0.2", 2002), ("10.0.0.1", 2001)),
        ("  10.0.0.1:2000  ", ("10.0.0.1", 2000), ("10.0.0.1", 2000)),
        ("[::1]:2000", ("::1", 2000), ("::1", 2000)),
    ],
)
def test_daemon_address_formats(text: str, udp: tuple[str, int], tcp: tuple[str, int]) -> None:
    assert parse_daemon_address(text) == (Address(*udp), Address(*tcp))


@pytest.mark.parametrize(
    "text",
    [
        "127.0.0.1",
        "127.0.0.1:",
        ":2000",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:http",
        "tcp:127.0.0.1:2000",
        "udp:127.0.0.1:2000 udp:127.0.0.1:2001",
        "tcp:127.0.0.1:2000 udp:127.0.0.1:2000 tcp:127.0.0.1:2000",
        "ftp:127.0.0.1:2000 udp:127.0.0.1:2000",
        "::1:2000",
        "[::1:2000",
        "a b",
    ],
)
def test_malformed_daemon_address_names_the_variable_and_value(text: str) -> None:
    with pytest.raises(ValueError, match="AWS_XRAY_DAEMON_ADDRESS") as info:
        build(environ={"AWS_XRAY_DAEMON_ADDRESS": text})
    assert repr(text.strip()) in str(info.value)


def test_daemon_address_argument_wins_over_env() -> None:
    config = build(environ={"AWS_XRAY_DAEMON_ADDRESS": "10.0.0.1:2000"}, daemon_address="127.0.0.1:4000")
    assert config.daemon_udp == Address("127.0.0.1", 4000)
    assert config.sources["daemon_udp"] == Source("argument", "configure(daemon_address=...)")
    assert config.daemon is not None
    assert config.daemon.udp_sockaddr == ("127.0.0.1", 4000)


def test_daemon_address_from_env_wins_over_discovery() -> None:
    env = {**K8S, "HOST_IP": "10.0.0.9", "AWS_XRAY_DAEMON_ADDRESS": "tcp:10.0.0.1:2001 udp:10.0.0.2:2002"}
    config = build(environ=env)
    assert config.daemon_udp == Address("10.0.0.2", 2002)
    assert config.daemon_tcp == Address("10.0.0.1", 2001)
    assert config.sources["daemon_udp"] == Source("env", "AWS_XRAY_DAEMON_ADDRESS")
    assert config.daemon is not None
    assert config.daemon.tcp_sockaddr == ("10.0.0.1", 2001)


def test_bad_argument_address_names_the_argument() -> None:
    with pytest.raises(ValueError, match=r"configure\(daemon_address"):
        build(environ={}, daemon_address="nowhere")


# --- discovery without DNS (the DNS paths are in test_discovery_dns.py) ------------------


def test_not_on_kubernetes_uses_loopback() -> None:
    config = build(environ={})
    assert config.daemon_udp == Address("127.0.0.1", 2000)
    assert config.sources["daemon_udp"].kind == "default"
    assert "not on Kubernetes" in config.sources["daemon_udp"].detail


@pytest.mark.parametrize("var", ["K8SXRAY_NODE_IP", "HOST_IP"])
def test_node_ip_from_the_downward_api(var: str) -> None:
    config = build(environ={**K8S, var: "10.0.1.23"})
    assert config.daemon_udp == config.daemon_tcp == Address("10.0.1.23", 2000)
    assert config.sources["daemon_udp"].kind == "discovery"
    assert var in config.sources["daemon_udp"].detail


def test_k8sxray_node_ip_wins_over_host_ip() -> None:
    config = build(environ={**K8S, "K8SXRAY_NODE_IP": "10.0.1.1", "HOST_IP": "10.0.1.2"})
    assert config.daemon_udp.host == "10.0.1.1"


def test_node_ip_is_ignored_off_kubernetes() -> None:
    assert build(environ={"HOST_IP": "10.0.1.2"}).daemon_udp.host == "127.0.0.1"


def test_malformed_node_ip() -> None:
    with pytest.raises(ValueError, match=r"HOST_IP='node-1' is not an IP address"):
        build(environ={**K8S, "HOST_IP": "node-1"})


def test_namespace_from_the_service_account_file(tmp_path: Path) -> None:
    from k8sxray import _discovery

    ns = tmp_path / "namespace"
    ns.write_text("payments\n")
    seen: list[str] = []

    def resolver(host: str, port: int, timeout: float) -> tuple[str, int] | None:
        seen.append(host)
        return ("10.1.1.1", port) if host == "xray-service.payments" else None

    endpoint = _discovery.discover(K8S, namespace_file=str(ns), resolver=resolver)
    assert seen == ["xray-service.payments"]
    assert endpoint.udp_sockaddr == ("10.1.1.1", 2000)
    assert str(ns) in endpoint.reason


def test_unknown_namespace_tries_default_only(tmp_path: Path) -> None:
    from k8sxray import _discovery

    seen: list[str] = []

    def resolver(host: str, port: int, timeout: float) -> None:
        seen.append(host)

    endpoint = _discovery.discover(K8S, namespace_file=str(tmp_path / "missing"), resolver=resolver)
    assert seen == ["xray-service.default"]
    assert endpoint.udp_sockaddr == ("127.0.0.1", 2000)
    assert "Pod namespace unknown" in endpoint.reason


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("K8SXRAY_DISCOVERY_TIMEOUT", "soon"),
        ("K8SXRAY_DISCOVERY_TIMEOUT", "0"),
        ("K8SXRAY_DISCOVERY_TIMEOUT", "-1"),
        ("K8SXRAY_DISCOVERY_INTERVAL", "9999"),
    ],
)
def test_malformed_discovery_timing(var: str, value: str) -> None:
    with pytest.raises(ValueError, match=var):
        build(environ={var: value})


# --- service name ---------------------------------------------------------------------------


def test_service_name_sources() -> None:
    assert build(environ={}, service_name="checkout").sources["service_name"].kind == "argument"
    config = build(environ={"AWS_XRAY_TRACING_NAME": "cart"})
    assert config.service_name == "cart"
    assert config.sources["service_name"] == Source("env", "AWS_XRAY_TRACING_NAME")


@pytest.mark.parametrize(
    ("pod", "workload"),
    [
        ("checkout-7d9f8b6c5-x2k4p", "checkout"),
        ("payment-api-5c6b7d8f9d-x7b2k", "payment-api"),
        ("xray-daemon-q8zkd", "xray-daemon"),
        ("web-0", "web"),
        ("my-service", "my-service"),
        ("standalone", "standalone"),
    ],
)
def test_service_name_from_the_pods_workload(pod: str, workload: str) -> None:
    config = build(environ={**K8S, "POD_NAME": pod})
    assert config.service_name == workload
    assert config.sources["service_name"].kind == "discovery"


@pytest.mark.parametrize("name", ["", "x" * 201, "bad\nname", "semi;colon", "emoji☃", "<script>"])
def test_invalid_service_name(name: str) -> None:
    with pytest.raises(ValueError, match=r"service_name"):
        build(environ={}, service_name=name)


def test_valid_service_name_with_allowed_punctuation() -> None:
    name = "svc_a.b:c/d%e&f#g=h+i\\j-k@l m"
    assert build(environ={"AWS_XRAY_TRACING_NAME": name}).service_name == name


# --- flags, sampling, names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("TRUE", True), ("1", True), ("false", False), ("0", False)]
)
def test_enabled_from_env(text: str, value: bool) -> None:
    assert build(environ={"AWS_XRAY_SDK_ENABLED": text}).enabled is value


def test_enabled_default_and_argument() -> None:
    assert build(environ={}).enabled is True
    config = build(environ={"AWS_XRAY_SDK_ENABLED": "true"}, enabled=False)
    assert config.enabled is False
    assert config.sources["enabled"].kind == "argument"


def test_malformed_enabled() -> None:
    with pytest.raises(ValueError, match=r"AWS_XRAY_SDK_ENABLED='maybe' is not a boolean"):
        build(environ={"AWS_XRAY_SDK_ENABLED": "maybe"})


@pytest.mark.parametrize(("text", "rate"), [("0", 0.0), ("0.25", 0.25), ("1", 1.0), (" 1.0 ", 1.0)])
def test_sampling_rate(text: str, rate: float) -> None:
    config = build(environ={"K8SXRAY_SAMPLING_RATE": text})
    assert config.sampling_rate == rate
    assert config.sampling_central is False  # an explicit local rate is not overridden centrally


@pytest.mark.parametrize("text", ["2", "-0.1", "1.01", "nan", "half", "inf"])
def test_malformed_sampling_rate(text: str) -> None:
    with pytest.raises(ValueError, match="K8SXRAY_SAMPLING_RATE") as info:
        build(environ={"K8SXRAY_SAMPLING_RATE": text})
    assert repr(text) in str(info.value)


def test_sampling_rate_argument() -> None:
    with pytest.raises(ValueError, match="sampling_rate"):
        build(environ={}, sampling_rate=2)
    assert build(environ={"K8SXRAY_SAMPLING_RATE": "0.5"}, sampling_rate=1).sampling_rate == 1.0


def test_sampling_defaults_to_xray_default_and_central_rules() -> None:
    config = build(environ={})
    assert config.sampling_rate is None
    assert config.sampling_rules is None
    assert config.sampling_central is True


def test_sampling_central_can_be_forced() -> None:
    env = {"K8SXRAY_SAMPLING_RATE": "0.1", "K8SXRAY_SAMPLING_CENTRAL": "true"}
    assert build(environ=env).sampling_central is True
    assert build(environ={"K8SXRAY_SAMPLING_CENTRAL": "off"}).sampling_central is False


def test_sampling_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(
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
                    }
                ],
                "default": {"fixed_target": 1, "rate": 0.05},
            }
        )
    )
    config = build(environ={"K8SXRAY_SAMPLING_RULES": str(rules)})
    assert config.sampling_rules == str(rules)
    assert config.sampling_central is False


@pytest.mark.parametrize("content", [None, "{not json", '{"version": 2, "rules": []}'])
def test_malformed_sampling_rules_file(tmp_path: Path, content: str | None) -> None:
    rules = tmp_path / "rules.json"
    if content is not None:
        rules.write_text(content)
    with pytest.raises(ValueError, match="K8SXRAY_SAMPLING_RULES") as info:
        build(environ={"K8SXRAY_SAMPLING_RULES": str(rules)})
    assert str(rules) in str(info.value)


def test_plugins() -> None:
    assert build(environ={}).plugins == ()
    on_k8s = build(environ=K8S)
    assert on_k8s.plugins == ("kubernetes",)
    assert on_k8s.sources["plugins"].kind == "discovery"
    assert build(environ={**K8S, "K8SXRAY_PLUGINS": "none"}).plugins == ()
    assert build(environ={"K8SXRAY_PLUGINS": " Kubernetes , kubernetes"}).plugins == ("kubernetes",)
    assert build(environ={}, plugins=["kubernetes"]).sources["plugins"].kind == "argument"


def test_unknown_plugin() -> None:
    with pytest.raises(ValueError, match=r"K8SXRAY_PLUGINS='kubernetes,ec3'.*unknown name\(s\) ec3"):
        build(environ={"K8SXRAY_PLUGINS": "kubernetes,ec3"})


def test_disabled_integrations() -> None:
    config = build(environ={"K8SXRAY_DISABLED_INTEGRATIONS": "requests, httpx"})
    assert config.disabled_integrations == frozenset({"requests", "httpx"})
    assert build(environ={}).disabled_integrations == frozenset()
    with pytest.raises(ValueError, match=r"K8SXRAY_DISABLED_INTEGRATIONS='urllib9'.*known: botocore"):
        build(environ={"K8SXRAY_DISABLED_INTEGRATIONS": "urllib9"})


def test_propagators() -> None:
    default = build(environ={})
    assert default.propagators == ("xray", "tracecontext")
    assert default.sources["propagators"].kind == "default"
    assert build(environ={"K8SXRAY_PROPAGATORS": "xray"}).propagators == ("xray",)
    assert build(environ={"K8SXRAY_PROPAGATORS": " TraceContext "}).propagators == ("tracecontext",)
    both = build(environ={"K8SXRAY_PROPAGATORS": "tracecontext,xray,xray"})
    assert both.propagators == ("tracecontext", "xray")
    assert both.sources["propagators"] == Source("env", "K8SXRAY_PROPAGATORS")
    chosen = build(environ={"K8SXRAY_PROPAGATORS": "xray"}, propagators=["tracecontext"])
    assert chosen.propagators == ("tracecontext",)
    assert chosen.sources["propagators"].kind == "argument"
    assert build(environ={}).describe()["propagators"]["value"] == ["xray", "tracecontext"]


def test_unknown_or_no_propagators() -> None:
    with pytest.raises(
        ValueError, match=r"K8SXRAY_PROPAGATORS='xray,b3'.*unknown name\(s\) b3.*known: tracecontext, xray"
    ):
        build(environ={"K8SXRAY_PROPAGATORS": "xray,b3"})
    with pytest.raises(
        ValueError, match=r"K8SXRAY_PROPAGATORS='none': name at least one of xray, tracecontext"
    ):
        build(environ={"K8SXRAY_PROPAGATORS": "none"})
    with pytest.raises(ValueError, match=r"configure\(propagators=\['w3c'\]\)"):
        _config.configure(propagators=["w3c"], environ={})


@pytest.mark.parametrize("value", ["RUNTIME_ERROR", "LOG_ERROR", "IGNORE_ERROR"])
def test_context_missing(value: str) -> None:
    assert build(environ={"AWS_XRAY_CONTEXT_MISSING": value}).context_missing == value


def test_context_missing_default_and_malformed() -> None:
    assert build(environ={}).context_missing == "LOG_ERROR"
    with pytest.raises(ValueError, match=r"AWS_XRAY_CONTEXT_MISSING='PANIC' is not one of RUNTIME_ERROR"):
        build(environ={"AWS_XRAY_CONTEXT_MISSING": "PANIC"})


@pytest.mark.parametrize("name", ["Xray", "-xray", "xray_service", "x" * 64, "xray.service"])
def test_malformed_daemon_service(name: str) -> None:
    with pytest.raises(ValueError, match="K8SXRAY_DAEMON_SERVICE"):
        build(environ={"K8SXRAY_DAEMON_SERVICE": name})


def test_empty_values_count_as_unset() -> None:
    config = build(environ={"AWS_XRAY_TRACING_NAME": "  ", "K8SXRAY_SAMPLING_RATE": ""})
    assert config.sources["service_name"].kind == "default"
    assert config.sampling_rate is None


# --- the configure() entry point ----------------------------------------------------------


def test_configure_makes_current_and_reconfigures() -> None:
    assert not _config.is_configured()
    seen: list[str] = []
    _config.on_change(lambda c: seen.append(c.service_name))
    first = _config.configure(service_name="one", environ={})
    assert _config.current() is first
    second = _config.configure(service_name="two", environ={})
    assert _config.current() is second
    assert seen[-2:] == ["one", "two"]


def test_current_configures_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_XRAY_TRACING_NAME", "from-env")
    assert _config.current().service_name == "from-env"
    assert _config.is_configured()


def test_a_bad_argument_raises_and_leaves_the_previous_configuration_in_place() -> None:
    good = _config.configure(service_name="good", environ={})
    with pytest.raises(ValueError, match=r"configure\(sampling_rate=7\)"):
        _config.configure(sampling_rate=7, environ={})
    with pytest.raises(ValueError, match=r"configure\(service_name=...\) must be a string, got \[\]"):
        _config.configure(service_name=[], environ={})  # type: ignore[arg-type]
    assert _config.current() is good


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("K8SXRAY_SAMPLING_RATE", "abc"),
        ("AWS_XRAY_DAEMON_ADDRESS", "udp:only"),
        ("AWS_XRAY_TRACING_NAME", "bad~name"),
        ("K8SXRAY_PLUGINS", "ec3"),
        ("K8SXRAY_DISCOVERY_TIMEOUT", "soon"),
        ("K8SXRAY_PROPAGATORS", "xray,b3"),
        ("K8SXRAY_PROPAGATORS", "none"),
    ],
)
def test_a_bad_environment_variable_turns_tracing_off_and_says_why(
    name: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    _config.configure(service_name="good", environ={})
    with caplog.at_level(logging.ERROR, logger="k8sxray"):
        config = _config.configure(environ={name: value, "KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert _config.current() is config
    assert config.enabled is False
    assert config.problem is not None
    assert f"{name}={value!r}" in config.problem
    assert config.sources["enabled"] == Source("env", f"off: {config.problem}")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert f"{name}={value!r}" in record.getMessage()
    assert "tracing is off" in record.getMessage()
    assert config.daemon is not None
    assert config.daemon.source_kind == "default"  # nothing was looked up for a configuration that is off


def test_config_is_frozen_and_describes_its_sources() -> None:
    config = build(environ={"AWS_XRAY_TRACING_NAME": "cart", "K8SXRAY_PLUGINS": "kubernetes"})
    with pytest.raises(AttributeError):
        config.service_name = "x"  # type: ignore[misc]
    described = config.describe()
    assert described["service_name"] == {"value": "cart", "source": "env", "detail": "AWS_XRAY_TRACING_NAME"}
    assert described["plugins"]["value"] == ["kubernetes"]
    assert described["daemon_udp"]["value"] == "127.0.0.1:2000"
    assert json.loads(json.dumps(described)) == described
    assert "service_name='cart'" in repr(config)


def test_the_discovery_refresher_runs_again_in_a_forked_child() -> None:
    import os
    import warnings

    from k8sxray._discovery import DaemonEndpoint

    address = Address("localhost", 2000)
    endpoint = DaemonEndpoint.fixed(address, address, environ={"K8SXRAY_DISCOVERY_INTERVAL": "60"})
    endpoint.start_refreshing()
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, on purpose
        pid = os.fork()
    if pid == 0:  # the child: the parent's thread is gone; ours must have been started again
        thread = endpoint._thread
        os.write(write_end, b"1" if thread is not None and thread.is_alive() else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    try:
        assert os.read(read_end, 1) == b"1"
    finally:
        endpoint.close()
        os.close(read_end)
        os.close(write_end)
