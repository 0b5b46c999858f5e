"""Shipping: sender threads take batches from the buffer and hand them to the sink.

Failed calls (throttling, 5xx, timeouts, refused connections) and retryable unprocessed documents
are sent again after an exponential backoff with full jitter, for as long as it takes: their bytes
stay charged to the buffer, so a long outage fills the buffer and *new* segments are dropped (and
counted) instead of memory growing. Documents the sink refuses for good are counted by error code.
A sink that can take nothing more (``SendResult.closed``) stops the shipping: its batch and everything
still buffered are dropped as ``sink_closed``, and ``on_closed`` tells the daemon, which stops.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from k8sxray.daemon.buffer import DOC_OVERHEAD, Buffer
from k8sxray.daemon.sinks import SendResult, Sink
from k8sxray.daemon.stats import Stats

log = logging.getLogger(__name__)


class Backoff:
    """Delays before retry ``n`` (1, 2, ...): uniform in [0, min(cap, base * 2**n)] ("full jitter")."""

    def __init__(self, base: float = 0.05, cap: float = 5.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        return self._rng.uniform(0.0, min(self.cap, self.base * (2 ** min(attempt, 30))))


class Shipper:
    """``concurrency`` sender threads moving batches from ``buffer`` to ``sink``."""

    def __init__(
        self,
        buffer: Buffer,
        sink: Sink,
        stats: Stats,
        *,
        concurrency: int = 8,
        flush_interval: float = 0.1,
        backoff: Backoff | None = None,
        log_interval: float = 60.0,
        on_closed: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.buffer = buffer
        self.sink = sink
        self.stats = stats
        self.concurrency = concurrency
        self.flush_interval = flush_interval
        self.backoff = backoff or Backoff()
        self.log_interval = log_interval
        self.on_closed = on_closed
        self.closed_reason: str | None = None
        self._abort = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self._abandoned = 0
        self._lost_to_close = 0
        self._next_error_log = 0.0
        self._errors_since_log = 0

    def start(self) -> None:
        for i in range(self.concurrency):
            thread = threading.Thread(target=self._run, name=f"k8sxray-sender-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def drain(self, timeout: float) -> int:
        """Ship what is buffered within ``timeout`` seconds (input must be closed); returns how many
        documents could not be shipped."""
        self.buffer.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._abort.set()  # senders still retrying give up at their next step
        grace = time.monotonic() + 1.0  # one second for all of them, not each: Kubernetes is waiting
        for thread in self._threads:
            thread.join(max(0.0, grace - time.monotonic()))
        left = self.buffer.clear()
        with self._lock:
            unshipped = len(left) + self._in_flight + self._abandoned + self._lost_to_close
        reason = "shutdown" if self.closed_reason is None else "sink_closed"
        if unshipped:
            self.stats.add(dropped=(reason, len(left) + self._abandoned))
        return unshipped

    def _run(self) -> None:
        buffer = self.buffer
        while not self._abort.is_set():
            batch = buffer.take(self.flush_interval)
            if batch:
                try:
                    self._ship(batch)
                except Exception:  # a sender thread must not die
                    log.exception("unexpected error while shipping a batch")
            elif buffer.closed:
                return

    def _ship(self, batch: list[bytes]) -> None:
        held = sum(map(len, batch)) + DOC_OVERHEAD * len(batch)
        pending = batch
        attempt = 0
        with self._lock:
            self._in_flight += len(batch)
        try:
            while True:
                started = time.monotonic()
                result = self._send(pending)
                if result.closed:
                    self._sink_closed(result, len(pending))
                    return
                delivered = result.delivered(len(pending))
                self.stats.add(
                    sent=delivered,
                    backend_error=result.error,
                    backend_rejected=result.rejected,
                    latency=time.monotonic() - started,
                )
                if result.error or result.rejected:
                    self._log_failure(result, len(pending))
                if not result.retry:
                    return
                pending = [pending[i] for i in result.retry]
                attempt += 1
                if self._abort.wait(self.backoff.delay(attempt)):
                    with self._lock:
                        self._abandoned += len(pending)
                    return
                self.stats.add(retried=len(pending))
        finally:
            with self._lock:
                self._in_flight -= len(batch)
            self.buffer.release(held, len(batch))

    def _sink_closed(self, result: SendResult, size: int) -> None:
        """The sink can take nothing more: drop this batch, stop every sender, tell the daemon once."""
        self.stats.add(dropped=("sink_closed", size), backend_error=result.error)
        with self._lock:
            self._lost_to_close += size
            first = self.closed_reason is None
            if first:
                self.closed_reason = result.detail or f"the {self.sink.name} sink is closed"
        self._abort.set()
        if first:
            self.on_closed(self.closed_reason or "")

    def _send(self, batch: list[bytes]) -> SendResult:
        try:
            return self.sink.send(batch)
        except Exception as exc:  # a sink must not raise, but if one does the data is kept
            return SendResult(retry=tuple(range(len(batch))), error="Other", detail=f"sink raised {exc!r}")

    def _log_failure(self, result: SendResult, size: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._errors_since_log += 1
            if now < self._next_error_log:
                return
            self._next_error_log = now + self.log_interval
            count, self._errors_since_log = self._errors_since_log, 0
        action = f"retrying {len(result.retry)}" if result.retry else "not retried"
        log.warning(
            "%s sink: %s for a batch of %d (%s; %d failed calls since the last report)",
            self.sink.name,
            result.detail or result.error,
            size,
            action,
            count,
        )
