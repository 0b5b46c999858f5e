"""End to end: SDK and raw datagrams -> the daemon (a subprocess) -> moto_server -> BatchGetTraces."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import boto3
import pytest
from daemon_helpers import AWS_ENV, HEADER, DaemonProcess, FakeXRay, segment
from moto.server import ThreadedMotoServer

from k8sxray._protocol import HEADER as LIBRARY_HEADER


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _documents(url: str, trace_ids: list[str], expected: int, timeout: float = 15.0) -> list[str]:
    client = boto3.client(
        "xray", endpoint_url=url, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    deadline = time.monotonic() + timeout
    while True:
        traces = client.batch_get_traces(TraceIds=trace_ids)["Traces"]
        docs = [s["Document"] for t in traces for s in t["Segments"]]
        if len(docs) >= expected or time.monotonic() > deadline:
            return docs
        time.sleep(0.1)


def test_official_sdk_segments_arrive_byte_identical(
    moto_url: str, start_daemon: Callable[..., DaemonProcess]
) -> None:
    from aws_xray_sdk.core.recorder import AWSXRayRecorder

    daemon = start_daemon(["--endpoint-url", moto_url, "-n", "us-east-1", "--no-telemetry"], AWS_ENV)
    recorder = AWSXRayRecorder()
    recorder.configure(
        daemon_address=f"127.0.0.1:{daemon.port}", sampling=False, context_missing="LOG_ERROR", plugins=()
    )
    sent: list[str] = []
    original = recorder.emitter.send_entity

    def capture(entity: object) -> None:
        sent.append(entity.serialize())  # type: ignore[attr-defined]
        original(entity)

    recorder.emitter.send_entity = capture
    trace_ids = []
    for i in range(3):
        segment = recorder.begin_segment(f"sdk-service-{i}")
        recorder.put_annotation("n", i)
        with recorder.in_subsegment("work"):
            pass
        recorder.end_segment()
        trace_ids.append(segment.trace_id)
    recorder.emitter._socket.close()
    docs = _documents(moto_url, trace_ids, expected=3)
    assert sorted(docs) == sorted(sent)
    assert daemon.stop() == 0


def test_raw_datagrams_in_k8sxray_format_arrive_byte_identical(
    moto_url: str, start_daemon: Callable[..., DaemonProcess]
) -> None:
    assert LIBRARY_HEADER == HEADER
    daemon = start_daemon(["--endpoint-url", moto_url, "-n", "us-east-1", "--no-telemetry"], AWS_ENV)
    trace = "1-5f000001-0000000000000000000000aa"
    docs = [
        # spacing, escapes, non-ASCII and a line break between tokens are forwarded exactly as sent
        '{"name": "raw", "id": "00000000000000a1", "trace_id": "TRACE", "start_time": 1.25, "end_time": 2}',
        '{"name":"café ☕","id":"00000000000000a2","trace_id":"TRACE","start_time":1,"end_time":2,'
        '\n "metadata":{"d":{"q":"a \\"quoted\\" \\\\ word"}}}',
    ]
    docs = [doc.replace("TRACE", trace) for doc in docs]
    for doc in docs:
        daemon.send(HEADER + doc.encode())
    got = _documents(moto_url, [trace], expected=2)
    assert sorted(got) == sorted(docs)
    assert daemon.stop() == 0
    assert daemon.summary()["sent"] == 2


def test_bad_datagrams_are_counted_not_shipped(
    moto_url: str, start_daemon: Callable[..., DaemonProcess]
) -> None:
    daemon = start_daemon(["--endpoint-url", moto_url, "-n", "us-east-1", "--no-telemetry"], AWS_ENV)
    trace = "1-5f000002-0000000000000000000000bb"
    good = json.dumps(
        {"name": "ok", "id": "00000000000000b1", "trace_id": trace, "start_time": 1, "end_time": 2}
    ).encode()
    for bad in (
        b"no header at all",
        b'{"format": "json", "version": 2}\n' + good,
        HEADER,
        HEADER + b"  \n",
        HEADER + b"[1, 2]",
        HEADER + b"not json",
    ):
        daemon.send(bad)
    daemon.send(HEADER + good)
    assert _documents(moto_url, [trace], expected=1) == [good.decode()]
    assert daemon.stop() == 0
    assert daemon.summary() == {"received": 1, "sent": 1, "rejected": 6, "dropped": 0, "refused": 0}
    assert "bad_header" in daemon.log


def test_role_arn_is_assumed_through_sts(
    moto_url: str, fake_xray: FakeXRay, start_daemon: Callable[..., DaemonProcess]
) -> None:
    env = {**AWS_ENV, "AWS_ENDPOINT_URL_STS": moto_url}
    daemon = start_daemon(
        [
            "--endpoint-url",
            fake_xray.url,
            "-n",
            "us-east-1",
            "--no-telemetry",
            "-r",
            "arn:aws:iam::123456789012:role/xray-writer",
        ],
        env,
    )
    daemon.send_docs([segment(i) for i in range(3)])
    fake_xray.wait_for(3)
    assert daemon.stop() == 0
    assert len(fake_xray.access_keys) == 1
    assert fake_xray.access_keys != {AWS_ENV["AWS_ACCESS_KEY_ID"]}  # the role's temporary key signed
