"""With the official SDK's ``patch_all()`` active too: one header per request, a consistent trace.

``patch_all()`` cannot be undone, so each case runs in its own interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import http.server, json, sys, threading, time
    import boto3, httpx, requests
    from moto.server import ThreadedMotoServer
    from aws_xray_sdk.core import patch_all, xray_recorder
    import k8sxray
    from k8sxray import _autoinstrument, _recorder
    from k8sxray.testing import capture_segments

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get_all("X-Amzn-Trace-Id"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_port}/"

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=f"http://{host}:{port}",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    aws_headers = []
    sqs.meta.events.register(
        "before-send",
        lambda request, **_: aws_headers.append(
            [v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
             if k.lower() == "x-amzn-trace-id"]
        ),
    )

    k8sxray.configure(daemon_address="127.0.0.1:9", plugins=[], sampling_central=False)
    xray_recorder.configure(context_missing="IGNORE_ERROR")
    if sys.argv[1] == "sdk-first":
        patch_all()
    _autoinstrument.instrument_integrations()
    if sys.argv[1] == "sdk-last":
        patch_all()
    with capture_segments() as documents:
        segment = _recorder.start_request(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", "a", "GET", "/", time.time()
        )
        requests.get(url)
        with httpx.Client() as client:
            client.get(url)
        sqs.list_queues()
        _recorder.end_segment(segment)
    moto.stop()
    print(json.dumps({"seen": seen + aws_headers, "documents": documents}))
    """
)


def _ids(entity: dict[str, object]) -> set[str]:
    ids = set()
    for sub in entity.get("subsegments", []):  # type: ignore[attr-defined]
        ids.add(sub["id"])
        ids |= _ids(sub)
    return ids


@pytest.mark.parametrize("order", ["sdk-first", "sdk-last"])
def test_header_once_with_patch_all(order: str, tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY", "K8SXRAY"))}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, order],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    (segment,) = out["documents"]  # the SDK emitted nothing of its own
    assert len(out["seen"]) == 3  # requests, httpx, botocore
    ids = _ids(segment)
    assert len(ids) == 3  # one subsegment per call, never one from each tracer
    assert [sub["namespace"] for sub in segment["subsegments"]] == ["remote", "remote", "aws"]
    for headers in out["seen"]:
        assert len(headers) == 1  # never twice
        root, parent, sampled = headers[0].split(";")
        assert root == f"Root={segment['trace_id']}"
        assert parent.removeprefix("Parent=") in ids  # the downstream's parent is in our trace
        assert sampled == "Sampled=1"
