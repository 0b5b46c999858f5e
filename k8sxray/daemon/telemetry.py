"""The daemon's own telemetry: ``PutTelemetryRecords`` every interval, as AWS's daemon sends it.

Each interval the reporter takes the counts since the last one (``snapshot()`` returns deltas), turns them
into one ``TelemetryRecord`` and sends every pending record with botocore's X-Ray client. A failed send
keeps its records (up to ``max_pending``, oldest dropped first) for the next interval; nothing here raises
into the daemon, and a failure is logged at most once per interval.
"""

from __future__ import annotations

import datetime
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

BACKEND_ERROR_KINDS = ("Timeout", "ConnectionRefused", "HTTPCode4XX", "HTTPCode5XX", "UnknownHost", "Other")
"""Keys of ``TelemetryCounts.backend_errors``, as the API's ``BackendConnectionErrors`` names them."""

MAX_RECORDS_PER_CALL = 30
"""Records sent in one ``PutTelemetryRecords`` call; more pending records take several calls."""


@dataclass
class TelemetryCounts:
    """Counts since the previous snapshot. Unknown ``backend_errors`` keys are reported as ``Other``."""

    segments_received: int = 0
    segments_sent: int = 0
    segments_spillover: int = 0
    segments_rejected: int = 0
    backend_errors: dict[str, int] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (
            self.segments_received
            or self.segments_sent
            or self.segments_spillover
            or self.segments_rejected
            or any(self.backend_errors.values())
        )


def to_record(counts: TelemetryCounts, timestamp: datetime.datetime) -> dict[str, Any]:
    """One ``TelemetryRecord`` in the shape of botocore's X-Ray service model."""
    errors = dict.fromkeys(BACKEND_ERROR_KINDS, 0)
    for kind, count in counts.backend_errors.items():
        errors[kind if kind in errors else "Other"] += int(count)
    return {
        "Timestamp": timestamp,
        "SegmentsReceivedCount": int(counts.segments_received),
        "SegmentsSentCount": int(counts.segments_sent),
        "SegmentsSpilloverCount": int(counts.segments_spillover),
        "SegmentsRejectedCount": int(counts.segments_rejected),
        "BackendConnectionErrors": {f"{kind}Count": n for kind, n in errors.items()},
    }


class TelemetryReporter:
    """Sends the daemon's counts to X-Ray every ``interval`` seconds from a background thread.

    ``session`` is a ``botocore.session.Session`` (credentials and proxies from its default chain);
    ``hostname`` defaults to this host's name; ``instance_id`` and ``resource_arn`` are sent when given.
    ``verify_ssl=False`` skips certificate checks (the official daemon's ``NoVerifySSL``).
    """

    def __init__(  # noqa: PLR0917 (the server calls it with the agreed positional signature)
        self,
        snapshot: Callable[[], TelemetryCounts],
        session: Any,
        region: str,
        endpoint_url: str | None = None,
        resource_arn: str | None = None,
        hostname: str | None = None,
        instance_id: str | None = None,
        interval: float = 60.0,
        *,
        proxy_address: str | None = None,
        timeout: float = 5.0,
        max_pending: int = 60,
        verify_ssl: bool = True,
    ) -> None:
        self._snapshot = snapshot
        self._session = session
        self._region = region
        self._endpoint_url = endpoint_url
        self._interval = interval
        self._proxy_address = proxy_address
        self._timeout = timeout
        self._verify_ssl = verify_ssl
        self._identity: dict[str, str] = {"Hostname": hostname or socket.gethostname()}
        if instance_id:
            self._identity["EC2InstanceId"] = instance_id
        if resource_arn:
            self._identity["ResourceARN"] = resource_arn
        self._pending: deque[dict[str, Any]] = deque(maxlen=max(1, max_pending))
        self._dropped = 0
        self._client: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_warning = float("-inf")

    def start(self) -> None:
        """Starts the reporting thread (idempotent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="k8sxray-telemetry", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stops reporting; sends a final record if anything was counted since the last one."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is None:
            self._finish()
        else:
            self._thread.join(timeout=3 * self._timeout + 1)

    @property
    def pending(self) -> int:
        """Records waiting to be sent (after a failure)."""
        return len(self._pending)

    # -- the reporting thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._take(keep_empty=True)
            self._flush()
        self._finish()

    def _finish(self) -> None:
        self._take(keep_empty=False)
        self._flush()
        if self._pending:
            log.warning("telemetry: %d record(s) could not be sent before shutdown", len(self._pending))

    def _take(self, keep_empty: bool) -> None:
        try:
            counts = self._snapshot()
        except Exception:
            self._warn("telemetry: cannot read the daemon's counts", exc_info=True)
            return
        if not keep_empty and counts.is_empty():
            return
        if len(self._pending) == self._pending.maxlen:
            self._dropped += 1
        self._pending.append(to_record(counts, datetime.datetime.now(datetime.timezone.utc)))

    def _flush(self) -> None:
        if not self._pending:
            return
        client = self._get_client()
        if client is None:
            return
        while self._pending:
            batch = [self._pending[i] for i in range(min(MAX_RECORDS_PER_CALL, len(self._pending)))]
            try:
                client.put_telemetry_records(TelemetryRecords=batch, **self._identity)
            except Exception as exc:  # botocore raises many kinds; none may reach the daemon
                self._warn(
                    "telemetry: PutTelemetryRecords failed (%s); %d record(s) kept for the next try%s",
                    exc,
                    len(self._pending),
                    f", {self._dropped} oldest dropped" if self._dropped else "",
                )
                return
            for _ in batch:
                self._pending.popleft()

    def _get_client(self) -> Any:
        if self._client is None:
            try:
                from botocore.config import Config

                config = Config(
                    connect_timeout=self._timeout,
                    read_timeout=self._timeout,
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    proxies={"http": self._proxy_address, "https": self._proxy_address}
                    if self._proxy_address
                    else None,
                    user_agent_extra="k8sxray-daemon",
                )
                self._client = self._session.create_client(
                    "xray",
                    region_name=self._region,
                    endpoint_url=self._endpoint_url,
                    config=config,
                    verify=None if self._verify_ssl else False,
                )
            except Exception as exc:
                self._warn("telemetry: cannot create the X-Ray client: %s", exc)
        return self._client

    def _warn(self, msg: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._last_warning < max(self._interval, 60.0):
            return
        self._last_warning = now
        log.warning(msg, *args, exc_info=exc_info)


__all__ = ["BACKEND_ERROR_KINDS", "TelemetryCounts", "TelemetryReporter", "to_record"]
