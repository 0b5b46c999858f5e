"""k8sxray's configuration: one frozen object, and where each of its values came from.

Each setting is taken, in this order, from an explicit ``configure()`` argument, an
environment variable, discovery (Kubernetes, DNS), or a default. :class:`Config`
remembers the winner in :attr:`Config.sources`. :func:`build` raises ``ValueError`` for
a bad value, naming the variable and the value. :func:`configure` raises it only for a bad
keyword argument (a bug in the calling code); a bad environment variable must never take the
service down, so it is logged as an error and tracing is off (the app runs untraced).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from . import _discovery, _env
from ._addresses import Address, parse_daemon_address
from ._naming import default_service_name
from .integrations import INTEGRATIONS
from .plugins import PLUGINS

log = logging.getLogger(__name__)

ContextMissing = Literal["RUNTIME_ERROR", "LOG_ERROR", "IGNORE_ERROR"]
CONTEXT_MISSING_VALUES: tuple[ContextMissing, ...] = ("RUNTIME_ERROR", "LOG_ERROR", "IGNORE_ERROR")

SourceKind = Literal["argument", "env", "discovery", "default"]

PROPAGATORS: Mapping[str, str] = {
    "xray": "X-Amzn-Trace-Id",
    "tracecontext": "W3C traceparent and tracestate",
}
"""The trace header formats k8sxray reads and sends (``K8SXRAY_PROPAGATORS``)."""
DEFAULT_PROPAGATORS = ("xray", "tracecontext")

_TRUE = _env.TRUE_WORDS
_FALSE = _env.FALSE_WORDS


class Source(NamedTuple):
    """Where a setting's value came from: its kind and a human-readable detail."""

    kind: SourceKind
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind


class SettingError(ValueError):
    """A setting's value is wrong; :attr:`source` says where it came from."""

    def __init__(self, message: str, source: Source) -> None:
        super().__init__(message)
        self.source = source


@dataclass(frozen=True)
class Config:
    """The resolved configuration. Build it with :func:`k8sxray.configure`."""

    service_name: str
    enabled: bool
    daemon_udp: Address
    daemon_tcp: Address
    sampling_rate: float | None
    """``None``: X-Ray's default rule (reservoir 1/s, then 5%)."""
    sampling_rules: str | None
    """Path of a local rules file, already validated."""
    sampling_central: bool
    plugins: tuple[str, ...]
    disabled_integrations: frozenset[str]
    context_missing: ContextMissing
    daemon_service: str
    udp_gso: bool = True
    """Send bursts of datagrams with UDP segmentation offload (Linux), padded with spaces."""
    native: bool = True
    """Serve unsampled WSGI requests in C (``k8sxray._native``) when it is built; read when
    an app is instrumented."""
    propagators: tuple[str, ...] = DEFAULT_PROPAGATORS
    """The trace headers read from incoming requests and sent on outgoing calls: ``xray``
    (``X-Amzn-Trace-Id``, which wins when a request carries both) and ``tracecontext`` (W3C)."""
    sources: Mapping[str, Source] = field(default_factory=dict, compare=False)
    daemon: _discovery.DaemonEndpoint | None = field(default=None, compare=False, repr=False)
    """Live, resolved daemon addresses (re-resolved in the background when found by DNS)."""
    problem: str | None = field(default=None, compare=False)
    """Why tracing is off although no setting turned it off: a bad environment variable (logged
    by :func:`configure`). ``instrument()`` then returns the app untouched."""

    def describe(self) -> dict[str, dict[str, Any]]:
        """Every setting with its value and source, as plain JSON-able data."""
        out: dict[str, dict[str, Any]] = {}
        for name in _SETTINGS:
            value: Any = getattr(self, name)
            if isinstance(value, Address):
                value = str(value)
            elif isinstance(value, (tuple, frozenset)):
                value = sorted(value) if isinstance(value, frozenset) else list(value)
            source = self.sources.get(name, Source("default", ""))
            out[name] = {"value": value, "source": source.kind, "detail": source.detail}
        return out


_SETTINGS = (
    "service_name",
    "enabled",
    "daemon_udp",
    "daemon_tcp",
    "sampling_rate",
    "sampling_rules",
    "sampling_central",
    "plugins",
    "disabled_integrations",
    "context_missing",
    "daemon_service",
    "udp_gso",
    "native",
    "propagators",
)

_lock = threading.Lock()
_current: Config | None = None
_listeners: list[Callable[[Config], None]] = []


def configure(
    *,
    service_name: str | None = None,
    enabled: bool | None = None,
    daemon_address: str | None = None,
    sampling_rate: float | None = None,
    sampling_rules: str | None = None,
    sampling_central: bool | None = None,
    plugins: Iterable[str] | None = None,
    disabled_integrations: Iterable[str] | None = None,
    context_missing: str | None = None,
    daemon_service: str | None = None,
    udp_gso: bool | None = None,
    native: bool | None = None,
    propagators: Iterable[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Resolve the configuration and make it current; calling it again reconfigures.

    Every keyword argument wins over its environment variable. ``environ`` replaces
    ``os.environ`` (for tests and ``python -m k8sxray config``).

    A bad keyword argument raises ``ValueError``. A bad environment variable never raises: it is
    logged as an error naming the variable and the value, and the configuration made current
    has tracing off (:attr:`Config.problem` says why).
    """
    global _current
    env = os.environ if environ is None else environ
    try:
        config = build(
            environ=env,
            service_name=service_name,
            enabled=enabled,
            daemon_address=daemon_address,
            sampling_rate=sampling_rate,
            sampling_rules=sampling_rules,
            sampling_central=sampling_central,
            plugins=plugins,
            disabled_integrations=disabled_integrations,
            context_missing=context_missing,
            daemon_service=daemon_service,
            udp_gso=udp_gso,
            native=native,
            propagators=propagators,
        )
    except SettingError as exc:
        if exc.source.kind == "argument":
            raise
        config = _off(exc)
    except ValueError as exc:  # discovery's own variables (K8SXRAY_NODE_IP, ...)
        config = _off(exc)
    with _lock:
        previous, _current = _current, config
        listeners = list(_listeners)
    if previous is not None and previous.daemon is not None and previous.daemon is not config.daemon:
        previous.daemon.close()
    if config.daemon is not None:
        config.daemon.start_refreshing()
    for listener in listeners:
        try:
            listener(config)
        except Exception:
            log.exception("k8sxray: a configuration listener failed")
    return config


def _off(exc: ValueError) -> Config:
    """A configuration with tracing off because of *exc*, a bad environment variable (logged)."""
    problem = str(exc)
    log.error("k8sxray: tracing is off: %s; the app runs untraced", problem)
    config = build(environ={}, enabled=False, plugins=(), sampling_central=False)
    sources = {**config.sources, "enabled": Source("env", f"off: {problem}")}
    return replace(config, sources=sources, problem=problem)


def current() -> Config:
    """The current configuration, configured from the environment on first use."""
    config = _current
    if config is None:
        with _lock:
            config = _current
        if config is None:
            config = configure()
    return config


def is_configured() -> bool:
    """Whether :func:`configure` has run (explicitly or on first use)."""
    return _current is not None


def on_change(listener: Callable[[Config], None]) -> None:
    """Call *listener* with every new configuration (emitter, sampler, ... re-read it)."""
    with _lock:
        if listener not in _listeners:
            _listeners.append(listener)


def reset() -> None:
    """Forget the current configuration and stop its background work (tests use this)."""
    global _current
    with _lock:
        previous, _current = _current, None
    if previous is not None and previous.daemon is not None:
        previous.daemon.close()


def build(
    *,
    environ: Mapping[str, str],
    service_name: str | None = None,
    enabled: bool | None = None,
    daemon_address: str | None = None,
    sampling_rate: float | None = None,
    sampling_rules: str | None = None,
    sampling_central: bool | None = None,
    plugins: Iterable[str] | None = None,
    disabled_integrations: Iterable[str] | None = None,
    context_missing: str | None = None,
    daemon_service: str | None = None,
    udp_gso: bool | None = None,
    native: bool | None = None,
    propagators: Iterable[str] | None = None,
    namespace_file: str = _discovery.NAMESPACE_FILE,
) -> Config:
    """Resolve a :class:`Config` without making it current (no side effects but DNS)."""
    sources: dict[str, Source] = {}
    pick = _Picker(environ, sources)

    on_k8s = bool(environ.get(_env.KUBERNETES_SERVICE_HOST))

    name = pick.text("service_name", service_name, _env.AWS_XRAY_TRACING_NAME)
    if name is None:
        name, detail, from_pod = default_service_name(environ)
        sources["service_name"] = Source("discovery" if from_pod else "default", detail)
    _check_service_name(name, sources["service_name"])

    is_enabled = pick.flag("enabled", enabled, _env.AWS_XRAY_SDK_ENABLED, default=True)

    rate = pick.rate("sampling_rate", sampling_rate, _env.K8SXRAY_SAMPLING_RATE)
    rules = pick.text("sampling_rules", sampling_rules, _env.K8SXRAY_SAMPLING_RULES)
    if rules is not None:
        _check_rules_file(rules, sources["sampling_rules"])
    else:
        sources["sampling_rules"] = Source("default", "X-Ray's default rule")
    central_default = rate is None and rules is None
    central = pick.flag(
        "sampling_central",
        sampling_central,
        _env.K8SXRAY_SAMPLING_CENTRAL,
        default=central_default,
        default_detail="on unless local sampling is set" if central_default else "off: local sampling is set",
    )

    plugin_names = pick.names("plugins", plugins, _env.K8SXRAY_PLUGINS, known=PLUGINS)
    if plugin_names is None:
        plugin_names = ("kubernetes",) if on_k8s else ()
        sources["plugins"] = Source(
            "discovery" if on_k8s else "default",
            f"{_env.KUBERNETES_SERVICE_HOST} is set" if on_k8s else "not on Kubernetes",
        )
    disabled = pick.names(
        "disabled_integrations", disabled_integrations, _env.K8SXRAY_DISABLED_INTEGRATIONS, known=INTEGRATIONS
    )

    missing = pick.text("context_missing", context_missing, _env.AWS_XRAY_CONTEXT_MISSING) or "LOG_ERROR"
    if missing not in CONTEXT_MISSING_VALUES:
        raise SettingError(
            f"{_named(sources['context_missing'], _env.AWS_XRAY_CONTEXT_MISSING, missing)} is not one of "
            + ", ".join(CONTEXT_MISSING_VALUES),
            sources["context_missing"],
        )

    gso = pick.flag("udp_gso", udp_gso, _env.K8SXRAY_UDP_GSO, default=True, default_detail="on (Linux)")
    built = importlib.util.find_spec(f"{__package__}._native") is not None
    use_native = pick.flag(
        "native",
        native,
        _env.K8SXRAY_NATIVE,
        default=True,
        default_detail="the C module is built" if built else "the C module is not built: Python serves all",
    )

    headers = _pick_propagators(pick, propagators)

    service = pick.text("daemon_service", daemon_service, _env.K8SXRAY_DAEMON_SERVICE) or "xray-service"
    _check_dns_label(service, sources["daemon_service"], _env.K8SXRAY_DAEMON_SERVICE)

    explicit = pick.text("daemon_udp", daemon_address, _env.AWS_XRAY_DAEMON_ADDRESS)
    if explicit is not None:
        if sources["daemon_udp"].kind == "argument":
            sources["daemon_udp"] = Source("argument", "configure(daemon_address=...)")
        source = sources["daemon_udp"]
        try:
            udp, tcp = parse_daemon_address(explicit)
        except ValueError as exc:
            raise SettingError(
                f"{_named(source, _env.AWS_XRAY_DAEMON_ADDRESS, explicit)}: {exc}", source
            ) from None
        sources["daemon_tcp"] = source
        endpoint = _discovery.DaemonEndpoint.fixed(
            udp, tcp, environ=environ, source_kind="argument" if source.kind == "argument" else "env"
        )
    else:
        endpoint = _discovery.discover(environ, service, namespace_file=namespace_file)
        udp, tcp = endpoint.udp, endpoint.tcp
        sources["daemon_udp"] = sources["daemon_tcp"] = Source(endpoint.source_kind, endpoint.reason)

    return Config(
        service_name=name,
        enabled=is_enabled,
        daemon_udp=udp,
        daemon_tcp=tcp,
        sampling_rate=rate,
        sampling_rules=rules,
        sampling_central=central,
        plugins=tuple(plugin_names),
        disabled_integrations=frozenset(disabled or ()),
        context_missing=missing,
        daemon_service=service,
        udp_gso=gso,
        native=use_native,
        propagators=headers,
        sources=sources,
        daemon=endpoint,
    )


def _pick_propagators(pick: _Picker, propagators: Iterable[str] | None) -> tuple[str, ...]:
    headers = pick.names("propagators", propagators, _env.K8SXRAY_PROPAGATORS, known=PROPAGATORS)
    source = pick.sources["propagators"]
    if headers is None:
        pick.sources["propagators"] = Source("default", "X-Amzn-Trace-Id and W3C traceparent")
        return DEFAULT_PROPAGATORS
    if not headers:
        given: object = pick.environ.get(_env.K8SXRAY_PROPAGATORS, "")
        if propagators is not None:
            given = propagators if isinstance(propagators, str) else list(propagators)
        raise SettingError(
            f"{_named(source, _env.K8SXRAY_PROPAGATORS, given)}: "
            f"name at least one of {', '.join(PROPAGATORS)}",
            source,
        )
    return headers


class _Picker:
    """Takes each setting from an argument, else its env var, recording the source."""

    def __init__(self, environ: Mapping[str, str], sources: dict[str, Source]) -> None:
        self.environ = environ
        self.sources = sources

    def _raw(self, name: str, arg: object, var: str) -> object | None:
        if arg is not None:
            self.sources[name] = Source("argument", f"configure({name}=...)")
            return arg
        value = self.environ.get(var)
        if value is not None and value.strip() != "":
            self.sources[name] = Source("env", var)
            return value.strip()
        return None

    def text(self, name: str, arg: str | None, var: str) -> str | None:
        value = self._raw(name, arg, var)
        if value is None:
            self.sources[name] = Source("default", "")
            return None
        if not isinstance(value, str):
            raise SettingError(f"configure({name}=...) must be a string, got {value!r}", self.sources[name])
        return value

    def flag(self, name: str, arg: bool | None, var: str, *, default: bool, default_detail: str = "") -> bool:
        value = self._raw(name, arg, var)
        if value is None:
            self.sources[name] = Source("default", default_detail)
            return default
        if isinstance(value, bool):
            return value
        lowered = str(value).lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        where = _named(self.sources[name], var, value)
        raise SettingError(f"{where} is not a boolean (true or false)", self.sources[name])

    def rate(self, name: str, arg: float | None, var: str) -> float | None:
        value = self._raw(name, arg, var)
        if value is None:
            self.sources[name] = Source("default", "reservoir 1/s, then 5%")
            return None
        where = _named(self.sources[name], var, value)
        try:
            rate = float(value)  # type: ignore[arg-type]  # str or number, checked below
        except (TypeError, ValueError):
            raise SettingError(f"{where} is not a number between 0 and 1", self.sources[name]) from None
        if not 0.0 <= rate <= 1.0:  # also rejects NaN
            raise SettingError(f"{where} is outside 0..1 (a fraction of requests)", self.sources[name])
        return rate

    def names(
        self, name: str, arg: Iterable[str] | None, var: str, *, known: Mapping[str, object]
    ) -> tuple[str, ...] | None:
        value = self._raw(name, arg, var)
        if value is None:
            self.sources[name] = Source("default", "")
            return None
        items = [v.strip().lower() for v in value.split(",")] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
        items = [item for item in items if item]
        if items == ["none"]:
            return ()
        unknown = [item for item in items if item not in known]
        if unknown:
            raise SettingError(
                f"{_named(self.sources[name], var, value)}: unknown name(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}",
                self.sources[name],
            )
        return tuple(dict.fromkeys(items))


def _label(source: Source, var: str) -> str:
    """How a message names a setting: its variable, or the ``configure()`` argument."""
    return source.detail if source.kind == "argument" else var


def _named(source: Source, var: str, value: object) -> str:
    """A setting with its value, as the user wrote it: ``VAR='x'`` or ``configure(name='x')``."""
    if source.kind == "argument":
        return source.detail.replace("...", repr(value))
    return f"{var}={value!r}"


_NAME_OK = frozenset("_.:/%&#=+\\-@ ")


def _check_service_name(name: str, source: Source) -> None:
    if not 1 <= len(name) <= 200 or not all(ch.isalnum() or ch in _NAME_OK for ch in name):
        raise SettingError(
            f"{_named(source, _env.AWS_XRAY_TRACING_NAME, name)} is not a valid X-Ray segment name "
            "(1 to 200 letters, digits, whitespace and _ . : / % & # = + \\ - @)",
            source,
        )


def _check_dns_label(value: str, source: Source, var: str) -> None:
    label_ok = value.isascii() and len(value) <= 63 and value and value[0].isalnum() and value[-1].isalnum()
    if not label_ok or not all(ch.isalnum() or ch == "-" for ch in value) or value != value.lower():
        raise SettingError(
            f"{_named(source, var, value)} is not a Kubernetes Service name (a DNS label)", source
        )


def _check_rules_file(path: str, source: Source) -> None:
    from .sampling.rules import load_rules_file

    try:
        load_rules_file(path)
    except ValueError as exc:
        where = _label(source, _env.K8SXRAY_SAMPLING_RULES)
        if path not in str(exc):
            where = _named(source, _env.K8SXRAY_SAMPLING_RULES, path)
        raise SettingError(f"{where}: {exc}", source) from None
