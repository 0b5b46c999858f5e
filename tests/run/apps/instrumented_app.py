"""A WSGI app that calls ``k8sxray.instrument()`` itself (served by plain gunicorn, no k8sxray-run)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import k8sxray


def _app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    pid = str(os.getpid())
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", pid)])
    return [pid.encode()]


app = k8sxray.instrument(_app)
