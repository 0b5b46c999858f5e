"""The receiver's checks, on a real UDP socket bound to a loopback port."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator

import pytest

from k8sxray._protocol import HEADER
from k8sxray.daemon.buffer import Buffer
from k8sxray.daemon.receiver import COMPACT_HEADER, Receiver, bind_udp, check_document, header_length
from k8sxray.daemon.stats import Stats


@pytest.mark.parametrize(
    ("datagram", "expected"),
    [
        (HEADER + b"{}", len(HEADER)),
        (COMPACT_HEADER + b"{}", len(COMPACT_HEADER)),
        (b'{ "version" : 1, "format" : "json" }\n{}', 37),
        (b'{"format": "json", "version": 2}\n{}', -1),
        (b'{"format": "xml", "version": 1}\n{}', -1),
        (b'{"format": "json", "version": 1}{}', -1),  # no newline
        (b"[]\n{}", -1),
        (b"\xff\xfe\n{}", -1),
        (b"", -1),
    ],
)
def test_header(datagram: bytes, expected: int) -> None:
    assert header_length(datagram, len(datagram)) == expected


def test_header_check_ignores_stale_bytes_past_the_datagram() -> None:
    buf = bytearray(HEADER + b"{}")
    assert header_length(buf, 5) == -1


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b'{"a": 1}', None),
        (b' \n{"a": 1}\n ', None),
        (b"", "empty"),
        (b" \r\n\t", "empty"),
        (b"[1]", "not_json"),
        (b'"text"', "not_json"),
        (b"{unclosed", "not_json"),
    ],
)
def test_document_check(doc: bytes, reason: str | None) -> None:
    assert check_document(doc) == reason


@pytest.fixture(params=[True, False], ids=["recvmmsg", "recv_into"])
def receiving(request: pytest.FixtureRequest) -> Iterator[tuple[Receiver, socket.socket, Buffer, Stats]]:
    buffer = Buffer(1 << 20)
    stats = Stats()
    sock = bind_udp(("127.0.0.1", 0), 1 << 20)
    receiver = Receiver(sock, buffer, stats, max_datagram=2000, batch_receive=request.param)
    receiver.start()
    if sys.platform == "linux":  # recvmmsg is used where the C library has it
        assert (receiver._reader is not None) is request.param
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield receiver, sender, buffer, stats
    receiver.stop()
    sender.close()


def _wait(stats: Stats, total: int) -> None:
    deadline = time.monotonic() + 5
    while stats.received + sum(stats.rejected.values()) < total:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_documents_are_forwarded_and_refusals_counted(
    receiving: tuple[Receiver, socket.socket, Buffer, Stats],
) -> None:
    receiver, sender, buffer, stats = receiving
    good = [
        HEADER + b'{"id": "1"}',
        COMPACT_HEADER + b'{"id":"2"}\n',
        HEADER + b'\t{"id": "\xc3\xa9"} ',
        COMPACT_HEADER + b'{"id":"3"}' + b" " * 40,  # padded by a segmentation-offload send
    ]
    bad = [b"nonsense", HEADER, HEADER + b"[]", HEADER + b"{" + b" " * 2000 + b"}", b'{"format":"json"}\n{}']
    for datagram in good + bad:
        sender.sendto(datagram, receiver.address)
    _wait(stats, len(good) + len(bad))
    # forwarded unchanged, but for trailing whitespace
    assert buffer.take(0.0) == [b'{"id": "1"}', b'{"id":"2"}', b'\t{"id": "\xc3\xa9"}', b'{"id":"3"}']
    assert stats.received == 4
    assert dict(stats.rejected) == {"bad_header": 2, "empty": 1, "not_json": 1, "too_large": 1}


def test_many_datagrams_in_one_drain_keep_their_order(
    receiving: tuple[Receiver, socket.socket, Buffer, Stats],
) -> None:
    receiver, sender, buffer, stats = receiving
    receiver.pause = 0.5  # let the kernel queue many datagrams, more than one recvmmsg call takes
    docs = [b'{"n": %d}' % i for i in range(150)]
    for i, doc in enumerate(docs):
        sender.sendto((HEADER if i % 3 else COMPACT_HEADER) + doc, receiver.address)
        if i == 100:
            sender.sendto(b"junk", receiver.address)
    _wait(stats, len(docs) + 1)
    taken: list[bytes] = []
    while batch := buffer.take(0.0):
        taken += batch
    assert taken == docs
    assert dict(stats.rejected) == {"bad_header": 1}


def test_full_buffer_drops_new_documents_and_counts_them() -> None:
    doc = b'{"pad": "' + b"x" * 200 + b'"}'
    buffer = Buffer(3 * (len(doc) + 48))
    stats = Stats()
    receiver = Receiver(bind_udp(("127.0.0.1", 0), 1 << 20), buffer, stats)
    receiver.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(5):
            sender.sendto(HEADER + doc, receiver.address)
        _wait(stats, 5)
        deadline = time.monotonic() + 5
        while stats.dropped["buffer_full"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    receiver.stop()
    assert len(buffer) == 3
    assert buffer.held_bytes == 3 * (len(doc) + 48)


def test_receive_buffer_is_enlarged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="k8sxray.daemon.receiver")
    sock = bind_udp(("127.0.0.1", 0), 4 << 20)
    try:
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    finally:
        sock.close()
    assert granted >= 1 << 20  # far above the usual 208 KiB default
    assert "asked for 4194304 bytes, kernel granted" in caplog.text
