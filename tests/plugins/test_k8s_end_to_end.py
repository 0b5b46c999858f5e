"""An instrumented Flask app in a subprocess, with Downward API variables set, sends its segment to a
real UDP socket; the segment carries origin, aws.eks and the k8s metadata."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from _xray_schema import validate_segment

pytest.importorskip("flask")

FIXTURES = Path(__file__).parent / "fixtures"
HEADER = b'{"format": "json", "version": 1}\n'

APP = """
import sys
import k8sxray
from flask import Flask
from werkzeug.serving import make_server

app = Flask("checkout")

@app.get("/hello")
def hello():
    return "hi"

k8sxray.instrument(app)
server = make_server("127.0.0.1", 0, app)
print(server.server_port, flush=True)
server.handle_request()  # one request, then exit
assert k8sxray.flush(5.0)
"""


def _receive(sock: socket.socket, timeout: float) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    for _ in range(100):  # bounded
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            datagram = sock.recv(65535)
        except TimeoutError:
            break
        assert datagram.startswith(HEADER)
        documents.append(json.loads(datagram[len(HEADER) :]))
        if any("trace_id" in d and "parent_id" not in d for d in documents):
            break
    return documents


def test_segment_from_an_instrumented_app_carries_kubernetes_data(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_XRAY_", "K8SXRAY_", "KUBERNETES_", "POD_"))
        }
        env.update(
            {
                "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{port}",
                "AWS_XRAY_TRACING_NAME": "checkout",
                "K8SXRAY_SAMPLING_RATE": "1",
                "KUBERNETES_SERVICE_HOST": "127.0.0.1",  # the marker; the API path stays off
                "KUBERNETES_SERVICE_PORT": "443",
                "POD_NAME": "checkout-7d9f8b6c5d-x7k2p",
                "POD_NAMESPACE": "shop",
                "POD_UID": "8d1e2a9f-4b5c-4e0b-9a6e-1c2d3e4f5a6b",
                "POD_IP": "10.0.3.17",
                "NODE_NAME": "ip-10-0-3-5.eu-west-1.compute.internal",
                "CONTAINER_NAME": "app",
                "K8SXRAY_CLUSTER_NAME": "prod-eu",
                "K8SXRAY_PODINFO_DIR": str(FIXTURES / "podinfo"),
            }
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", APP],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "the app did not start within 30 s"
            app_port = int(proc.stdout.readline())
            with urllib.request.urlopen(f"http://127.0.0.1:{app_port}/hello", timeout=10) as response:
                assert response.status == 200
                assert response.read() == b"hi"
                assert response.headers["X-Amzn-Trace-Id"].startswith("Root=1-")
            _, stderr = proc.communicate(timeout=30)
            assert proc.returncode == 0, stderr
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
        documents = _receive(sock, 5.0)

    segments = [d for d in documents if "trace_id" in d and "parent_id" not in d]
    assert len(segments) == 1, documents
    segment = segments[0]
    assert segment["name"] == "checkout"
    assert segment["origin"] == "AWS::EKS::Container"
    eks = segment["aws"]["eks"]
    assert eks["pod"] == "checkout-7d9f8b6c5d-x7k2p"
    assert eks["cluster_name"] == "prod-eu"
    # The container id comes from this machine's /proc: present only when it runs in a container.
    assert set(eks) <= {"pod", "cluster_name", "container_id"}
    if "container_id" in eks:
        assert re.fullmatch(r"[0-9a-f]{64}", eks["container_id"])
    assert segment["aws"]["xray"]["sdk"] == "k8sxray"
    assert segment["metadata"]["k8s"] == {
        "namespace": "shop",
        "node": "ip-10-0-3-5.eu-west-1.compute.internal",
        "pod_uid": "8d1e2a9f-4b5c-4e0b-9a6e-1c2d3e4f5a6b",
        "pod_ip": "10.0.3.17",
        "container_name": "app",
        "workload": {"kind": "Deployment", "name": "checkout", "source": "pod-name"},
        "labels": {
            "app.kubernetes.io/name": "checkout",
            "app.kubernetes.io/version": "1.4.2",
            "app.kubernetes.io/component": "api",
            "app.kubernetes.io/part-of": "shop",
            "app": "checkout",
        },
    }
    assert segment["http"]["response"]["status"] == 200
    validate_segment(segment)
