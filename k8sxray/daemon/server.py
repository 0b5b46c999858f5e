"""The daemon program: wires settings, receiver, buffer, shipper, sink and the side services.

Shutdown on SIGTERM or SIGINT: stop receiving (after draining what the kernel already holds), ship
what is buffered within ``--shutdown-timeout``, report what could not be shipped, exit 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from k8sxray.daemon import _aws, _logging
from k8sxray.daemon.buffer import Buffer
from k8sxray.daemon.receiver import Receiver, bind_udp
from k8sxray.daemon.settings import Settings, SettingsError, parse
from k8sxray.daemon.shipper import Shipper
from k8sxray.daemon.sinks import Sink
from k8sxray.daemon.sinks.stdout import StdoutSink
from k8sxray.daemon.stats import Stats

log = logging.getLogger(__name__)


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
        self.stats.buffer_docs = lambda: len(self.buffer)
        self.session: Any = None
        self.region: str | None = None
        self.sink: Sink | None = None
        self.receiver: Receiver | None = None
        self.shipper: Shipper | None = None
        self._services: list[tuple[str, Any]] = []
        self._ready = False
        self._stopping = threading.Event()

    def ready(self) -> bool:
        return self._ready and not self._stopping.is_set()

    def start(self) -> None:
        s = self.settings
        self.sink = self._make_sink()
        sock = bind_udp(s.udp, s.receive_buffer_bytes)
        self.receiver = Receiver(sock, self.buffer, self.stats)
        self.shipper = Shipper(
            self.buffer, self.sink, self.stats, concurrency=s.concurrency, flush_interval=s.flush_interval
        )
        self.shipper.start()
        self.receiver.start()
        self._start_services()
        self._ready = True
        host, port = self.receiver.address
        log.info(
            "receiving segments on udp %s:%d; buffer %d MB; sink %s; %d senders",
            host,
            port,
            s.buffer_bytes // (1024 * 1024),
            self.sink.name,
            s.concurrency,
        )

    def _make_sink(self) -> Sink:
        s = self.settings
        name = s.sink
        if name == "stdout":
            return StdoutSink()
        self.session = _aws.make_session(s.role_arn, s.region)
        credentials = self.session.get_credentials()
        if name is None and credentials is None:
            log.warning(
                "no AWS credentials found: writing segments to stdout (pass --sink xray to "
                "insist on X-Ray, --sink stdout to silence this)"
            )
            return StdoutSink()
        if credentials is None:
            log.error("no AWS credentials found yet; segments are buffered and retried until they appear")
        region = s.region or (None if s.local_mode else _aws.metadata_region(self.session))
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
        )

    def _start_services(self) -> None:
        """The sampling proxy, telemetry and the ops endpoint; each optional and isolated."""
        s = self.settings
        if s.http is not None:
            http = s.http
            self._try_start("ops endpoint", lambda: _ops(http, self.ready, self.stats.render_prometheus))
        if self.sink is None or self.sink.name != "xray":
            if s.tcp is not None:
                log.info("sampling proxy off: it needs the xray sink (AWS credentials and a region)")
            return
        if s.tcp is not None:
            tcp = s.tcp
            self._try_start("sampling proxy", lambda: _proxy(tcp, self.session, self.region, s))
        if s.telemetry:
            self._try_start("telemetry", lambda: _telemetry(self.stats, self.session, self.region, s))

    def _try_start(self, what: str, factory: Callable[[], Any]) -> None:
        try:
            service = factory()
            service.start()
        except ImportError as exc:
            log.warning("%s unavailable in this build: %s", what, exc)
            return
        except OSError as exc:
            raise StartupError(f"cannot start the {what}: {exc}") from exc
        self._services.append((what, service))

    def stop(self) -> int:
        """Stop receiving, ship what is buffered within the grace period; returns documents left."""
        if self._stopping.is_set():
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
            buffered = len(self.buffer)
            log.info(
                "shutting down: shipping %d buffered segments (up to %.0f s)",
                buffered,
                self.settings.shutdown_timeout,
            )
            unshipped = self.shipper.drain(self.settings.shutdown_timeout)
        for what, service in self._services:
            if what in last:
                _close(what, service)
        if self.sink is not None:
            self.sink.close()
        st = self.stats
        summary = (
            f"received {st.received}, sent {st.sent}, rejected {sum(st.rejected.values())}, "
            f"dropped {sum(st.dropped.values())}, "
            f"refused by the sink {sum(st.backend_rejected.values())}"
        )
        if st.dropped:
            summary += f" (dropped by reason: {dict(st.dropped)})"
        if unshipped:
            log.warning(
                "stopped after %.1f s: %d segments could not be shipped; %s",
                time.monotonic() - started,
                unshipped,
                summary,
            )
        else:
            log.info(
                "stopped after %.1f s: everything buffered was shipped; %s",
                time.monotonic() - started,
                summary,
            )
        return unshipped

    def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, stop; returns the exit code (0)."""
        stop = threading.Event()

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
        return 0


def _close(what: str, service: Any) -> None:
    try:
        service.close()
    except Exception:
        log.exception("error while closing the %s", what)


def _ops(bind: tuple[str, int], ready: Callable[[], bool], metrics: Callable[[], str]) -> Any:
    from k8sxray.daemon.ops import OpsServer

    return OpsServer(bind, ready, metrics)


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
        daemon.stop()
        return exc.code
    except OSError as exc:
        log.error("cannot start: %s", exc)
        daemon.stop()
        return 1
