"""The demo's clients: a few requests a second to Service-A, spread over its endpoints.

Requests are sent at a steady rate from a small pool of threads (Service-B's delays make each one
take up to a third of a second), with plain ``urllib``: the clients are not traced, so their
requests start new traces at Service-A and appear as the map's ``client`` node.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

PATHS = ("/orders/{n}", "/prices/{n}")
TIMEOUT = 10.0


class Traffic:
    """Sends ``rate`` requests a second to ``base_url`` until :meth:`stop`."""

    def __init__(self, base_url: str, rate: float, *, workers: int = 16) -> None:
        if rate <= 0:
            raise ValueError(f"the traffic rate must be above 0 requests a second, not {rate}")
        self.base_url = base_url.rstrip("/")
        self.rate = rate
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="k8sxray-demo-client")
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
        self._thread = threading.Thread(target=self._run, name="k8sxray-demo-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = TIMEOUT) -> None:
        """Stops sending and waits (up to ``timeout``) for the requests in flight."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def summary(self) -> str:
        with self._lock:
            c = self.counts.copy()
        sent = sum(c.values())
        parts = [f"{c[k]} {k}" for k in ("ok", "4xx", "5xx", "failed") if c[k]]
        return f"{sent} request{'' if sent == 1 else 's'}" + (f" ({', '.join(parts)})" if parts else "")

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            path = random.choice(PATHS).format(n=random.randint(1, 100))
            self._pool.submit(self._one, self.base_url + path)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < -1.0:  # fell behind (a stopped laptop): do not send a burst to catch up
                next_at = time.monotonic()
            elif delay > 0:
                self._stop.wait(delay)

    def _one(self, url: str) -> None:
        if self._stop.is_set():
            return
        try:
            with self._opener.open(url, timeout=TIMEOUT) as answer:
                answer.read()
                status = answer.status
        except urllib.error.HTTPError as exc:
            exc.close()
            status = exc.code
        except OSError as exc:
            log.debug("demo client: %s failed: %s", url, exc)
            self._count("failed")
            return
        self._count("ok" if status < 400 else "4xx" if status < 500 else "5xx")

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1
