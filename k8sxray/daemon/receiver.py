"""Receiving segment datagrams on UDP: header check, cheap body checks, bulk hand-off to the buffer.

One thread drains the socket without blocking until it is empty, hands everything it read to the
buffer in one call, then sleeps briefly so the next drain finds many datagrams (few wake-ups, few
lock rounds). When the socket stays empty it waits in ``select`` instead. On Linux one ``recvmmsg``
call reads up to 32 datagrams into preallocated slots without releasing the GIL (elsewhere: one
``recv_into`` per datagram); per datagram the hot path is then two byte comparisons and one copy of
the document. With ``check_json`` (sinks whose readers parse every document, such as stdout) each
body is also parsed once and refused unless it is a JSON object: about 4 µs a segment, which the
X-Ray path does not pay (X-Ray validates, and the X-Ray sink isolates documents it refuses).
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import select
import socket
import threading
import time
from typing import Any

from k8sxray._protocol import HEADER, MAX_DATAGRAM
from k8sxray.daemon.buffer import DOC_OVERHEAD, Buffer
from k8sxray.daemon.stats import Stats

log = logging.getLogger(__name__)

COMPACT_HEADER = b'{"format":"json","version":1}\n'
"""The header as the official Python and Node SDKs write it (no spaces)."""

_OPEN, _CLOSE, _SPACE = 0x7B, 0x7D, 0x20  # "{", "}", " "
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


def _unpadded(body: memoryview) -> bytes:
    """A JSON object followed by spaces (the padding of a segmentation-offload send), without
    them; b"" for anything else (left to the full checks)."""
    doc = body.tobytes().rstrip(b" ")
    return doc if doc[:1] == b"{" and doc[-1:] == b"}" else b""


def is_json_object(doc: bytes) -> bool:
    """Whether ``doc`` parses as JSON and is an object (what a reader of one JSON line expects)."""
    try:
        return type(json.loads(doc)) is dict
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        return False


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


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_Iovec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


_MSG_DONTWAIT = 0x40


class _BatchReader:
    """Linux ``recvmmsg``: up to ``slots`` datagrams per system call, into one preallocated buffer.

    Called through ``ctypes.PyDLL`` so the GIL stays held for the (non-blocking) call: the receiving
    thread no longer hands the GIL to a sender thread on every datagram. ``read()`` fills the slots
    and returns how many datagrams arrived; datagram ``i`` is ``data[offset(i) : offset(i) + length(i)]``.
    """

    def __init__(self, sock: socket.socket, slot_size: int, slots: int = 32) -> None:
        libc = ctypes.PyDLL(None, use_errno=True)
        self._call = libc.recvmmsg  # AttributeError where the C library has none
        self._call.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
        self._call.restype = ctypes.c_int
        self.sock = sock
        self.slot_size = slot_size
        self.slots = slots
        self.data = bytearray(slot_size * slots)
        self._cbuf = (ctypes.c_char * len(self.data)).from_buffer(self.data)
        self._iovs = (_Iovec * slots)()
        self._msgs = (_Mmsghdr * slots)()
        base = ctypes.addressof(self._cbuf)
        for i in range(slots):
            self._iovs[i].base = base + i * slot_size
            self._iovs[i].len = slot_size
            self._msgs[i].hdr.iov = ctypes.pointer(self._iovs[i])
            self._msgs[i].hdr.iovlen = 1
        self._address = ctypes.addressof(self._msgs)
        words = memoryview(self._msgs).cast("B").cast("I")  # msg_len of slot i at words[i * stride + at]
        stride, at = ctypes.sizeof(_Mmsghdr) // 4, _Mmsghdr.len.offset // 4
        self.lengths: Any = words[at::stride]

    def read(self) -> int:
        """Datagrams now in the slots (0 when the socket is empty); raises OSError on other errors."""
        got: int = self._call(self.sock.fileno(), self._address, self.slots, _MSG_DONTWAIT, None)
        if got >= 0:
            return got
        code = ctypes.get_errno()
        if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
            return 0
        raise OSError(code, "recvmmsg failed")

    def close(self) -> None:
        self.lengths.release()
        del self._cbuf  # lets the bytearray be freed


def _batch_reader(sock: socket.socket, slot_size: int) -> _BatchReader | None:
    try:
        return _BatchReader(sock, slot_size)
    except (AttributeError, OSError, TypeError, ValueError) as exc:  # not Linux, or no recvmmsg
        log.debug("receiving one datagram per call: %s", exc)
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
        batch_receive: bool = True,
        check_json: bool = False,
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
        self._batch_receive = batch_receive
        self.check_json = check_json
        self._reader: _BatchReader | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def start(self) -> None:
        self.sock.setblocking(False)
        if self._batch_receive:
            self._reader = _batch_reader(self.sock, self.max_datagram + 1)
        self._thread = threading.Thread(target=self._run, name="k8sxray-receiver", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop receiving: what the kernel already holds is drained into the buffer first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._reader is not None and (self._thread is None or not self._thread.is_alive()):
            self._reader.close()
            self._reader = None
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
        if self._reader is not None:
            return self._drain_batches(self._reader, limit)
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
            elif h < n <= max_datagram and buf[n - 1] == _SPACE and (doc := _unpadded(view[h:n])):
                pass
            else:
                doc = self._slow_path(buf, n)
                if not doc:
                    continue
            append(doc)
        self._hand_over(docs)
        return count

    def _drain_batches(self, reader: _BatchReader, limit: int) -> int:
        """``_drain`` with ``recvmmsg``: the same checks, on each filled slot."""
        data, lengths, slot, slots = reader.data, reader.lengths, reader.slot_size, reader.slots
        view = memoryview(data)
        docs: list[bytes] = []
        append = docs.append
        count = 0
        spaced, compact = HEADER, COMPACT_HEADER
        max_datagram = self.max_datagram
        unpad = _unpadded
        try:
            while count < limit:
                try:
                    got = reader.read()
                except OSError as exc:  # e.g. ICMP errors surfaced on the socket; keep going
                    log.debug("recvmmsg failed: %s", exc)
                    break
                count += got
                start = 0
                for i in range(got):
                    n = lengths[i]
                    end = start + n
                    if data.startswith(spaced, start):
                        h = start + _SPACED_LEN
                    elif data.startswith(compact, start):
                        h = start + _COMPACT_LEN
                    else:
                        h = end
                    last = data[end - 1]
                    if h < end and n <= max_datagram and data[h] == _OPEN and last == _CLOSE:
                        append(view[h:end].tobytes())
                    elif h < end and n <= max_datagram and last == _SPACE and (doc := unpad(view[h:end])):
                        append(doc)
                    else:
                        doc = self._slow_path(data[start:end], n)
                        if doc:
                            append(doc)
                    start += slot
                if got < slots:
                    break
        finally:
            view.release()
        self._hand_over(docs)
        return count

    def _hand_over(self, docs: list[bytes]) -> None:
        if docs and self.check_json:
            docs = self._json_objects(docs)
        if docs:
            self.stats.received += len(docs)
            dropped = self.buffer.put_many(docs, sum(map(len, docs)) + DOC_OVERHEAD * len(docs))
            if dropped:
                self._note_dropped(dropped)

    def _json_objects(self, docs: list[bytes]) -> list[bytes]:
        """``docs`` without those that are not JSON objects (refused and counted as ``not_json``)."""
        kept = [doc for doc in docs if is_json_object(doc)]
        for _ in range(len(docs) - len(kept)):
            self._refused("not_json")
        return kept

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
            return doc.rstrip(_WHITESPACE)  # e.g. the padding of a segmentation-offload send
        self._refused(reason)
        return b""

    def _refused(self, reason: str) -> None:
        self.stats.rejected[reason] += 1
        now = time.monotonic()
        if now >= self._next_reject_log:
            self._next_reject_log = now + self.log_interval
            log.warning("refused a datagram (%s); refusals so far: %s", reason, dict(self.stats.rejected))

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
