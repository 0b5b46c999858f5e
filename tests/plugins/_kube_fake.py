"""A fake Kubernetes API server: a real HTTPS server answering JSON the way the API server does."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

TOKEN = "eyJhbGciOiJSUzI1NiJ9.test-service-account-token.c2lnbmF0dXJl"


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0


@dataclass
class FakeKubeAPI:
    """Answers GETs from :attr:`routes` (path -> Route) the way the API server does; 404 otherwise."""

    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def json(self, path: str, obj: Any, status: int = 200, delay: float = 0.0) -> None:
        self.routes[path] = Route(status, json.dumps(obj).encode(), delay)

    def forbid(self, path: str, resource: str, name: str, namespace: str | None) -> None:
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        self.json(
            path,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f'{resource} "{name}" is forbidden: User "system:serviceaccount:shop:default" '
                f'cannot get resource "{resource}" in API group ""{where}',
                "reason": "Forbidden",
                "details": {"name": name, "kind": resource},
                "code": 403,
            },
            status=403,
        )


def handler(api: FakeKubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            api.requests.append((self.path, self.headers.get("Authorization")))
            route = api.routes.get(self.path)
            if route is None:
                body = json.dumps({"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
                route = Route(404, body.encode())
            if route.delay:
                api.release.wait(route.delay)  # bounded; released early at teardown
            self.send_response(route.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
