"""A small HTTP server run in a daemon thread: the shared life cycle of the proxy and ops endpoints."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


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
