"""The seam between the shipper and where documents go (X-Ray, the local console's store, stdout).

A sink is anything with ``send(batch) -> SendResult`` and ``close()``. ``send`` is called from
several sender threads at once, with at most 50 documents (bytes, exactly as received), and must
not raise: every failure is described by the result. Two attributes tell the daemon how to serve
the sink: ``local_sampling`` (no X-Ray behind it: the daemon answers the SDKs' sampling calls itself
and sends no telemetry) and ``check_documents`` (its reader parses every document, so the receiver
refuses any body that is not a JSON object instead of only checking its first and last byte).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

SINK_NAMES = ("xray", "local", "stdout", "otlp")
"""Sinks ``--sink`` accepts."""


@dataclass(frozen=True)
class SendResult:
    """What happened to one batch.

    ``retry`` lists the indices (into the batch) of documents worth sending again; ``rejected``
    counts documents the sink refused for good, by error code. Documents in neither were delivered.
    ``error`` names the kind of failure of the whole call (the official daemon's telemetry names:
    Timeout, ConnectionRefused, HTTPCode4XX, HTTPCode5XX, UnknownHost, Other), ``detail`` says
    more for the log.
    """

    retry: tuple[int, ...] = ()
    rejected: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    detail: str = ""
    throttled: bool = False
    closed: bool = False
    """The sink can take nothing more, ever (standard output's reader went away): the daemon stops."""

    def delivered(self, size: int) -> int:
        """How many documents of a batch of ``size`` reached the sink."""
        return size - len(self.retry) - sum(self.rejected.values())


OK = SendResult()


class Sink(Protocol):
    """Where batches go. Implementations must be safe to call from several threads."""

    name: str
    local_sampling: bool
    check_documents: bool

    def send(self, batch: list[bytes]) -> SendResult: ...

    def close(self) -> None: ...
