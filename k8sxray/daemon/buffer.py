"""A bounded FIFO of segment documents, measured in the bytes it actually holds.

The receiving thread adds documents in bulk (one lock round per drain of the socket), sender
threads take batches. Bytes stay accounted for until the sender releases them, so documents in
flight or waiting for a retry count against the bound too.
"""

from __future__ import annotations

import threading
import time
from collections import deque

DOC_OVERHEAD = 48
"""Bytes a held document costs beyond its length: the bytes object header plus a deque slot."""


def held_size(doc: bytes) -> int:
    """Bytes charged to the buffer for one document."""
    return len(doc) + DOC_OVERHEAD


class Buffer:
    """Documents waiting to be shipped, bounded by ``max_bytes`` (documents plus overhead)."""

    def __init__(self, max_bytes: int, batch_size: int = 50) -> None:
        self.max_bytes = max_bytes
        self.batch_size = batch_size
        self._docs: deque[bytes] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._held = 0
        self._held_docs = 0
        self._waiting = 0
        self._closed = False
        self._oldest = 0.0  # when the oldest buffered document arrived (approximately)

    @property
    def held_bytes(self) -> int:
        """Bytes of buffered and in-flight documents."""
        return self._held

    @property
    def held_documents(self) -> int:
        """Documents buffered, in flight or waiting for a retry: everything not yet shipped."""
        return self._held_docs

    def __len__(self) -> int:
        """Documents waiting in the queue (not those in flight or in retry)."""
        return len(self._docs)

    @property
    def closed(self) -> bool:
        return self._closed

    def put_many(self, docs: list[bytes], nbytes: int) -> int:
        """Add ``docs`` (``nbytes`` = sum of their held sizes); returns how many did not fit."""
        with self._cond:
            if self._closed:
                return len(docs)
            room = self.max_bytes - self._held
            dropped = 0
            if not self._docs:
                self._oldest = time.monotonic()
            if nbytes <= room:
                self._docs.extend(docs)
                self._held += nbytes
                self._held_docs += len(docs)
            else:
                kept = 0
                for doc in docs:
                    size = len(doc) + DOC_OVERHEAD
                    if size > room:
                        break
                    room -= size
                    self._held += size
                    self._docs.append(doc)
                    kept += 1
                dropped = len(docs) - kept
                self._held_docs += kept
            if self._waiting and len(self._docs) >= self.batch_size:
                self._cond.notify(min(self._waiting, len(self._docs) // self.batch_size))
            return dropped

    def take(self, wait: float) -> list[bytes]:
        """One batch: at once when a full batch is there; a partial one only when its oldest document
        has waited ``wait`` seconds (so several idle senders do not split a filling batch); an empty
        list when nothing arrived within ``wait``."""
        docs = self._docs
        with self._cond:
            started = time.monotonic()
            while len(docs) < self.batch_size and not self._closed:
                now = time.monotonic()
                timeout = (self._oldest if docs else started) + wait - now
                if timeout <= 0:
                    break
                self._waiting += 1
                try:
                    self._cond.wait(timeout)
                finally:
                    self._waiting -= 1
            n = min(self.batch_size, len(docs))
            batch = [docs.popleft() for _ in range(n)]
            if docs:
                self._oldest = time.monotonic()  # the rest arrived after the batch just taken
            return batch

    def release(self, nbytes: int, ndocs: int) -> None:
        """Forget ``ndocs`` documents (``nbytes`` held) that were delivered or given up."""
        with self._cond:
            self._held -= nbytes
            self._held_docs -= ndocs

    def close(self) -> None:
        """No more input: waiting takers get partial batches at once, later puts are refused."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def clear(self) -> list[bytes]:
        """Remove and return every buffered document (their bytes are released)."""
        with self._cond:
            rest = list(self._docs)
            self._docs.clear()
            self._held -= sum(len(d) + DOC_OVERHEAD for d in rest)
            self._held_docs -= len(rest)
            return rest
