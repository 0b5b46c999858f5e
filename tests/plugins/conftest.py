"""Fixtures: a real HTTPS "Kubernetes API" on 127.0.0.1:0 (trustme CA) and a service-account dir."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme
from _imds_fake import FakeImds
from _imds_fake import handler as imds_handler
from _kube_fake import TOKEN, FakeKubeAPI, handler


@pytest.fixture(scope="session")
def kube_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def kube_api(kube_ca: trustme.CA) -> Iterator[FakeKubeAPI]:
    api = FakeKubeAPI(port=0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(api))
    server.daemon_threads = True
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    kube_ca.issue_cert("127.0.0.1", "kubernetes.default.svc").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def service_account(tmp_path: Path, kube_ca: trustme.CA) -> Path:
    """A service-account directory as the kubelet mounts it: token, ca.crt, namespace."""
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text(TOKEN)
    kube_ca.cert_pem.write_to_path(str(directory / "ca.crt"))
    (directory / "namespace").write_text("shop")
    return directory


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    fake = FakeImds()
    server = ThreadingHTTPServer(("127.0.0.1", 0), imds_handler(fake))
    server.daemon_threads = True
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
