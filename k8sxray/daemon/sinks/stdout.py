"""``--sink stdout``: every document as one JSON line, for debugging and piping.

When the reader goes away (``| head -1``, a consumer that crashed) nothing written later could ever
be read: the sink says so once (``SendResult.closed``) and the daemon stops with an error, as a Unix
filter does on a broken pipe, instead of retrying into the void.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import threading
from typing import BinaryIO

from k8sxray.daemon.sinks import OK, SendResult

log = logging.getLogger(__name__)

_GONE = (errno.EPIPE, errno.ECONNRESET, errno.EBADF)


class StdoutSink:
    """Writes documents, one per line, to a binary stream (standard output by default)."""

    name = "stdout"
    local_sampling = True  # no X-Ray behind it: the daemon answers sampling calls itself
    check_documents = True  # readers parse each line (jq): only JSON objects are written

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._lock = threading.Lock()
        self.closed_reason: str | None = None

    def send(self, batch: list[bytes]) -> SendResult:
        # A JSON document has no raw line breaks inside strings, so they can become spaces safely.
        lines = [_one_line(d) for d in batch]
        with self._lock:
            if self.closed_reason is not None:
                return SendResult(error="Other", detail=self.closed_reason, closed=True)
            try:
                self._stream.write(b"\n".join(lines) + b"\n")
                self._stream.flush()
            except ValueError:  # the stream object itself was closed
                return self._gone("standard output is closed")
            except OSError as exc:
                if exc.errno in _GONE:
                    return self._gone(f"standard output is closed ({exc.strerror or exc})")
                return SendResult(retry=tuple(range(len(batch))), error="Other", detail=str(exc))
        return OK

    def _gone(self, reason: str) -> SendResult:
        self.closed_reason = reason
        return SendResult(error="Other", detail=reason, closed=True)

    def close(self) -> None:
        with self._lock:
            if self.closed_reason is None:
                with contextlib.suppress(OSError, ValueError):
                    self._stream.flush()
                return
            # Whatever is left in the stream's buffer can never be written; point the descriptor at
            # /dev/null so the interpreter's own flush at exit does not fail with a traceback.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(devnull, self._stream.fileno())
                finally:
                    os.close(devnull)
            except (OSError, ValueError, AttributeError):
                pass


def _one_line(doc: bytes) -> bytes:
    if b"\n" in doc or b"\r" in doc:
        return doc.replace(b"\n", b" ").replace(b"\r", b" ")
    return doc
