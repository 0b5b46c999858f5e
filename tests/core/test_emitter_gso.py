"""UDP segmentation offload: many datagrams per send, each arriving whole and in its own datagram."""

from __future__ import annotations

import json
import random
import socket
import sys

import pytest

from k8sxray import _gso
from k8sxray._emitter import UDPEmitter
from k8sxray._protocol import HEADER

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="UDP_SEGMENT is Linux only")

SO_NO_CHECK = 11  # a socket without UDP checksums: the kernel refuses GSO on it (EINVAL)


def _receiver() -> socket.socket:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    return rx


def _documents(count: int, seed: int = 7) -> list[bytes]:
    sizes = random.Random(seed).choices([20, 300, 310, 333, 420, 421, 900, 1400, 3000], k=count)
    return [b'{"n":%d,"pad":"%s"}' % (i, b"x" * size) for i, size in enumerate(sizes)]


def _receive(rx: socket.socket, count: int) -> list[bytes]:
    return [rx.recv(70000) for _ in range(count)]


def test_a_burst_of_mixed_sizes_arrives_datagram_by_datagram_padded_only_with_spaces() -> None:
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=10.0, batch=64)
    documents = _documents(200)
    try:
        for document in documents:
            emitter.send(document)
        emitter.flush()
        received = _receive(rx, 200)
    finally:
        emitter.close()
        rx.close()
    assert (emitter.sent, emitter.dropped) == (200, 0)
    assert emitter.gso_sends > 150  # most left in groups (a lone size of its own goes alone)
    bodies = []
    for datagram in received:
        assert datagram.startswith(HEADER)
        body = datagram[len(HEADER) :]
        assert body.rstrip(b" ") == body.rstrip()  # padding is spaces only, after the document
        bodies.append(body.rstrip(b" "))
    assert sorted(bodies) == sorted(documents)  # every document once, unchanged
    padded = [d for d in received if d.endswith(b" ")]
    assert padded, "mixed sizes share a send: the shorter ones are padded"
    assert all(len(d) - len(d.rstrip(b" ")) <= len(d) // 4 for d in padded)  # at most a quarter


def test_datagrams_larger_than_the_limit_are_left_to_the_caller() -> None:
    rx = _receiver()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname())
    small = [b"{%s}" % (b"a" * n) for n in (100, 90, 80, 99)]
    large = [b"{%s}" % (b"b" * 1500)]
    try:
        sent, failed, rest, usable = _gso.send(tx, small + large, limit=1000)
        received = _receive(rx, 4)
    finally:
        tx.close()
        rx.close()
    assert (sent, failed, rest, usable) == (4, [], large, True)
    assert sorted(d.rstrip(b" ") for d in received) == sorted(small)


def test_where_the_kernel_refuses_gso_the_emitter_falls_back_and_loses_nothing() -> None:
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=10.0, batch=10)
    documents = [b'{"n":%d}' % i for i in range(20)]
    try:
        sock = emitter._socket()
        assert sock is not None
        sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        for document in documents:
            emitter.send(document)
        received = _receive(rx, 20)
    finally:
        emitter.close()
        rx.close()
    assert (emitter.sent, emitter.dropped, emitter.gso_sends) == (20, 0, 0)
    assert received == [HEADER + d for d in documents]  # sendmmsg keeps the order
    assert emitter._gso_limit == 0  # and GSO is not tried again


def test_gso_can_be_turned_off() -> None:
    rx = _receiver()
    address = rx.getsockname()
    emitter = UDPEmitter(lambda: address, delay=10.0, batch=8, gso=False)
    try:
        for i in range(8):
            emitter.send(b'{"n":%d}' % i)
        received = _receive(rx, 8)
    finally:
        emitter.close()
        rx.close()
    assert received == [HEADER + b'{"n":%d}' % i for i in range(8)]
    assert emitter.gso_sends == 0


def test_the_limit_is_the_path_mtu_less_the_headers() -> None:
    rx = _receiver()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tx.connect(rx.getsockname())
        mtu = tx.getsockopt(socket.IPPROTO_IP, 14)  # IP_MTU
        assert _gso.max_datagram(tx) == mtu - 28
    finally:
        tx.close()
        rx.close()


@pytest.mark.parametrize(("setting", "padded"), [("true", True), ("false", False)])
def test_k8sxray_udp_gso_turns_it_on_and_off(setting: str, padded: bool) -> None:
    import k8sxray
    from k8sxray import _recorder

    rx = _receiver()
    host, port = rx.getsockname()
    environ = {"K8SXRAY_UDP_GSO": setting, "K8SXRAY_SAMPLING_RATE": "1", "K8SXRAY_PLUGINS": "none"}
    config = k8sxray.configure(service_name="gso", daemon_address=f"{host}:{port}", environ=environ)
    assert config.udp_gso is padded
    assert config.sources["udp_gso"].kind == "env"

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2")])  # type: ignore[operator]
        return [b"ok"]

    traced = k8sxray.instrument(app)
    emitter = _recorder.state().own_emitter
    try:
        with emitter._lock:  # on a slow machine the flusher could send the first one alone
            for path in ("/a", "/" + "b" * 40, "/" + "c" * 80):  # three sizes in one burst
                traced({"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "h"}, lambda *a: None)
        assert k8sxray.flush(1.0)
        received = _receive(rx, 3)
    finally:
        rx.close()
    urls = sorted(json.loads(d[len(HEADER) :])["http"]["request"]["url"] for d in received)
    assert [url[-1] for url in urls] == ["a", "b", "c"]
    assert any(d.endswith(b" ") for d in received) is padded
    assert emitter.gso_sends == (3 if padded else 0)
