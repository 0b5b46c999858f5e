"""Test helpers: capture the documents k8sxray would send, in memory.

from k8sxray.testing import capture_segments

with capture_segments() as segments:
    client.get("/")
assert segments[0]["http"]["response"]["status"] == 200
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import _recorder
from .sampling.sampler import AlwaysSampler

__all__ = ["InMemoryEmitter", "capture_segments"]


class InMemoryEmitter:
    """An emitter that keeps every document (and its parsed form) in memory."""

    def __init__(self) -> None:
        self.documents: list[bytes] = []
        self.parsed: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)

    def send(self, document: bytes) -> None:
        parsed = json.loads(document)
        with self._lock:
            self.documents.append(document)
            self.parsed.append(parsed)
            self._arrived.notify_all()

    def flush(self, timeout: float = 1.0) -> bool:
        return True

    def close(self) -> None:
        pass

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until *count* documents arrived (or *timeout*); returns what is there."""
        with self._lock:
            self._arrived.wait_for(lambda: len(self.parsed) >= count, timeout)
            return list(self.parsed)

    def clear(self) -> None:
        with self._lock:
            self.documents.clear()
            self.parsed.clear()


class _ListEmitter(InMemoryEmitter):
    """An :class:`InMemoryEmitter` whose parsed documents are the list handed to the test."""

    def __init__(self, target: list[dict[str, Any]]) -> None:
        super().__init__()
        self.parsed = target


@contextmanager
def capture_segments() -> Iterator[list[dict[str, Any]]]:
    """Send every document to memory while the block runs; yields the list of parsed documents.

    While the block runs every new trace is sampled (an incoming ``Sampled=0`` header is still
    obeyed); the configured sampler decides again afterwards. Configures k8sxray from the
    environment first if nothing configured it yet.
    """
    documents: list[dict[str, Any]] = []
    previous = _recorder.set_emitter(_ListEmitter(documents))
    previous_sampler = _recorder.set_sampler(AlwaysSampler())
    try:
        yield documents
    finally:
        _recorder.set_sampler(previous_sampler)
        _recorder.set_emitter(previous)
