"""The daemon program: wires settings, receiver, buffer, shipper, sink and the side services.

Shutdown on SIGTERM or SIGINT: stop receiving (after draining what the kernel already holds), ship
what is buffered within ``--shutdown-timeout``, report what could not be shipped, exit 0. A sink that
can take nothing more (stdout's reader went away) stops the daemon the same way, with exit code 1.
A port that cannot be bound is an error naming it (exit code 1) and nothing else is reported.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from k8sxray.daemon import _logging
from k8sxray.daemon.buffer import Buffer
from k8sxray.daemon.receiver import Receiver, bind_udp
from k8sxray.daemon.settings import Settings, SettingsError, parse
from k8sxray.daemon.shipper import Shipper
from k8sxray.daemon.sinks import Sink
from k8sxray.daemon.sinks.stdout import StdoutSink
from k8sxray.daemon.stats import Stats

log = logging.getLogger(__name__)

_T = TypeVar("_T")


_CONSOLE_TOKEN = "K8SXRAY_CONSOLE_TOKEN"
"""The token of the console an ``--endpoint-url`` may point at (named in k8sxray._env, which the
daemon does not import: it loads nothing of the library but the wire format)."""


class StartupError(RuntimeError):
    """The daemon cannot start; the message says why. ``code`` is the exit code (2: settings)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Daemon:
    """One running daemon. ``start()``, then ``stop()`` (or ``run()`` until a signal)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = Stats()
        self.buffer = Buffer(settings.buffer_bytes)
        self.stats.buffer_bytes = lambda: self.buffer.held_bytes
        self.stats.buffer_docs = lambda: self.buffer.held_documents
        self.session: Any = None
        self._sampling: Any = None
        self.console: Any = None
        """The local console's web face (``--sink local``), mounted on the ops endpoint."""
        self.region: str | None = None
        self.sink: Sink | None = None
        self.receiver: Receiver | None = None
        self.shipper: Shipper | None = None
        self.failure: str | None = None
        """Why the daemon stops on its own (its sink can take nothing more); None while all is well."""
        self._services: list[tuple[str, Any]] = []
        self._ready = False
        self._stopping = threading.Event()
        self._stop_requested = threading.Event()

    def ready(self) -> bool:
        return self._ready and not self._stopping.is_set() and self.failure is None

    def start(self) -> None:
        """Binds every port, then starts receiving and shipping. Raises StartupError (nothing is left
        running after it: call ``abort()``)."""
        s = self.settings
        self.sink = sink = self._make_sink()
        self.buffer.batch_size = getattr(sink, "batch_size", self.buffer.batch_size)
        self._start_services(sink)
        self._start_otlp_receiver()
        self._announce_console()
        sock = _listen("udp", s.udp, lambda: bind_udp(s.udp, s.receive_buffer_bytes))
        self.receiver = Receiver(sock, self.buffer, self.stats, check_json=sink.check_documents)
        self.shipper = Shipper(
            self.buffer,
            sink,
            self.stats,
            concurrency=s.concurrency,
            flush_interval=s.flush_interval,
            on_closed=self._sink_closed,
        )
        self.shipper.start()
        self.receiver.start()
        self._ready = True
        host, port = self.receiver.address
        log.info(
            "receiving segments on udp %s:%d; buffer %d MB; sink %s; %d senders",
            host,
            port,
            s.buffer_bytes // (1024 * 1024),
            sink.name,
            s.concurrency,
        )

    def _make_sink(self) -> Sink:
        s = self.settings
        name = s.sink
        if name == "stdout":
            return StdoutSink()
        if name == "local":
            return self._local_sink()
        if name == "otlp":
            return self._otlp_sink()
        self.session = _aws().make_session(s.role_arn, s.region)
        credentials = self.session.get_credentials()
        if name is None and credentials is None:
            log.warning("no AWS credentials found: running locally (pass --sink xray to insist on X-Ray)")
            return self._local_sink()
        if credentials is None:
            log.error("no AWS credentials found yet; segments are buffered and retried until they appear")
        region = s.region or (None if s.local_mode else _aws().metadata_region(self.session))
        if not region and name is None:
            log.warning("no AWS region found: running locally (pass --region or set AWS_REGION for X-Ray)")
            return self._local_sink()
        if not region:
            raise StartupError("no AWS region: pass -n/--region or set AWS_REGION", code=2)
        self.region = region
        from k8sxray.daemon.sinks.xray import XRaySink, endpoint_for

        endpoint = s.endpoint_url or endpoint_for(region)
        session = self.session

        def current_credentials() -> Any:
            return session.get_credentials()

        log.info("shipping to %s (region %s)", endpoint, region)
        return XRaySink(
            current_credentials,
            region,
            endpoint,
            proxy=s.proxy_address,
            verify_ssl=s.verify_ssl,
            timeout=s.request_timeout,
            connections=s.concurrency,
            # shipping to another k8sxray daemon's console (the local overlay): its token, never to AWS
            console_token=os.environ.get(_CONSOLE_TOKEN) if s.endpoint_url else None,
        )

    def _otlp_sink(self) -> Sink:
        """``--sink otlp``: X-Ray's OTLP endpoint, signed; another endpoint, unsigned unless asked."""
        from k8sxray.daemon.sinks.otlp import OtlpSink, default_endpoint

        s = self.settings
        _require_otlp("--sink otlp")
        signed = s.otlp_endpoint is None or s.otlp_sigv4
        credentials: Callable[[], Any] | None = None
        region: str | None = None
        if signed:
            session = self.session = _aws().make_session(s.role_arn, s.region)
            if session.get_credentials() is None:
                log.error("no AWS credentials found yet; spans are buffered and retried until they appear")
            region = s.region or (None if s.local_mode else _aws().metadata_region(session))
            if not region:
                raise StartupError(
                    "no AWS region to sign OTLP requests: pass -n/--region or set AWS_REGION "
                    "(or --otlp-endpoint for an unsigned collector)",
                    code=2,
                )
            self.region = region

            def current_credentials() -> Any:
                return session.get_credentials()

            credentials = current_credentials
        endpoint = s.otlp_endpoint or default_endpoint(region or "")
        try:
            sink = OtlpSink(
                endpoint,
                credentials=credentials,
                region=region,
                proxy=s.proxy_address,
                verify_ssl=s.verify_ssl,
                timeout=s.request_timeout,
                connections=s.concurrency,
            )
        except ValueError as exc:
            raise StartupError(str(exc), code=2) from None
        how = f"SigV4-signed for xray in {region}" if signed else "unsigned; sampling answered here"
        log.info("shipping spans over OTLP to %s (%s)", endpoint, how)
        return sink

    def _start_otlp_receiver(self) -> None:
        bind = self.settings.otlp
        if bind is not None:
            _require_otlp("--otlp")
            self._try_start(
                "OTLP receiver", "http", bind, lambda: _otlp_receiver(bind, self.buffer, self.stats)
            )

    def _local_sink(self) -> Sink:
        """The console's store as the sink, and its web face for the ops endpoint."""
        from k8sxray.console.app import Console, Web, default_store_path, open_store
        from k8sxray.daemon.sinks.local import LocalSink

        s = self.settings
        path = Path(s.store_path) if s.store_path else default_store_path()
        try:
            store = open_store(
                path, retention=s.retention, max_bytes=s.store_max_bytes, workers=_packing_workers()
            )
        except (OSError, sqlite3.Error) as exc:
            raise StartupError(f"cannot open the local store {path}: {exc}") from exc
        store.start()
        token = s.console_token
        if s.http is not None and token is None and not _loopback(s.http[0]):
            token = secrets.token_urlsafe(18)
        self.console = Web(Console(store), token=token, sampling=self._local_sampling().answer)
        log.info(
            "running locally: keeping traces in %s (for %s, up to %d MB)",
            path,
            _age(s.retention),
            s.store_max_bytes // (1024 * 1024),
        )
        if s.http is None:
            log.info("the console is off (--http off); python -m k8sxray traces needs it")
        return LocalSink(store)

    def _announce_console(self) -> None:
        ops = next((service for what, service in self._services if what == "ops endpoint"), None)
        if self.console is None or ops is None:
            return
        host, port = ops.address
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else (f"[{host}]" if ":" in host else host)
        token = self.console.token
        log.info(
            "console: http://%s:%d/%s (X-Ray's API at the same address)",
            shown,
            port,
            f"?token={token}" if token else "",
        )

    def _start_services(self, sink: Sink) -> None:
        """The ops endpoint, the sampling port (forwarding to X-Ray, or answering from local rules as
        the sink asks) and telemetry (only with X-Ray behind the sink)."""
        s = self.settings
        if s.http is not None:
            http = s.http
            self._try_start(
                "ops endpoint",
                "http",
                http,
                lambda: _ops(http, self.ready, self.stats.render_prometheus, self.console),
            )
        if sink.local_sampling:
            if s.tcp is not None:
                tcp, sampling = s.tcp, self._local_sampling()
                self._try_start("sampling port", "tcp", tcp, lambda: _local_sampling_server(tcp, sampling))
            return
        if s.sampling_rules:
            log.warning(
                "--sampling-rules %s is not used: the %s sink forwards sampling calls to X-Ray",
                s.sampling_rules,
                sink.name,
            )
        if s.tcp is not None:
            tcp = s.tcp
            self._try_start("sampling proxy", "tcp", tcp, lambda: _proxy(tcp, self.session, self.region, s))
        if s.telemetry:
            self._try_start(
                "telemetry", None, None, lambda: _telemetry(self.stats, self.session, self.region, s)
            )

    def _local_sampling(self) -> Any:
        """The local sampling rules and quotas, one instance for the TCP port and the console."""
        if self._sampling is not None:
            return self._sampling
        from k8sxray.daemon.local_sampling import LocalSampling, RulesError, load_rules

        path = self.settings.sampling_rules
        try:
            self._sampling = LocalSampling(load_rules(path) if path else None)
        except RulesError as exc:
            raise StartupError(str(exc), code=2) from None
        return self._sampling

    def _try_start(
        self, what: str, scheme: str | None, bind: tuple[str, int] | None, factory: Callable[[], Any]
    ) -> None:
        try:
            service = factory()
            if bind is not None and scheme is not None:
                _listen(scheme, bind, service.start, what)
            else:
                service.start()
        except ImportError as exc:
            log.warning("%s unavailable in this build: %s", what, exc)
            return
        except OSError as exc:
            raise StartupError(f"cannot start the {what}: {exc}") from exc
        self._services.append((what, service))

    def _sink_closed(self, reason: str) -> None:
        """Called by the shipper, once, when the sink can take nothing more: the daemon stops."""
        self.failure = reason
        log.error(
            "%s: the %s sink can take no more segments; stopping", reason, self.sink.name if self.sink else ""
        )
        self._stop_requested.set()

    def abort(self) -> None:
        """After a failed start: close whatever was started, without a shutdown report."""
        self._stopping.set()
        if self.receiver is not None:
            self.receiver.stop()
        for what, service in reversed(self._services):
            _close(what, service)
        self._services.clear()
        if self.shipper is not None:
            self.shipper.drain(0.0)
        if self.sink is not None:
            self.sink.close()

    def stop(self) -> int:
        """Stop receiving, ship what is held within the grace period; returns documents left."""
        if self._stopping.is_set():
            return 0
        if not self._ready:
            self.abort()
            return 0
        self._stopping.set()
        started = time.monotonic()
        if self.receiver is not None:
            self.receiver.stop()
        last = ("telemetry", "ops endpoint")  # telemetry reports the drain; /metrics stays readable
        for what, service in reversed(self._services):
            if what not in last:
                _close(what, service)
        unshipped = 0
        if self.shipper is not None:
            if self.failure is None:
                log.info(
                    "shutting down: shipping %d segments (buffered or waiting for a retry; up to %.0f s)",
                    self.buffer.held_documents,
                    self.settings.shutdown_timeout,
                )
            unshipped = self.shipper.drain(self.settings.shutdown_timeout)
        for what, service in self._services:
            if what in last:
                _close(what, service)
        if self.sink is not None:
            self.sink.close()
        self._report(unshipped, time.monotonic() - started)
        return unshipped

    def _report(self, unshipped: int, elapsed: float) -> None:
        st = self.stats
        otlp = f" (and {st.otlp_documents} from OTLP)" if st.otlp_documents else ""
        summary = (
            f"received {st.received}{otlp}, sent {st.sent}, rejected {sum(st.rejected.values())}, "
            f"dropped {sum(st.dropped.values())}, "
            f"refused by the sink {sum(st.backend_rejected.values())}"
        )
        if st.dropped:
            summary += f" (dropped by reason: {dict(st.dropped)})"
        if self.failure is not None:
            log.error(
                "stopped after %.1f s (%s): %d segments could not be shipped; %s",
                elapsed,
                self.failure,
                unshipped,
                summary,
            )
        elif unshipped:
            log.warning(
                "stopped after %.1f s: %d segments could not be shipped; %s", elapsed, unshipped, summary
            )
        else:
            log.info("stopped after %.1f s: everything buffered was shipped; %s", elapsed, summary)

    def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT (or until the sink fails), stop; returns the exit code:
        0, or 1 when the sink failed."""
        stop = self._stop_requested

        def on_signal(signum: int, _frame: object) -> None:
            name = signal.Signals(signum).name
            if stop.is_set():
                log.warning("received %s again: exiting without shipping what is left", name)
                os._exit(1)
            log.info("received %s", name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while not stop.wait(1.0):
            pass
        self.stop()
        return 0 if self.failure is None else 1


def _listen(scheme: str, bind: tuple[str, int], open_: Callable[[], _T], what: str = "") -> _T:
    """``open_()``, with an OSError turned into a StartupError naming the address."""
    try:
        return open_()
    except OSError as exc:
        host, port = bind
        shown = f"[{host}]" if ":" in host else host
        role = f" ({what})" if what else ""
        reason = exc.strerror or str(exc)
        raise StartupError(f"cannot listen on {scheme} {shown}:{port}{role}: {reason}") from exc


def _close(what: str, service: Any) -> None:
    try:
        service.close()
    except Exception:
        log.exception("error while closing the %s", what)


def _ops(bind: tuple[str, int], ready: Callable[[], bool], metrics: Callable[[], str], console: Any) -> Any:
    from k8sxray.daemon.ops import OpsServer

    return OpsServer(bind, ready, metrics, app=console.handle if console is not None else None)


def _aws() -> Any:
    """botocore, imported only when the daemon talks to AWS (a local console never does: ~15 MB)."""
    from k8sxray.daemon import _aws as aws

    return aws


def _packing_workers() -> int:
    """Worker processes for the local store's packing: one per core, up to two (none on one core)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(2, cores) if cores > 1 else 0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _require_otlp(what: str) -> None:
    from k8sxray.otlp.codec import require

    try:
        require()
    except ImportError as exc:
        raise StartupError(f"{what}: {exc}", code=2) from None


def _otlp_receiver(bind: tuple[str, int], buffer: Buffer, stats: Stats) -> Any:
    from k8sxray.daemon.otlp_receiver import OtlpReceiver

    return OtlpReceiver(bind, buffer, stats)


def _local_sampling_server(bind: tuple[str, int], sampling: Any) -> Any:
    from k8sxray.daemon.proxy import LocalSamplingServer

    return LocalSamplingServer(bind, sampling)


def _proxy(bind: tuple[str, int], session: Any, region: str | None, s: Settings) -> Any:
    from k8sxray.daemon.proxy import SamplingProxy

    return SamplingProxy(bind, session, region or "", s.endpoint_url, s.proxy_address)


def _telemetry(stats: Stats, session: Any, region: str | None, s: Settings) -> Any:
    from k8sxray.daemon.telemetry import TelemetryCounts, TelemetryReporter

    def snapshot() -> Any:
        return TelemetryCounts(**stats.telemetry_delta())

    return TelemetryReporter(
        snapshot, session, region or "", s.endpoint_url, s.resource_arn, proxy_address=s.proxy_address
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m k8sxray.daemon``: 0 after a clean shutdown, 2 for bad settings, 1 if it cannot start."""
    try:
        settings = parse(argv)
    except SettingsError as exc:
        print(f"k8sxray daemon: {exc}", file=sys.stderr)
        return 2
    _logging.setup(settings.log_level, settings.log_format, settings.log_file)
    if settings.config_file:
        log.info("read configuration from %s", settings.config_file)
    sys.setswitchinterval(0.001)  # hand the GIL to the receiving thread promptly
    daemon = Daemon(settings)
    try:
        return daemon.run()
    except StartupError as exc:
        log.error("%s", exc)
        daemon.abort()
        return exc.code
