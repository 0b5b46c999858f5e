"""Bursts through sendmmsg(2) (ctypes), against real UDP sockets on loopback."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import socket
import sys
from collections.abc import Callable

import pytest

from k8sxray import _emitter, _sendmmsg
from k8sxray._emitter import UDPEmitter
from k8sxray._protocol import HEADER

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sendmmsg is Linux-only")


def _receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    return sock


def _sender(rx: socket.socket) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(rx.getsockname())
    return sock


def _datagrams(count: int) -> list[bytes]:
    return [b"%d:" % i + b"x" * (i * 37 % 900) for i in range(count)]


def _real() -> Callable[..., int]:
    function = _sendmmsg._lookup()
    assert function is not None
    return function


def test_a_burst_arrives_complete_and_in_order() -> None:
    rx = _receiver()
    tx = _sender(rx)
    batch = _sendmmsg.batch(64)
    assert batch is not None
    datagrams = _datagrams(64)
    try:
        assert batch.send(tx.fileno(), datagrams) == (64, [])
        assert batch.send(tx.fileno(), datagrams[:5]) == (5, [])  # a shorter burst reuses the headers
        received = [rx.recv(70000) for _ in range(69)]
    finally:
        tx.close()
        rx.close()
    assert received == datagrams + datagrams[:5]


def test_a_partial_send_sends_the_rest() -> None:
    real = _real()
    calls: list[int] = []

    def three_at_most(fd: int, msgs: int, vlen: int, flags: int) -> int:
        calls.append(vlen)
        return real(fd, msgs, min(vlen, 3), flags)

    rx = _receiver()
    tx = _sender(rx)
    datagrams = _datagrams(10)
    try:
        assert _sendmmsg.Batch(64, three_at_most).send(tx.fileno(), datagrams) == (10, [])
        received = [rx.recv(70000) for _ in range(10)]
    finally:
        tx.close()
        rx.close()
    assert received == datagrams
    assert calls == [10, 7, 4, 1]


def test_a_failed_datagram_is_skipped_and_the_rest_still_go() -> None:
    real = _real()
    calls: list[int] = []

    def refuse_first(fd: int, msgs: int, vlen: int, flags: int) -> int:
        calls.append(vlen)
        if len(calls) == 1:
            ctypes.set_errno(errno.ENOBUFS)
            return -1
        return real(fd, msgs, vlen, flags)

    rx = _receiver()
    tx = _sender(rx)
    datagrams = _datagrams(6)
    try:
        assert _sendmmsg.Batch(8, refuse_first).send(tx.fileno(), datagrams) == (5, [errno.ENOBUFS])
        received = [rx.recv(70000) for _ in range(5)]
    finally:
        tx.close()
        rx.close()
    assert received == datagrams[1:]
    assert calls == [6, 5]


def test_the_emitter_sends_a_full_batch_through_sendmmsg(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _real()
    calls: list[int] = []

    def counting(fd: int, msgs: int, vlen: int, flags: int) -> int:
        calls.append(vlen)
        return real(fd, msgs, vlen, flags)

    monkeypatch.setattr(_sendmmsg, "_function", counting)
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=10.0, batch=20, gso=False)
    try:
        for i in range(20):
            emitter.send(b'{"n":%d}' % i)
        received = [rx.recv(70000) for _ in range(20)]
    finally:
        emitter.close()
        rx.close()
    assert calls == [20]
    assert received == [HEADER + b'{"n":%d}' % i for i in range(20)]
    assert (emitter.sent, emitter.dropped) == (20, 0)


def test_failures_are_counted_and_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def always_full(fd: int, msgs: int, vlen: int, flags: int) -> int:
        ctypes.set_errno(errno.EAGAIN)
        return -1

    _real()  # looked up first, so the patch below stays in place
    monkeypatch.setattr(_sendmmsg, "_function", always_full)
    monkeypatch.setattr(_emitter._guard, "_seen", set())
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=10.0, batch=4, gso=False)
    try:
        with caplog.at_level(logging.WARNING, logger="k8sxray"):
            for i in range(8):
                emitter.send(b'{"n":%d}' % i)  # two full batches, every datagram refused
    finally:
        emitter.close()
        rx.close()
    assert (emitter.sent, emitter.dropped) == (0, 8)
    warnings = [r for r in caplog.records if "sending a segment" in r.getMessage()]
    assert len(warnings) == 1
    assert os.strerror(errno.EAGAIN) in warnings[0].getMessage()


@pytest.mark.parametrize("how", ["no symbol", "turned off"])
def test_without_sendmmsg_it_sends_datagram_by_datagram(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "no symbol":
        monkeypatch.setattr(_sendmmsg, "_function", None)
        monkeypatch.setattr(_sendmmsg, "_looked_up", True)
        assert _sendmmsg.batch(64) is None
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=10.0, batch=5, sendmmsg=how != "turned off", gso=False)
    try:
        for i in range(5):
            emitter.send(b'{"n":%d}' % i)
        received = [rx.recv(70000) for _ in range(5)]
        assert emitter._mmsg is None
    finally:
        emitter.close()
        rx.close()
    assert received == [HEADER + b'{"n":%d}' % i for i in range(5)]
    assert emitter.sent == 5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_headers_and_still_sends() -> None:
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=0.0)
    try:
        emitter.send(b'{"who":"parent"}')
        parent_batch = emitter._mmsg
        assert parent_batch is not None
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status, never return into pytest
            code = 1
            try:
                fresh = emitter._mmsg is None
                emitter.send(b'{"who":"child"}')
                code = 0 if fresh and emitter._mmsg is not None and emitter._mmsg is not parent_batch else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        received = [rx.recv(70000), rx.recv(70000)]
    finally:
        emitter.close()
        rx.close()
    assert os.waitstatus_to_exitcode(status) == 0
    assert received == [HEADER + b'{"who":"parent"}', HEADER + b'{"who":"child"}']
