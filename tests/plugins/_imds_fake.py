"""A fake EC2 instance metadata service (IMDSv2) on 127.0.0.1: token PUT, then identity document."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

TOKEN = "AQAEAFake-imds-session-token=="
IDENTITY = {
    "accountId": "123456789012",
    "architecture": "x86_64",
    "availabilityZone": "eu-west-1b",
    "imageId": "ami-0abcdef1234567890",
    "instanceId": "i-0123456789abcdef0",
    "instanceType": "m6i.large",
    "pendingTime": "2026-11-20T08:15:02Z",
    "privateIp": "10.0.3.5",
    "region": "eu-west-1",
    "version": "2017-09-30",
}


@dataclass
class FakeImds:
    port: int = 0
    put_status: int = 200
    document: bytes = field(default_factory=lambda: json.dumps(IDENTITY).encode())
    delay: float = 0.0
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def handler(imds: FakeImds) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            imds.requests.append(("PUT", self.path, dict(self.headers)))
            if imds.delay:
                imds.release.wait(imds.delay)
            if self.path != "/latest/api/token" or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
                self._answer(400, b"")
            elif imds.put_status != 200:
                self._answer(imds.put_status, b"")
            else:
                self._answer(200, TOKEN.encode())

        def do_GET(self) -> None:
            imds.requests.append(("GET", self.path, dict(self.headers)))
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                self._answer(401, b"")
            elif self.path == "/latest/dynamic/instance-identity/document":
                self._answer(200, imds.document)
            else:
                self._answer(404, b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
