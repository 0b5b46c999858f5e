"""Receiving segment datagrams on UDP: header check, cheap body checks, bulk hand-off to the buffer.

One thread drains the socket without blocking until it is empty, hands everything it read to the
buffer in one call, then sleeps briefly so the next drain finds many datagrams (few wake-ups, few
lock rounds). When the socket stays empty it waits in ``select`` instead. Per datagram the hot path
is one ``recv_into`` into a preallocated buffer, two byte comparisons and one copy of the document.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time

from k8sxray._protocol import HEADER, MAX_DATAGRAM
from k8sxray.daemon.buffer import DOC_OVERHEAD, Buffer
from k8sxray.daemon.stats import Stats

log = logging.getLogger(__name__)

COMPACT_HEADER = b'{"format":"json","version":1}\n'
"""The header as the official Python and Node SDKs write it (no spaces)."""

_OPEN, _CLOSE = 0x7B, 0x7D  # "{", "}"
_WHITESPACE = b" \t\r\n"
_SPACED_LEN = len(HEADER)
_COMPACT_LEN = len(COMPACT_HEADER)
_MAX_HEADER = 256
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def bind_udp(address: tuple[str, int], receive_buffer: int) -> socket.socket:
    """A UDP socket bound to ``address`` with the largest receive buffer the kernel grants."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        try:  # as root (CAP_NET_ADMIN) this ignores net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, receive_buffer)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    # Linux reports twice the usable size (it counts bookkeeping); log what was asked and granted.
    log.info("UDP receive buffer: asked for %d bytes, kernel granted %d", receive_buffer, granted)
    if granted < receive_buffer:
        log.warning(
            "UDP receive buffer is smaller than asked (raise net.core.rmem_max or run with "
            "CAP_NET_ADMIN); bursts may be lost in the kernel"
        )
    return sock


def header_length(data: bytes | bytearray, n: int) -> int:
    """Length of a valid header line at the start of ``data[:n]``, or -1.

    The two spellings SDKs use are matched directly; anything else is parsed as JSON and accepted
    when it says format "json", version 1 (as the official daemon does).
    """
    if n >= len(HEADER) and data.startswith(HEADER):
        return len(HEADER)
    if n >= len(COMPACT_HEADER) and data.startswith(COMPACT_HEADER):
        return len(COMPACT_HEADER)
    end = data.find(b"\n", 0, min(n, _MAX_HEADER))
    if end < 0:
        return -1
    try:
        header = json.loads(bytes(data[:end]))
    except ValueError:
        return -1
    if isinstance(header, dict) and header.get("format") == "json" and header.get("version") == 1:
        return end + 1
    return -1


def check_document(doc: bytes) -> str | None:
    """Why a document (the bytes after the header) is refused, or None when it may be forwarded.

    The check is deliberately cheap: a JSON object starts with ``{`` and ends with ``}`` once
    surrounding whitespace is ignored. Full validation is the backend's job.
    """
    if doc[:1] == b"{" and doc[-1:] == b"}":
        return None
    stripped = doc.strip(_WHITESPACE)
    if not stripped:
        return "empty"
    if stripped[0] != _OPEN or stripped[-1] != _CLOSE:
        return "not_json"
    return None


class Receiver:
    """Reads datagrams from ``sock`` in its own thread and feeds valid documents to ``buffer``."""

    def __init__(
        self,
        sock: socket.socket,
        buffer: Buffer,
        stats: Stats,
        *,
        max_datagram: int = MAX_DATAGRAM,
        pause: float = 0.002,
        log_interval: float = 60.0,
    ) -> None:
        self.sock = sock
        self.buffer = buffer
        self.stats = stats
        self.max_datagram = max_datagram
        self.pause = pause
        self.log_interval = log_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_reject_log = 0.0
        self._next_drop_log = 0.0
        self._dropped_since_log = 0
        self._buf = bytearray(max_datagram + 1)
        self._view = memoryview(self._buf)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def start(self) -> None:
        self.sock.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="k8sxray-receiver", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop receiving: what the kernel already holds is drained into the buffer first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.sock.close()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._drain():
                    time.sleep(self.pause)
                else:
                    select.select([self.sock], [], [], 0.2)
            self._drain()
        except Exception:  # the receiving thread must never die silently
            log.exception("receiver stopped by an unexpected error")

    def _drain(self, limit: int = 8192) -> int:
        """Read until the socket is empty (or ``limit`` datagrams); returns datagrams read."""
        buf, view = self._buf, self._view
        recv_into = self.sock.recv_into
        size = len(buf)
        docs: list[bytes] = []
        append = docs.append
        count = 0
        spaced, compact = HEADER, COMPACT_HEADER
        max_datagram = self.max_datagram
        for _ in range(limit):
            try:
                n = recv_into(buf, size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ICMP errors surfaced on the socket; keep going
                log.debug("recv failed: %s", exc)
                break
            count += 1
            if buf.startswith(spaced):
                h = _SPACED_LEN
            elif buf.startswith(compact):
                h = _COMPACT_LEN
            else:
                h = n
            if h < n <= max_datagram and buf[h] == _OPEN and buf[n - 1] == _CLOSE:
                doc = view[h:n].tobytes()
            else:
                doc = self._slow_path(buf, n)
                if not doc:
                    continue
            append(doc)
        if docs:
            self.stats.received += len(docs)
            dropped = self.buffer.put_many(docs, sum(map(len, docs)) + DOC_OVERHEAD * len(docs))
            if dropped:
                self._note_dropped(dropped)
        return count

    def _slow_path(self, buf: bytearray, n: int) -> bytes:
        """Full checks for datagrams the fast path did not accept; b"" when refused (and counted)."""
        reason: str | None
        doc = b""
        if n > self.max_datagram:
            reason = "too_large"
        else:
            hlen = header_length(buf, n)
            if hlen < 0:
                reason = "bad_header"
            else:
                doc = bytes(buf[hlen:n])
                reason = check_document(doc)
        if reason is None:
            return doc
        self.stats.rejected[reason] += 1
        now = time.monotonic()
        if now >= self._next_reject_log:
            self._next_reject_log = now + self.log_interval
            log.warning("refused a datagram (%s); refusals so far: %s", reason, dict(self.stats.rejected))
        return b""

    def _note_dropped(self, dropped: int) -> None:
        self.stats.add(dropped=("buffer_full", dropped))
        self._dropped_since_log += dropped
        now = time.monotonic()
        if now >= self._next_drop_log:
            self._next_drop_log = now + self.log_interval
            log.warning(
                "buffer full (%d bytes): dropped %d new segments since the last report; raise "
                "-m/--buffer-memory or check the sink",
                self.buffer.max_bytes,
                self._dropped_since_log,
            )
            self._dropped_since_log = 0
