"""The UDP emitter against real sockets on loopback."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from k8sxray._emitter import UDPEmitter
from k8sxray._protocol import HEADER


def _receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    return sock


def test_batched_documents_arrive_without_a_flush() -> None:
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=0.005)
    try:
        for i in range(3):
            emitter.send(b'{"n":%d}' % i)
        received = [rx.recv(70000) for _ in range(3)]  # the flusher thread sends them
    finally:
        emitter.close()
        rx.close()
    assert received == [HEADER + b'{"n":%d}' % i for i in range(3)]
    assert emitter.sent == 3


def test_a_document_queued_when_the_oldest_is_delay_old_sends_the_queue_at_once() -> None:
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=0.05, batch=100)  # the flusher looks after 0.2 s
    try:
        emitter.send(b"0")
        time.sleep(0.06)
        emitter.send(b"1")  # the oldest is older than the delay: this call sends both
        assert not emitter._queue
        rx.settimeout(0)  # queued at the receiver already, when send() returned
        assert [rx.recv(100) for _ in range(2)] == [HEADER + b"0", HEADER + b"1"]
    finally:
        emitter.close()
        rx.close()


def test_the_flusher_is_woken_from_idle_only_not_per_batch() -> None:
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=0.05, batch=2)
    wakes = []
    set_event = emitter._wake.set
    emitter._wake.set = lambda: (wakes.append(1), set_event())[1]  # type: ignore[method-assign]
    try:
        for i in range(20):  # ten batches, each sent by the call that fills it
            emitter.send(b"%d" % i)
        assert [rx.recv(100) for _ in range(20)] == [HEADER + b"%d" % i for i in range(20)]
        assert len(wakes) == 1  # the first document started the flusher; no batch woke it again
        emitter.send(b"last")  # a lone document: the flusher sends it
        assert rx.recv(100) == HEADER + b"last"
    finally:
        emitter.close()
        rx.close()


def test_a_full_batch_is_sent_at_once_and_flush_empties_the_queue() -> None:
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=10.0, batch=4)
    try:
        for i in range(4):
            emitter.send(b"%d" % i)
        assert [rx.recv(100) for _ in range(4)] == [HEADER + b"%d" % i for i in range(4)]
        emitter.send(b"late")
        assert emitter.flush(1.0)
        assert rx.recv(100) == HEADER + b"late"
    finally:
        emitter.close()
        rx.close()


def test_the_send_that_fills_a_batch_sends_it_before_returning() -> None:
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=10.0, batch=3)
    try:
        emitter.send(b"0")
        emitter.send(b"1")
        rx.settimeout(0)
        with pytest.raises(BlockingIOError):  # a partial batch waits for the flusher's delay
            rx.recv(100)
        emitter.send(b"2")
        # loopback UDP is queued at the receiver when send() returns: no thread was involved
        assert [rx.recv(100) for _ in range(3)] == [HEADER + b"%d" % i for i in range(3)]
        assert emitter.sent == 3
    finally:
        emitter.close()
        rx.close()


def test_inline_mode_sends_before_returning() -> None:
    rx = _receiver()
    address = rx.getsockname()
    rx.settimeout(0)
    emitter = UDPEmitter(lambda: address, delay=0)
    try:
        emitter.send(b"now")
        time.sleep(0.01)
        assert rx.recv(100) == HEADER + b"now"
    finally:
        emitter.close()
        rx.close()


def test_follows_a_new_address_without_resolving() -> None:
    first, second = _receiver(), _receiver()
    current = [first.getsockname()]
    emitter = UDPEmitter(lambda: current[0], delay=0)
    try:
        emitter.send(b"a")
        current[0] = second.getsockname()  # what DaemonEndpoint does on re-resolution
        emitter.send(b"b")
        assert first.recv(100) == HEADER + b"a"
        assert second.recv(100) == HEADER + b"b"
    finally:
        emitter.close()
        first.close()
        second.close()


def test_unreachable_daemon_never_raises_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    probe = _receiver()
    address = probe.getsockname()
    probe.close()
    emitter = UDPEmitter(lambda: address, delay=0)
    with caplog.at_level(logging.WARNING, logger="k8sxray"):
        for _ in range(20):
            emitter.send(b"x" * 100)
        emitter.send(b"y" * 70000)  # too large for any datagram
    emitter.close()
    assert emitter.dropped >= 1
    assert emitter.sent + emitter.dropped == 21
    assert len([r for r in caplog.records if "sending a segment" in r.getMessage()]) <= 1


def test_heavy_items_fill_a_batch_sooner_and_are_sent_by_the_thread_that_fills_it() -> None:
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=10.0, batch=10)  # the flusher would wait 10 s
    try:
        emitter.send_later(b'{"n":0}', 4)
        emitter.send_later(b'{"n":1}', 4)
        assert emitter.sent == 0  # 8 of 10: still queued
        emitter.send_later(b'{"n":2}', 4)
        assert emitter.sent == 3  # 12: sent at once, from this thread
        emitter.send_later(b'{"n":3}')  # the weight was reset with the batch
        assert emitter.sent == 3
        emitter.send_later(b'{"n":4}', 10)  # a batch in itself
        assert emitter.sent == 5
        received = [rx.recv(70000) for _ in range(5)]
    finally:
        emitter.close()
        rx.close()
    assert sorted(received) == sorted(HEADER + b'{"n":%d}' % i for i in range(5))


def test_a_request_thread_never_waits_for_another_that_is_sending() -> None:
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=10.0, batch=2)
    try:
        with emitter._lock:  # another thread is sending
            worker = threading.Thread(target=lambda: [emitter.send(b"%d" % i) for i in range(2)])
            worker.start()
            worker.join(2.0)
            assert not worker.is_alive()  # a full batch, and yet it returned at once
            assert len(emitter._queue) == 2  # left for the sender (or the next send) to take
        assert emitter.flush(1.0)
        assert [rx.recv(100) for _ in range(2)] == [HEADER + b"0", HEADER + b"1"]
    finally:
        emitter.close()
        rx.close()


def test_a_request_thread_sends_only_what_was_queued_when_it_began() -> None:
    rx = _receiver()
    address = rx.getsockname()
    emitter: UDPEmitter

    def serialise(item: object) -> bytes:
        if item == "first":  # others queue 200 more while this thread sends
            emitter._queue.extend(f"more-{n}" for n in range(200))
        return HEADER + str(item).encode()

    emitter = UDPEmitter(lambda: address, delay=10.0, batch=2, serialise=serialise)
    try:
        emitter.send_later("first")
        emitter.send_later("second")  # fills the batch: this call sends it
        received = sorted(rx.recv(100).rstrip() for _ in range(2))  # a GSO burst: any order, padded
        assert received == [HEADER + b"first", HEADER + b"second"]
        assert len(emitter._queue) == 200  # not this request's job
        assert emitter.flush(1.0)
        assert len([rx.recv(100) for _ in range(200)]) == 200
    finally:
        emitter.close()
        rx.close()


def test_a_document_sent_after_close_still_arrives_and_leaves_no_socket_open() -> None:
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=0.005)
    try:
        emitter.send(b'{"n":1}')
        assert rx.recv(70000) == HEADER + b'{"n":1}'
        emitter.close()
        assert emitter._sock is None
        emitter.send(b'{"late":true}')  # e.g. a subsegment that ended after the app shut down
        emitter.flush(1.0)
        assert rx.recv(70000) == HEADER + b'{"late":true}'
        assert emitter._sock is None  # sent, then closed again: nothing for the GC to warn about
    finally:
        emitter.close()
        rx.close()
