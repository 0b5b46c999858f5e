"""Emitters hand finished documents to the daemon.

:class:`UDPEmitter` sends each document as one datagram (``_protocol.HEADER`` +
document) to the daemon's resolved address, read from the live ``DaemonEndpoint``
on every batch (never resolved per send). It never blocks and never raises: a
failed send is counted and logged once. Documents are batched: the thread that
queues the ``batch``-th document, or one that queues a document when the oldest is
``delay`` old, sends the queue itself (no hand-off to another thread, which would have
to win the GIL back from a busy request thread), so the receiver is woken once per
batch rather than once per request. A flusher thread sends what is left when requests
stop; it is woken only from idle, never per batch. On Linux a burst leaves with UDP
segmentation offload (see :mod:`._gso`: one pass through the kernel's stack for up to
64 datagrams), or else in one ``sendmmsg(2)`` call (see :mod:`._sendmmsg`), elsewhere
datagram by datagram. A document too large for one datagram is split and trimmed to fit
(see :mod:`._fit`). ``delay=0`` sends inline. It is fork-safe: a child gets a fresh
socket, queue, thread and sendmmsg headers.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from . import _forks, _gso, _guard, _sendmmsg
from ._fit import fit
from ._protocol import HEADER, MAX_DOCUMENT

log = logging.getLogger(__name__)
_monotonic = time.monotonic

SockAddr = tuple[str, int] | tuple[str, int, int, int]

DEFAULT_DELAY = 0.05
"""Seconds a queued document may wait for others: then the next thread that queues one sends the
queue (when none comes, the flusher does, within four times that). Fewer, fuller bursts wake the
daemon less often (each wake-up of a sleeping receiver costs the sender more than the datagram);
X-Ray itself takes seconds to show a trace."""
DEFAULT_BATCH = 64
"""Queued documents that the thread queueing the last of them sends at once, without waiting."""
BURST = 64
"""Datagrams serialised then sent back to back: well within a daemon's default (~208 KiB) buffer."""


class Emitter(Protocol):
    """Where finished documents go."""

    def send(self, document: bytes) -> None:
        """Queue or send one document; never blocks, never raises."""

    def flush(self, timeout: float) -> bool:
        """Send everything queued; ``True`` when nothing is left."""

    def close(self) -> None:
        """Flush and release resources."""


_live: weakref.WeakSet[UDPEmitter] = weakref.WeakSet()


def close_all() -> None:
    """Flush and close every UDP emitter (at exit)."""
    for emitter in list(_live):
        emitter.close()


class UDPEmitter:
    """Send documents as UDP datagrams in the daemon protocol."""

    def __init__(
        self,
        address: Callable[[], SockAddr],
        *,
        delay: float = DEFAULT_DELAY,
        batch: int = DEFAULT_BATCH,
        serialise: Callable[[Any], bytes | list[bytes]] | None = None,
        sendmmsg: bool = True,
        gso: bool = True,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        """*address* returns the daemon's current resolved ``(ip, port)``; it is called once per batch.

        With *serialise*, :meth:`send_later` queues finished objects (segments) that the
        flusher turns into datagrams (header included), in a batch, off the request path.
        ``sendmmsg=False`` sends datagram by datagram even where ``sendmmsg(2)`` exists;
        ``gso=False`` never uses UDP segmentation offload. *on_refused* is called, instead of the
        generic warning, when the daemon's address refuses datagrams (nobody listens there).
        """
        self._on_refused = on_refused
        self._address = address
        self._serialise = serialise
        self.serialises = serialise is not None
        self._delay = delay
        self._batch = max(1, batch) if delay > 0 else 1
        self._inline = delay <= 0  # every document is sent by the thread that queues it
        self.sent = 0
        self.dropped = 0
        self._closed = False
        self._use_sendmmsg = sendmmsg
        self._use_gso = gso
        self.gso_sends = 0
        """Datagrams that left through UDP segmentation offload."""
        self._reset_after_fork()
        _live.add(self)
        _forks.track(self)

    def _after_fork_in_child(self) -> None:
        self._reset_after_fork()  # a child gets a fresh socket, queue, thread and sendmmsg headers

    def _reset_after_fork(self) -> None:
        self._queue: deque[Any] = deque()
        self._sock: socket.socket | None = None
        self._connected: SockAddr | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._first_at = 0.0  # when the oldest queued document was queued (monotonic)
        self._idle = True  # the flusher waits for a wake-up (no thread, or an empty queue)
        self._extra = 0  # the queued items' weight beyond one each
        self._gso_limit = 0  # the largest datagram a GSO send may carry (0: no GSO)
        self._thread: threading.Thread | None = None
        self._mmsg: _sendmmsg.Batch | None = None  # made on first send (and again in a child)
        self._mmsg_checked = not self._use_sendmmsg

    # --- request path ---------------------------------------------------------------------
    def send(self, document: bytes) -> None:
        if len(document) > MAX_DOCUMENT:  # split or trimmed to fit (see _fit), never sent too large
            parts, dropped = fit(document, MAX_DOCUMENT)
            self.dropped += dropped
            for part in parts:
                self.send_later(part.encode())
            return
        self.send_later(document)

    def send_later(self, item: Any, weight: int = 1) -> None:
        """Queue a document, or an object for *serialise* (never blocks, never raises).

        The thread that queues the document completing a batch, or one arriving when the oldest
        queued is ``delay`` old, sends the queue itself: under load, batches leave without
        waking the flusher (waking a thread costs more than a datagram). *weight* counts an item
        that is a batch in itself (a segment with many subsegments) as that many.
        """
        queue = self._queue
        queue.append(item)
        queued = len(queue)
        if weight > 1:
            self._extra += weight - 1
        if queued + self._extra >= self._batch:
            self._drain(self._inline)  # a full batch (or inline mode): send it now, from this thread
        elif queued == 1:
            self._arm()
        elif _monotonic() - self._first_at >= self._delay:
            self._drain(False)  # old enough: this thread sends it rather than the flusher

    def _arm(self) -> None:
        """The first document of a batch: it leaves at the latest ``delay`` from now.

        The flusher is woken only when it is idle (it found the queue empty after a quiet
        spell); otherwise it looks again within ``4 * delay`` anyway. Two threads queueing at
        once may both see a longer queue and neither arm: the flusher's periodic look (every
        half second at the most) still sends their documents.
        """
        self._first_at = _monotonic()
        if self._idle:
            self._idle = False
            if self._thread is None:
                self._start_thread()
            self._wake.set()

    # --- sending --------------------------------------------------------------------------
    def _socket(self) -> socket.socket | None:
        address = self._address()
        sock = self._sock
        if sock is not None and self._connected is address:
            return sock
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        if sock is None or sock.family != family:
            if sock is not None:
                sock.close()
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._sock = sock
        sock.connect(address)
        self._connected = address
        self._gso_limit = _gso.max_datagram(sock) if self._use_gso else 0
        return sock

    def _drain(self, wait: bool = True) -> None:
        """Send what is queued. A request thread (``wait=False``) never waits for another one
        that is sending (that one may take its document along; else the next send or the
        flusher does), and sends only what was queued when it began, however fast others
        queue more: a request never turns into the sender for everyone else."""
        queue = self._queue
        if not queue:
            return
        lock = self._lock
        if not lock.acquire(wait):
            return
        try:
            try:
                sock = self._socket()
            except OSError:
                message = "k8sxray: cannot open a UDP socket to the daemon"
                _guard.warn_once("emitter.socket", message, exc_info=True)
                self.dropped += len(queue)
                queue.clear()
                return
            if sock is None:
                return
            self._extra = 0
            pending = len(queue)
            while queue and (wait or pending > 0):
                # serialise a burst first, then send it back to back: the receiver, woken by the
                # first datagram, finds the rest queued instead of being woken for each
                datagrams = self._take_batch(queue, BURST)
                self._send_all(sock, datagrams)
                pending -= BURST
            if self._closed:  # a document sent after close() (a late subsegment) leaves no socket open
                sock.close()
                self._sock = None
                self._connected = None
        finally:
            lock.release()

    def _take_batch(self, queue: deque[Any], limit: int) -> list[bytes]:
        popleft = queue.popleft
        serialise = self._serialise
        datagrams: list[bytes] = []
        for _ in range(min(len(queue), limit)):
            try:
                item = popleft()
            except IndexError:
                break
            if type(item) is bytes:
                datagrams.append(HEADER + item)
            elif serialise is not None:
                try:
                    made = serialise(item)
                except Exception:
                    _guard.internal_error("emitter.serialise")
                    continue
                if isinstance(made, bytes):
                    datagrams.append(made)
                else:
                    datagrams += made
        return datagrams

    def _send_all(self, sock: socket.socket, datagrams: list[bytes]) -> None:
        if self._gso_limit and len(datagrams) > 1:
            sent, failed, datagrams, usable = _gso.send(sock, datagrams, self._gso_limit)
            self.sent += sent
            self.gso_sends += sent
            if failed:
                self._lost(failed)
            if not usable:
                self._use_gso = False
                self._gso_limit = 0
                log.debug("k8sxray: the kernel refused UDP segmentation offload; using sendmmsg")
            if not datagrams:
                return
        if not self._mmsg_checked:
            self._mmsg_checked = True
            self._mmsg = _sendmmsg.batch(BURST)
        mmsg = self._mmsg
        if mmsg is not None and len(datagrams) > 1:  # a lone datagram: send() costs half as much
            fd = sock.fileno()
            for start in range(0, len(datagrams), BURST):
                sent, failed = mmsg.send(fd, datagrams[start : start + BURST])
                self.sent += sent
                if failed:
                    self._lost(failed)
            return
        send = sock.send
        sent = 0
        for datagram in datagrams:
            try:
                send(datagram)
                sent += 1
            except OSError as exc:
                self.dropped += 1
                if exc.errno == errno.ECONNREFUSED and self._on_refused is not None:
                    self._on_refused()
                    continue
                message = "k8sxray: sending a segment to the daemon failed (%s); logged once"
                _guard.warn_once("emitter.send", message, exc)
        self.sent += sent

    def _lost(self, errnos: list[int]) -> None:
        self.dropped += len(errnos)
        if errno.ECONNREFUSED in errnos and self._on_refused is not None:
            self._on_refused()
            return
        message = "k8sxray: sending a segment to the daemon failed (%s); logged once"
        _guard.warn_once("emitter.send", message, os.strerror(errnos[0]))

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._run, name="k8sxray-emitter", daemon=True)
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        """Send what request threads left behind: a queue whose oldest document is ``delay``
        old when no further document came to send it. While documents keep coming this
        thread looks only every ``4 * delay`` (the next request usually sends the queue);
        after a quiet spell it sleeps until the next document wakes it."""
        wake = self._wake
        queue = self._queue
        delay = self._delay
        tail = 4 * delay
        clock = time.monotonic
        while not self._closed:
            now = clock()
            if queue:
                wait = self._first_at + delay - now
                if wait <= 0:
                    try:
                        self._drain()
                    except Exception:
                        _guard.internal_error("emitter.flusher")
                    if queue:  # could not be sent: try again one delay later, not in a busy loop
                        self._first_at = clock()
                    continue
                wait = max(wait, tail)
            elif now - self._first_at < tail:
                wait = tail  # documents came a moment ago: more will come, look again then
            else:
                self._idle = True  # the next document queued wakes this thread
                if queue:  # queued just now, by a thread that saw it busy: look again
                    self._idle = False
                    continue
                wait = 0.5
            wake.wait(wait)  # arming an idle flusher, or close(), ends the wait early
            wake.clear()

    # --- lifecycle ------------------------------------------------------------------------
    def flush(self, timeout: float = 1.0) -> bool:
        try:
            self._drain()
        except Exception:
            _guard.internal_error("emitter.flush")
        return not self._queue

    def close(self) -> None:
        self.flush(1.0)
        self._closed = True
        self._wake.set()
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
                self._connected = None
        _live.discard(self)
        _forks.forget(self)
