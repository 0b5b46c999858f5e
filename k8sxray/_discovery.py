"""Finding the X-Ray daemon, and keeping its address current.

Order when nothing is set explicitly (``AWS_XRAY_DAEMON_ADDRESS`` and ``configure()`` are
handled by the caller and handed to :meth:`DaemonEndpoint.fixed`):

1. on Kubernetes, the node-local daemon at the node's IP (Downward API ``status.hostIP``
   in ``K8SXRAY_NODE_IP`` or ``HOST_IP``), port 2000: a DaemonSet with ``hostPort``;
2. on Kubernetes, the Service ``<service>.<pod namespace>``, then ``<service>.default``,
   looked up with the system resolver (so the Pod's ``search`` domains apply), each lookup
   bounded by ``K8SXRAY_DISCOVERY_TIMEOUT``;
3. ``127.0.0.1:2000``.

Names are resolved once here, off the request path, and again every
``K8SXRAY_DISCOVERY_INTERVAL`` seconds in one background thread, so that a restarted daemon
Pod (a new IP behind the same name) is found again. Senders read
:attr:`DaemonEndpoint.udp_sockaddr` and never resolve anything themselves.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Literal

from . import _env, _forks, _guard
from ._addresses import Address
from ._protocol import DEFAULT_PORT

log = logging.getLogger(__name__)

SockAddr = tuple[str, int]
Resolver = Callable[[str, int, float], "SockAddr | Literal['timeout'] | None"]

DEFAULT_TIMEOUT = 0.5
DEFAULT_INTERVAL = 30.0
LOOPBACK = Address("127.0.0.1", DEFAULT_PORT)
NAMESPACE_FILE = f"{_env.SERVICE_ACCOUNT_DIR}/namespace"


def resolve(host: str, port: int, timeout: float) -> SockAddr | Literal["timeout"] | None:
    """Resolve *host* with the system resolver within *timeout* seconds.

    Returns the first address as a ``sendto``-ready tuple, ``None`` when the name does not
    exist, or ``"timeout"`` when the resolver did not answer in time (the lookup goes on in
    a daemon thread and its answer is dropped: ``getaddrinfo`` cannot be cancelled).
    """
    literal = _ip_literal(host)
    if literal is not None:
        return (literal, port)
    answer: list[SockAddr | None] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            answer.append((str(infos[0][4][0]), port) if infos else None)
        except (OSError, UnicodeError):
            answer.append(None)
        done.set()

    threading.Thread(target=lookup, name="k8sxray-dns", daemon=True).start()
    if not done.wait(timeout):
        return "timeout"
    return answer[0]


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class DaemonEndpoint:
    """The daemon's UDP and TCP addresses, as configured and as resolved.

    ``udp``/``tcp`` are what was configured or discovered (a host may be a DNS name);
    ``udp_sockaddr``/``tcp_sockaddr`` are resolved ``(ip, port)`` tuples, replaced
    atomically when a background re-resolution finds a new IP. ``source_kind`` and
    ``reason`` say which source won and why; ``tried`` lists what was tried before it.
    """

    def __init__(
        self,
        udp: Address,
        tcp: Address,
        *,
        source_kind: Literal["argument", "env", "discovery", "default"],
        reason: str,
        tried: tuple[str, ...] = (),
        names: tuple[str, ...] = (),
        interval: float = DEFAULT_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        resolver: Resolver = resolve,
    ) -> None:
        self.udp = udp
        self.tcp = tcp
        self.source_kind = source_kind
        self.reason = reason
        self.tried = tried
        self.udp_sockaddr: SockAddr = (udp.host, udp.port)
        self.tcp_sockaddr: SockAddr = (tcp.host, tcp.port)
        self.family = _family(udp.host)
        self._names = names  # DNS names re-resolved in the background, in order of preference
        self._interval = interval
        self._timeout = timeout
        self._resolver = resolver
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"DaemonEndpoint(udp={self.udp}, tcp={self.tcp}, udp_sockaddr={self.udp_sockaddr}, "
            f"source={self.source_kind!r}, reason={self.reason!r})"
        )

    @classmethod
    def fixed(
        cls,
        udp: Address,
        tcp: Address,
        *,
        environ: Mapping[str, str],
        source_kind: Literal["argument", "env"] = "env",
    ) -> DaemonEndpoint:
        """An explicitly set address; host names in it are resolved now and kept current."""
        timeout, interval = _timing(environ)
        names = tuple(dict.fromkeys(h for h in (udp.host, tcp.host) if _ip_literal(h) is None))
        reason = (
            "set by configure(daemon_address=...)"
            if source_kind == "argument"
            else f"set by {_env.AWS_XRAY_DAEMON_ADDRESS}"
        )
        endpoint = cls(
            udp, tcp, source_kind=source_kind, reason=reason, names=names, interval=interval, timeout=timeout
        )
        endpoint.refresh(initial=True)
        return endpoint

    def refused(self) -> None:
        """The daemon's UDP address refused a datagram: nobody listens there. Warns once per address.

        The emitter calls this when a send fails with ``ECONNREFUSED`` (the kernel's answer, on a
        connected socket, to an ICMP "port unreachable"): it costs nothing while sends succeed.
        """
        ip, port = self.udp_sockaddr[:2]
        resolved = "" if (ip, port) == (self.udp.host, self.udp.port) else f" ({ip}:{port})"
        origin = {"default": "the default: ", "discovery": "discovered: "}.get(self.source_kind, "")
        _guard.warn_once(
            f"daemon.refused {self.udp}",
            "k8sxray: no X-Ray daemon listens at %s%s (UDP), %s%s; segments sent there are lost. "
            "Run one there or set %s (`python -m k8sxray config` shows each setting and its source); "
            "logged once",
            self.udp,
            resolved,
            origin,
            self.reason,
            _env.AWS_XRAY_DAEMON_ADDRESS,
        )

    def refresh(self, *, initial: bool = False) -> bool:
        """Resolve the names again; return whether an address changed."""
        changed = False
        for address, attr in ((self.udp, "udp_sockaddr"), (self.tcp, "tcp_sockaddr")):
            if _ip_literal(address.host) is not None:
                literal = _ip_literal(address.host)
                assert literal is not None
                new: SockAddr = (literal, address.port)
            else:
                answer = self._resolver(address.host, address.port, self._timeout)
                if not isinstance(answer, tuple):
                    if initial:
                        log.warning(
                            "k8sxray: cannot resolve the daemon address %s (%s); segments go to %s "
                            "until it resolves",
                            address,
                            "timed out" if answer == "timeout" else "no such name",
                            LOOPBACK,
                        )
                        new = (LOOPBACK.host, address.port)
                    else:
                        continue
                else:
                    new = answer
            if getattr(self, attr) != new:
                if not initial:
                    log.info("k8sxray: daemon address %s now resolves to %s:%s", address, *new)
                setattr(self, attr, new)
                changed = True
        self.family = _family(self.udp_sockaddr[0])
        return changed

    def start_refreshing(self) -> None:
        """Re-resolve DNS names every interval in one daemon thread (idempotent, fork-aware)."""
        if not self._names or self._interval <= 0:
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="k8sxray-discovery", daemon=True)
            self._thread.start()
        _forks.track(self)

    def close(self) -> None:
        """Stop re-resolving (idempotent)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.refresh()
            except Exception:  # never let the refresher die on a resolver surprise
                log.debug("k8sxray: daemon re-resolution failed", exc_info=True)

    def _after_fork_in_child(self) -> None:
        # Threads do not survive fork(): start this endpoint's refresher again in the child.
        self._thread = None
        self._lock = threading.Lock()
        if not self._stop.is_set():
            self.start_refreshing()


def discover(
    environ: Mapping[str, str],
    service: str = "xray-service",
    *,
    namespace_file: str = NAMESPACE_FILE,
    resolver: Resolver = resolve,
) -> DaemonEndpoint:
    """Find the daemon when no address is set explicitly (see the module docstring)."""
    timeout, interval = _timing(environ)
    if not environ.get(_env.KUBERNETES_SERVICE_HOST):
        return DaemonEndpoint(
            LOOPBACK,
            LOOPBACK,
            source_kind="default",
            reason=f"not on Kubernetes ({_env.KUBERNETES_SERVICE_HOST} is not set)",
        )

    for var in (_env.K8SXRAY_NODE_IP, _env.HOST_IP):
        node_ip = environ.get(var, "").strip()
        if node_ip:
            literal = _ip_literal(node_ip)
            if literal is None:
                raise ValueError(f"{var}={node_ip!r} is not an IP address (expected status.hostIP)")
            address = Address(literal, DEFAULT_PORT)
            return DaemonEndpoint(
                address,
                address,
                source_kind="discovery",
                reason=f"node-local daemon (DaemonSet hostPort) at the node IP from {var}",
            )

    namespace, ns_source = pod_namespace(environ, namespace_file)
    names = [f"{service}.{namespace}"] if namespace else []
    if namespace != "default":
        names.append(f"{service}.default")
    tried: list[str] = []
    if not namespace:
        tried.append(f"Pod namespace unknown (no {_env.POD_NAMESPACE}, no {namespace_file})")
    for name in names:
        answer = resolver(name, DEFAULT_PORT, timeout)
        if isinstance(answer, tuple):
            where = f"the Pod's namespace from {ns_source}" if name.endswith(f".{namespace}") else "default"
            endpoint = DaemonEndpoint(
                Address(name, DEFAULT_PORT),
                Address(name, DEFAULT_PORT),
                source_kind="discovery",
                reason=f"Service {name} (in {where}) resolved to {answer[0]}",
                tried=tuple(tried),
                names=(name,),
                interval=interval,
                timeout=timeout,
                resolver=resolver,
            )
            endpoint.udp_sockaddr = endpoint.tcp_sockaddr = answer
            endpoint.family = _family(answer[0])
            return endpoint
        outcome = f"timed out after {timeout:g}s" if answer == "timeout" else "not found"
        tried.append(f"{name}: {outcome}")
    # Nothing found: use loopback, but keep looking for the Service in the background.
    return _Fallback(
        LOOPBACK,
        LOOPBACK,
        source_kind="default",
        reason="no daemon found on Kubernetes; tried " + "; ".join(tried),
        tried=tuple(tried),
        names=tuple(names),
        interval=interval,
        timeout=timeout,
        resolver=resolver,
    )


class _Fallback(DaemonEndpoint):
    """Loopback until one of the Service names appears, then that name's address."""

    def refresh(self, *, initial: bool = False) -> bool:
        for name in self._names:
            answer = self._resolver(name, DEFAULT_PORT, self._timeout)
            if isinstance(answer, tuple):
                if answer != self.udp_sockaddr:
                    log.info("k8sxray: daemon Service %s appeared at %s", name, answer[0])
                    self.udp_sockaddr = self.tcp_sockaddr = answer
                    self.family = _family(answer[0])
                    self.reason = f"Service {name} resolved to {answer[0]} (found after start-up)"
                    self.source_kind = "discovery"
                    return True
                return False
        return False


def pod_namespace(environ: Mapping[str, str], namespace_file: str = NAMESPACE_FILE) -> tuple[str, str]:
    """The Pod's namespace and where it came from (``POD_NAMESPACE``, then the SA file)."""
    namespace = environ.get(_env.POD_NAMESPACE, "").strip()
    if namespace:
        return namespace, _env.POD_NAMESPACE
    try:
        with open(namespace_file, encoding="utf-8") as f:
            namespace = f.read(256).strip()
    except OSError:
        return "", ""
    return namespace, namespace_file


def _timing(environ: Mapping[str, str]) -> tuple[float, float]:
    values = []
    for var, default in (
        (_env.K8SXRAY_DISCOVERY_TIMEOUT, DEFAULT_TIMEOUT),
        (_env.K8SXRAY_DISCOVERY_INTERVAL, DEFAULT_INTERVAL),
    ):
        text = environ.get(var, "").strip()
        if not text:
            values.append(default)
            continue
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{var}={text!r} is not a number of seconds") from None
        if not 0 <= value <= 3600:
            raise ValueError(f"{var}={text!r} is outside 0..3600 seconds")
        values.append(value)
    if values[0] == 0:
        raise ValueError(f"{_env.K8SXRAY_DISCOVERY_TIMEOUT}=0: a lookup needs some time (try 0.5)")
    return values[0], values[1]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
