"""The xray sink against a local PutTraceSegments endpoint; the stdout sink."""

from __future__ import annotations

import datetime
import errno
import io
import json
import os
from collections.abc import Iterator
from typing import Any

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from daemon_helpers import FakeXRay, free_tcp_port, segment

from k8sxray.daemon.sinks import SendResult
from k8sxray.daemon.sinks._http import proxy_for
from k8sxray.daemon.sinks.stdout import StdoutSink
from k8sxray.daemon.sinks.xray import (
    XRaySink,
    _Request,
    _Signer,
    encode_batch,
    endpoint_for,
    is_retryable_code,
)

CREDS = Credentials("AKIDTEST", "secret")


_OPEN: list[XRaySink] = []


def _sink(url: str, **options: Any) -> XRaySink:
    sink = XRaySink(lambda: CREDS, "us-east-1", url, **options)
    _OPEN.append(sink)
    return sink


@pytest.fixture(autouse=True)
def _close_sinks() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture
def sink(fake_xray: FakeXRay) -> XRaySink:
    return _sink(fake_xray.url, timeout=0.5)


def test_body_carries_documents_unchanged() -> None:
    docs = [b'{"a": "q\\"uote", \n "b": "caf\xc3\xa9"}', b"{}", b'{"bad utf8": "\xff"}']
    decoded = json.loads(encode_batch(docs))["TraceSegmentDocuments"]
    assert decoded[:2] == [docs[0].decode(), "{}"]
    assert decoded[2] == '{"bad utf8": "\ufffd"}'


def test_body_escapes_what_json_requires() -> None:
    docs = [
        b'{"s": "back\\\\slash \\"q\\" \\u0000"}',
        b'{"raw": "\t\x01\x1f\x7f", "u": "\xe2\x82\xac\xf0\x9f\x98\x80"}',
    ]
    body = encode_batch(docs)
    assert json.loads(body)["TraceSegmentDocuments"] == [d.decode() for d in docs]
    assert b"\x01" not in body  # control characters are escaped
    assert b"\t" not in body


@pytest.mark.parametrize("token", [None, "session-token"])
def test_signature_is_botocores(token: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://xray.us-east-1.amazonaws.com/TraceSegments"
    body = encode_batch([segment(1), segment(2)])
    cache: list[Any] = []
    moments = [datetime.datetime(2026, 1, 2, 23, 59, 59), datetime.datetime(2026, 1, 3, 0, 0, 1)]
    for secret, now in [("secret", moments[0]), ("secret", moments[1]), ("rotated", moments[1])]:
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda now=now: now)
        creds = Credentials("AKIDTEST", secret, token)
        plain = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(creds, "xray", "us-east-1").add_auth(plain)
        headers = {"Content-Type": "application/json", "Host": "xray.us-east-1.amazonaws.com"}
        ours = _Request(url, body, headers)
        _Signer(creds, "us-east-1", cache).add_auth(ours)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            assert ours.headers.get(name) == plain.headers.get(name), name
    assert len(cache) == 1  # one signing key kept: the latest


def test_delivery_reuses_one_connection(fake_xray: FakeXRay, sink: XRaySink) -> None:
    for n in range(3):
        assert sink.send([segment(n * 10 + i) for i in range(10)]) == SendResult()
    assert len(fake_xray.ids()) == 30
    assert len(sink._pool._idle) == 1
    host = fake_xray.url.split("://", 1)[1]
    assert fake_xray.host_headers == [[host]] * 3  # exactly one Host header, the signed one


def test_a_refused_batch_is_split_to_keep_the_good_documents(fake_xray: FakeXRay, sink: XRaySink) -> None:
    poison = b'{"id": "poison", "name": '

    def behaviour(docs: list[str]) -> tuple[int, dict[str, Any], float]:
        if any('"poison"' in d for d in docs):
            return 400, {"__type": "InvalidRequestException", "message": "bad document"}, 0.0
        return 200, {"UnprocessedTraceSegments": []}, 0.0

    fake_xray.behaviour = behaviour
    batch = [segment(i) for i in range(20)]
    batch.insert(7, poison + b"}")
    result = sink.send(batch)
    assert result.rejected == {"InvalidRequestException": 1}
    assert result.retry == ()
    assert result.delivered(len(batch)) == 20
    assert fake_xray.ids() == {f"{i:016x}" for i in range(20)}


def test_unprocessed_segments_map_back_by_id(fake_xray: FakeXRay, sink: XRaySink) -> None:
    fake_xray.behaviour = lambda docs: (
        200,
        {
            "UnprocessedTraceSegments": [
                {"Id": f"{3:016x}", "ErrorCode": "ThrottledException", "Message": "later"},
                {"Id": f"{5:016x}", "ErrorCode": "InvalidTraceId", "Message": "never"},
                {"Id": "not-in-batch", "ErrorCode": "Odd"},
            ]
        },
        0.0,
    )
    result = sink.send([segment(i) for i in range(8)])
    assert result.retry == (3,)
    assert result.rejected == {"InvalidTraceId": 1, "UnknownSegmentId": 1}


@pytest.mark.parametrize(
    "case",
    [
        (500, "InternalFailure", "HTTPCode5XX", True),
        (503, "ServiceUnavailableException", "HTTPCode5XX", True),
        (429, "TooManyRequests", "HTTPCode4XX", True),
        (400, "ThrottlingException", "HTTPCode4XX", True),
        (403, "ExpiredTokenException", "HTTPCode4XX", True),
        (403, "AccessDeniedException", "HTTPCode4XX", False),
    ],
)
def test_http_errors(fake_xray: FakeXRay, sink: XRaySink, case: tuple[int, str, str, bool]) -> None:
    status, code, error, retried = case
    fake_xray.behaviour = lambda docs: (status, {"__type": code}, 0.0)
    result = sink.send([segment(1)])
    assert result.error == error
    assert result.detail == f"HTTP {status} {code}"
    assert (result.retry == (0,)) is retried
    assert (result.rejected == {code: 1}) is (not retried)


def test_connection_refused_and_timeout(fake_xray: FakeXRay, sink: XRaySink) -> None:
    refused = _sink(f"http://127.0.0.1:{free_tcp_port()}")
    result = refused.send([segment(1)])
    assert (result.error, result.retry) == ("ConnectionRefused", (0,))
    fake_xray.behaviour = lambda docs: (200, {}, 1.0)
    result = sink.send([segment(2), segment(3)])
    assert (result.error, result.retry) == ("Timeout", (0, 1))


def test_missing_credentials_keep_the_data(fake_xray: FakeXRay) -> None:
    sink = XRaySink(lambda: None, "us-east-1", fake_xray.url)
    _OPEN.append(sink)
    result = sink.send([segment(1)])
    assert (result.error, result.retry) == ("Other", (0,))
    assert fake_xray.calls == 0


def test_http_proxy_and_no_proxy(fake_xray: FakeXRay, monkeypatch: pytest.MonkeyPatch) -> None:
    # the fake endpoint doubles as a plain HTTP proxy: it receives the absolute URL
    paths: list[str] = []
    via = _sink("http://xray.example.invalid:8080", proxy=f"127.0.0.1:{fake_xray.port}")
    handler = fake_xray.server.RequestHandlerClass
    original_post = handler.do_POST  # type: ignore[attr-defined]

    def do_post(self: Any) -> None:
        paths.append(self.path)
        if self.path.startswith("http://xray.example.invalid:8080/"):
            self.path = "/TraceSegments"
        original_post(self)

    monkeypatch.setattr(handler, "do_POST", do_post)
    assert via.send([segment(1)]) == SendResult()
    assert paths == ["http://xray.example.invalid:8080/TraceSegments"]

    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_tcp_port()}")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert proxy_for(fake_xray.url, None) is None
    assert proxy_for("http://xray.example.invalid/", None) == os.environ["HTTP_PROXY"]
    assert _sink(fake_xray.url).send([segment(2)]) == SendResult()
    assert paths[-1] == "/TraceSegments"


def test_helpers() -> None:
    assert endpoint_for("eu-west-1") == "https://xray.eu-west-1.amazonaws.com"
    assert endpoint_for("cn-north-1") == "https://xray.cn-north-1.amazonaws.com.cn"
    assert is_retryable_code("ThrottledException")
    assert not is_retryable_code("InvalidTraceId")
    assert proxy_for("https://x", "proxy:3128") == "http://proxy:3128"


def test_stdout_sink_writes_one_json_line_per_document() -> None:
    stream = io.BytesIO()
    sink = StdoutSink(stream)
    assert sink.send([b'{"a": 1}', b'{\n  "b": 2\r\n}']) == SendResult()
    lines = stream.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [{"a": 1}, {"b": 2}]
    stream.close()
    result = sink.send([b"{}"])
    assert (result.closed, result.retry) == (True, ())  # nothing written later could be read
    assert sink.send([b"{}"]).closed


def test_stdout_sink_on_a_broken_pipe_says_closed_once_and_for_all() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "wb", buffering=0) as stream:
        sink = StdoutSink(stream)
        result = sink.send([b"{}"])
        assert result.closed
        assert "Broken pipe" in result.detail
        sink.close()  # points the descriptor at /dev/null: a later flush cannot fail
        stream.write(b"lost\n")


class _Full(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_stdout_sink_retries_other_write_errors() -> None:
    result = StdoutSink(_Full()).send([b"{}", b"{}"])  # type: ignore[arg-type]
    assert (result.closed, result.retry) == (False, (0, 1))
