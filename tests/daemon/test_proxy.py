"""The sampling proxy against a real fake X-Ray HTTP server on loopback."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k8sxray.daemon.proxy import MAX_BODY, SamplingProxy

ACCESS_KEY, SECRET_KEY, TOKEN = "AKIDEXAMPLETEST", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "tok/en+="
REGION = "eu-west-1"

RULES = {
    "SamplingRuleRecords": [
        {
            "SamplingRule": {
                "RuleName": "checkout",
                "RuleARN": "arn:aws:xray:eu-west-1:123456789012:sampling-rule/checkout",
                "ResourceARN": "*",
                "Priority": 10,
                "FixedRate": 0.25,
                "ReservoirSize": 3,
                "ServiceName": "shop",
                "ServiceType": "*",
                "Host": "*",
                "HTTPMethod": "POST",
                "URLPath": "/checkout",
                "Version": 1,
                "Attributes": {},
            },
            "CreatedAt": 1700000000.0,
            "ModifiedAt": 1700000000.0,
        }
    ]
}
TARGETS = {
    "SamplingTargetDocuments": [
        {
            "RuleName": "checkout",
            "FixedRate": 0.5,
            "ReservoirQuota": 7,
            "ReservoirQuotaTTL": 1900000000.0,
            "Interval": 10,
        }
    ],
    "LastRuleModification": 1700000000.0,
    "UnprocessedStatistics": [],
}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeXRay:
    """A real HTTP server that answers like X-Ray's sampling API and records every request."""

    seen: list[Seen] = field(default_factory=list)
    delay: float = 0.0
    status: int = 200
    server: ThreadingHTTPServer | None = None

    scheme: str = "http"

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"


def _fake_handler(fake: FakeXRay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            fake.seen.append(Seen("POST", self.path, dict(self.headers.items()), body))
            if fake.delay:
                time.sleep(fake.delay)
            if fake.status != 200:
                payload, extra = {"message": "nope"}, {"x-amzn-ErrorType": "ThrottledException"}
            elif self.path.endswith("/GetSamplingRules"):
                payload, extra = RULES, {}
            elif self.path.endswith("/SamplingTargets"):
                payload, extra = TARGETS, {}
            else:
                payload, extra = {"unexpected": self.path}, {}
            data = json.dumps(payload).encode()
            self.send_response(fake.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("x-amzn-RequestId", "req-1")
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients of the fuzz test hang up early; that is expected


@pytest.fixture
def fake() -> Iterator[FakeXRay]:
    fake = FakeXRay()
    fake.server = _QuietServer(("127.0.0.1", 0), _fake_handler(fake))
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join(5)


def _session() -> botocore.session.Session:
    session = botocore.session.Session()
    session.set_credentials(ACCESS_KEY, SECRET_KEY, TOKEN)
    return session


@pytest.fixture
def proxy_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in (
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
        "AWS_CA_BUNDLE",
    ):
        monkeypatch.delenv(name, raising=False)
    started: list[SamplingProxy] = []

    def make(endpoint_url: str, **kwargs: Any) -> SamplingProxy:
        kwargs.setdefault("session", _session())
        proxy = SamplingProxy(("127.0.0.1", 0), region=REGION, endpoint_url=endpoint_url, **kwargs)
        proxy.start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.close()


def _call(
    proxy: SamplingProxy, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*proxy.address, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _verify_sigv4(seen: Seen, token: str | None = TOKEN) -> None:
    """Recomputes the signature of what arrived upstream with botocore's signer; raises if it differs."""
    algorithm, _, rest = seen.headers["Authorization"].partition(" ")
    assert algorithm == "AWS4-HMAC-SHA256"
    parts = dict(item.strip().split("=", 1) for item in rest.split(","))
    signed = parts["SignedHeaders"].split(";")
    headers = {name: seen.headers[next(k for k in seen.headers if k.lower() == name)] for name in signed}
    request = AWSRequest(
        method=seen.method,
        url=f"http://{headers['host']}{seen.path}",
        data=seen.body,
        headers={k: v for k, v in headers.items() if k != "host"},
    )
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, token), "xray", REGION)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    assert parts["Signature"] == expected


def test_forwards_get_sampling_rules_signed_for_xray(fake: FakeXRay, proxy_for: Any) -> None:
    proxy = proxy_for(fake.url)
    status, headers, body = _call(
        proxy,
        "POST",
        "/GetSamplingRules",
        b"{}",
        {"Content-Type": "application/json", "Authorization": "client's own"},
    )
    assert status == 200
    assert json.loads(body) == RULES
    assert headers["x-amzn-RequestId"] == "req-1"
    [seen] = fake.seen
    assert seen.path == "/GetSamplingRules"
    assert seen.body == b"{}"
    credential = seen.headers["Authorization"].split("Credential=")[1].split(",")[0]
    assert credential.startswith(f"{ACCESS_KEY}/")
    assert credential.endswith(f"/{REGION}/xray/aws4_request")
    assert seen.headers["X-Amz-Security-Token"] == TOKEN
    _verify_sigv4(seen)


def test_signature_check_catches_tampering(fake: FakeXRay, proxy_for: Any) -> None:
    proxy = proxy_for(fake.url)
    assert _call(proxy, "POST", "/SamplingTargets", b'{"SamplingStatisticsDocuments": []}')[0] == 200
    [seen] = fake.seen
    seen.body = b'{"SamplingStatisticsDocuments": [1]}'
    with pytest.raises(AssertionError):
        _verify_sigv4(seen)


def test_official_sdk_centralized_sampling_works_through_the_proxy(fake: FakeXRay, proxy_for: Any) -> None:
    from aws_xray_sdk.core.daemon_config import DaemonConfig
    from aws_xray_sdk.core.sampling.connector import ServiceConnector

    proxy = proxy_for(fake.url)
    host, port = proxy.address
    config = DaemonConfig(f"tcp:{host}:{port} udp:127.0.0.1:2000")
    connector = ServiceConnector()
    connector.setup_xray_client(ip=config.tcp_ip, port=config.tcp_port, client=None)

    rules = connector.fetch_sampling_rules()
    assert [(r.name, r.rate, r.priority, r.can_borrow) for r in rules] == [("checkout", 0.25, 10, True)]
    targets, last_modified = connector.fetch_sampling_target(rules)
    assert targets["checkout"]["rate"] == 0.5
    assert targets["checkout"]["quota"] == 7
    assert last_modified == 1700000000

    assert [s.path for s in fake.seen] == ["/GetSamplingRules", "/SamplingTargets"]
    assert json.loads(fake.seen[1].body)["SamplingStatisticsDocuments"][0]["RuleName"] == "checkout"
    for seen in fake.seen:
        _verify_sigv4(seen)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/TraceSegments", 404),
        ("POST", "/TelemetryRecords", 404),
        ("POST", "/GetSamplingRules/../TraceSegments", 404),
        ("POST", "/GetSamplingRules?x=1", 404),
        ("POST", "http://evil.example/GetSamplingRules", 404),
        ("POST", "/", 404),
        ("GET", "/GetSamplingRules", 405),
        ("PUT", "/SamplingTargets", 405),
        ("DELETE", "/anything", 404),
        ("CONNECT", "xray.eu-west-1.amazonaws.com:443", 403),
    ],
)
def test_refuses_everything_but_the_two_sampling_calls(
    fake: FakeXRay, proxy_for: Any, method: str, path: str, expected: int
) -> None:
    proxy = proxy_for(fake.url)
    status, headers, body = _call(proxy, method, path, b'{"TraceSegmentDocuments": []}')
    assert status == expected
    assert "message" in json.loads(body)
    assert headers["Connection"] == "close"
    assert fake.seen == []


def test_oversized_body_is_refused_unread(fake: FakeXRay, proxy_for: Any) -> None:
    proxy = proxy_for(fake.url)
    # Only the head and a little of the body: the proxy must refuse on Content-Length alone. (A
    # client writing the whole body races the proxy's close and may see a broken pipe instead.)
    head = b"POST /SamplingTargets HTTP/1.1\r\nHost: proxy\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
    answer = _exchange(proxy.address, head + b"x" * 1000)
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"413"
    assert fake.seen == []
    assert _call(proxy, "POST", "/SamplingTargets", b"x" * 1000)[0] == 200


def test_malformed_requests_get_400_and_the_proxy_keeps_serving(fake: FakeXRay, proxy_for: Any) -> None:
    proxy = proxy_for(fake.url)
    for raw in (
        b"garbage\r\n\r\n",
        b"POST /GetSamplingRules HTTP/1.1\r\nContent-Length: -4\r\n\r\n",
        b"POST /GetSamplingRules HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /GetSamplingRules HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ):
        answer = _exchange(proxy.address, raw)
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.split(b" ")[1] in (b"400", b"411"), status_line
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["message"]
    assert fake.seen == []
    assert _call(proxy, "POST", "/GetSamplingRules", b"{}")[0] == 200


def test_upstream_down_is_a_502(proxy_for: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proxy = proxy_for(f"http://127.0.0.1:{port}")
    status, _, body = _call(proxy, "POST", "/GetSamplingRules", b"{}")
    assert status == 502
    assert "reach X-Ray" in json.loads(body)["message"]


def test_slow_upstream_is_a_504(fake: FakeXRay, proxy_for: Any) -> None:
    fake.delay = 1.0
    proxy = proxy_for(fake.url, timeout=0.2)
    started = time.monotonic()
    status, _, body = _call(proxy, "POST", "/SamplingTargets", b"{}")
    assert status == 504
    assert time.monotonic() - started < 0.9
    assert "in time" in json.loads(body)["message"]


def test_upstream_errors_are_relayed_so_sdks_see_the_error_code(fake: FakeXRay, proxy_for: Any) -> None:
    fake.status = 429
    proxy = proxy_for(fake.url)
    status, headers, body = _call(proxy, "POST", "/GetSamplingRules", b"{}")
    assert status == 429
    assert headers["x-amzn-ErrorType"] == "ThrottledException"
    assert json.loads(body) == {"message": "nope"}


def test_no_credentials_is_a_502_and_nothing_is_sent(
    fake: FakeXRay, proxy_for: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    proxy = proxy_for(fake.url, session=botocore.session.Session())
    status, _, body = _call(proxy, "POST", "/GetSamplingRules", b"{}")
    assert status == 502
    assert "credentials" in json.loads(body)["message"]
    assert fake.seen == []


def test_proxy_address_is_used_for_upstream_calls(fake: FakeXRay, proxy_for: Any) -> None:
    # The fake server plays the HTTP proxy: a proxied request carries the absolute URL.
    proxy = proxy_for("http://xray.example.invalid:8080", proxy_address=fake.url.removeprefix("http://"))
    assert _call(proxy, "POST", "/GetSamplingRules", b"{}")[0] == 200
    [seen] = fake.seen
    assert seen.path == "http://xray.example.invalid:8080/GetSamplingRules"


def test_http_proxy_env_is_honoured_and_no_proxy_bypasses_it(
    fake: FakeXRay, proxy_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", fake.url)
    proxy = proxy_for("http://xray.example.invalid:8080")
    assert _call(proxy, "POST", "/GetSamplingRules", b"{}")[0] == 200
    assert fake.seen[0].path == "http://xray.example.invalid:8080/GetSamplingRules"

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = proxy_for(fake.url)
    assert _call(direct, "POST", "/SamplingTargets", b"{}")[0] == 200
    assert fake.seen[1].path == "/SamplingTargets"


def _exchange(address: tuple[str, int], data: bytes) -> bytes:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while len(chunks) < 100:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


_REQUEST_PIECES = st.sampled_from(
    [
        b"POST ",
        b"GET ",
        b"/GetSamplingRules",
        b"/SamplingTargets",
        b" HTTP/1.1\r\n",
        b" HTTP/1.0\r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: 99999999999\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Expect: 100-continue\r\n",
        b"\r\n",
        b"{}",
        b"\x00\xff",
        b" ",
        b":",
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300), st.lists(_REQUEST_PIECES, max_size=12).map(b"".join)))
def test_fuzz_arbitrary_bytes_never_break_the_proxy(fake: FakeXRay, data: bytes) -> None:
    proxy = _FUZZ_PROXY.get(fake.url)
    answer = _exchange(proxy.address, data)
    assert answer == b"" or answer.startswith(b"HTTP/1.")
    assert b" 500 " not in answer.split(b"\r\n", 1)[0]
    valid = b"POST /GetSamplingRules HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    assert _exchange(proxy.address, valid).startswith(b"HTTP/1.1 200 ")
    assert all(s.path in ("/GetSamplingRules", "/SamplingTargets") for s in fake.seen)


class _ProxyPerUpstream:
    """One proxy per fake upstream, reused across hypothesis examples (closed at module teardown)."""

    def __init__(self) -> None:
        self.proxies: dict[str, SamplingProxy] = {}

    def get(self, url: str) -> SamplingProxy:
        if url not in self.proxies:
            self.proxies[url] = SamplingProxy(("127.0.0.1", 0), _session(), REGION, endpoint_url=url)
            self.proxies[url].start()
        return self.proxies[url]

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.close()
        self.proxies.clear()


_FUZZ_PROXY = _ProxyPerUpstream()


@pytest.fixture(autouse=True, scope="module")
def _close_fuzz_proxies() -> Iterator[None]:
    yield
    _FUZZ_PROXY.close()


def test_connections_beyond_the_limit_are_closed_at_once(
    fake: FakeXRay, proxy_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import k8sxray.daemon.proxy as proxy_module

    monkeypatch.setattr(proxy_module, "MAX_CONNECTIONS", 3)
    proxy = proxy_for(fake.url)
    idle = [socket.create_connection(proxy.address, timeout=5) for _ in range(3)]
    try:
        time.sleep(0.1)  # let the server accept the three idle connections
        with socket.create_connection(proxy.address, timeout=5) as extra:
            assert extra.recv(100) == b""  # closed at once, before any request is read
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if _call(proxy, "POST", "/GetSamplingRules", b"{}")[0] == 200:
                break
        except (http.client.HTTPException, OSError):
            pass  # still at the limit for a moment
        time.sleep(0.05)
    else:
        raise AssertionError("the proxy did not recover after idle connections closed")
    assert [s.path for s in fake.seen][-1] == "/GetSamplingRules"


@pytest.fixture
def tls_fake(tmp_path: Any) -> Iterator[tuple[FakeXRay, str]]:
    """The fake X-Ray over HTTPS with a certificate from a throwaway CA; yields it and the CA's PEM path."""
    import ssl

    import trustme

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    fake = FakeXRay(scheme="https")
    fake.server = _QuietServer(("127.0.0.1", 0), _fake_handler(fake))
    fake.server.socket = context.wrap_socket(fake.server.socket, server_side=True)
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake, str(ca_path)
    fake.server.shutdown()
    fake.server.server_close()
    thread.join(5)


def test_https_upstream_verified_with_the_sessions_ca_bundle(
    tls_fake: tuple[FakeXRay, str], proxy_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, ca_path = tls_fake
    untrusting = proxy_for(fake.url)
    assert _call(untrusting, "POST", "/GetSamplingRules", b"{}")[0] == 502  # unknown CA: refused
    assert fake.seen == []

    monkeypatch.setenv("AWS_CA_BUNDLE", ca_path)
    trusting = proxy_for(fake.url)
    status, _, body = _call(trusting, "POST", "/GetSamplingRules", b"{}")
    assert status == 200
    assert json.loads(body) == RULES
    _verify_sigv4(fake.seen[0])


def test_verify_ssl_false_skips_certificate_checks(tls_fake: tuple[FakeXRay, str], proxy_for: Any) -> None:
    fake, _ = tls_fake
    proxy = proxy_for(fake.url, verify_ssl=False)
    assert _call(proxy, "POST", "/SamplingTargets", b"{}")[0] == 200
    assert [s.path for s in fake.seen] == ["/SamplingTargets"]


def test_keep_alive_calls_do_not_stall_on_delayed_acks(fake: FakeXRay, proxy_for: Any) -> None:
    # With Nagle's algorithm on, each answer (headers, then body) waits ~40 ms for the client's ACK.
    proxy = proxy_for(fake.url)
    conn = http.client.HTTPConnection(*proxy.address, timeout=5)
    durations = []
    try:
        for _ in range(9):
            started = time.perf_counter()
            conn.request("POST", "/SamplingTargets", body=b"{}")
            response = conn.getresponse()
            response.read()
            durations.append(time.perf_counter() - started)
            assert response.status == 200
    finally:
        conn.close()
    assert sorted(durations)[4] < 0.03, durations
