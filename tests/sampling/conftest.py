"""A real HTTP server on 127.0.0.1:0 answering the daemon's sampling calls like X-Ray."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class FakeXRay:
    """Records every request; answers from ``pages`` (GetSamplingRules) and ``targets``.

    ``mode``: ``"ok"``, ``"500"``, ``"garbage"`` (not JSON) or ``"wrong"`` (JSON of the wrong shape).
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        self.pages: dict[str | None, dict[str, Any]] = {None: {"SamplingRuleRecords": []}}
        self.targets: dict[str, Any] = {"SamplingTargetDocuments": [], "LastRuleModification": 0}
        self.mode = "ok"
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                with fake.lock:
                    fake.requests.append((self.path, body))
                    mode = fake.mode
                    if self.path == "/GetSamplingRules":
                        token = body.get("NextToken") if isinstance(body, dict) else None
                        answer: Any = fake.pages.get(token, {"SamplingRuleRecords": []})
                    elif self.path == "/SamplingTargets":
                        answer = fake.targets
                    else:
                        answer = None
                status = 200 if answer is not None else 404
                data = json.dumps(answer).encode()
                if mode == "500":
                    status, data = 500, b'{"message": "internal"}'
                elif mode == "garbage":
                    data = b"<html>not json"
                elif mode == "wrong":
                    data = b'{"Something": "else"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = ("127.0.0.1", self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    def calls(self, path: str) -> list[Any]:
        with self.lock:
            return [body for p, body in self.requests if p == path]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; requests so far: {self.requests}")
            time.sleep(0.01)


@pytest.fixture
def xray() -> Iterator[FakeXRay]:
    fake = FakeXRay()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        fake.thread.join(timeout=5)


RuleFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def make_rule() -> RuleFactory:
    return _rule


def _rule(name: str, priority: int, **fields: Any) -> dict[str, Any]:
    """One SamplingRuleRecord as X-Ray returns it."""
    definition = {
        "RuleName": name,
        "RuleARN": f"arn:aws:xray:us-east-1:123456789012:sampling-rule/{name}",
        "ResourceARN": "*",
        "Priority": priority,
        "FixedRate": 0.0,
        "ReservoirSize": 1,
        "ServiceName": "*",
        "ServiceType": "*",
        "Host": "*",
        "HTTPMethod": "*",
        "URLPath": "*",
        "Version": 1,
        "Attributes": {},
    }
    definition.update(fields)
    return {"SamplingRule": definition, "CreatedAt": 1.7e9, "ModifiedAt": 1.7e9}
