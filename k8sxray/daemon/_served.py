"""Small HTTP servers run in daemon threads: the life cycle and the plumbing that the sampling port,
the ops endpoint and the OTLP receiver share."""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


class QuietServer(ThreadingHTTPServer):
    """A threading server on IPv4 or IPv6 (by the bind address) whose per-connection errors are
    logged at debug, naming the service (``label``), never printed."""

    daemon_threads = True
    block_on_close = False
    label = "http"

    def __init__(self, bind: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in bind[0] else socket.AF_INET
        super().__init__(bind, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver calls this inside its except block
        log.debug("%s: error serving %s", self.label, client_address, exc_info=True)  # noqa: LOG014


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, Nagle off (headers and body go out as two writes: no 40 ms delayed-ACK stall), no
    version banner beyond ``server_version``, access lines at debug under the server's label."""

    protocol_version = "HTTP/1.1"
    server_version = "k8sxray-daemon"
    sys_version = ""
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        label = getattr(self.server, "label", "http")
        log.debug("%s: %s - %s", label, self.address_string(), format % args)


class Served:
    """Owns one ``ThreadingHTTPServer`` and the thread serving it."""

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); only valid after ``start()``."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        host, port = self._server.server_address[:2]
        return (str(host), int(port))

    def _serve(self, server: ThreadingHTTPServer, name: str) -> None:
        """Serve *server* in a daemon thread named *name*."""
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True
        )
        self._thread.start()

    def _stop(self) -> bool:
        """Stop serving and close the socket; ``False`` when it was not running."""
        server, self._server = self._server, None
        if server is None:
            return False
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        return True
