"""``--sink stdout``: every document as one JSON line, for debugging and piping."""

from __future__ import annotations

import sys
import threading
from typing import BinaryIO

from k8sxray.daemon.sinks import OK, SendResult


class StdoutSink:
    """Writes documents, one per line, to a binary stream (standard output by default)."""

    name = "stdout"

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._lock = threading.Lock()

    def send(self, batch: list[bytes]) -> SendResult:
        # A JSON document has no raw line breaks inside strings, so they can become spaces safely.
        lines = [_one_line(d) for d in batch]
        try:
            with self._lock:
                self._stream.write(b"\n".join(lines) + b"\n")
                self._stream.flush()
        except (OSError, ValueError) as exc:  # closed pipe or stream
            return SendResult(retry=tuple(range(len(batch))), error="Other", detail=str(exc))
        return OK

    def close(self) -> None:
        try:
            with self._lock:
                self._stream.flush()
        except (OSError, ValueError):
            pass


def _one_line(doc: bytes) -> bytes:
    if b"\n" in doc or b"\r" in doc:
        return doc.replace(b"\n", b" ").replace(b"\r", b" ")
    return doc
