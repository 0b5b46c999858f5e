"""A WSGI app for uWSGI that knows nothing of k8sxray: ``application`` and a ``create_app()`` factory.

Each response names the worker's pid (``X-Pid``), and so does the URL of its outgoing call.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    pid = str(os.getpid())
    requests.get(f"{os.environ['DOWNSTREAM']}/pid/{pid}", timeout=5)
    time.sleep(float(os.environ.get("APP_DELAY", "0")))
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", pid)])
    return [pid.encode()]


def create_app() -> Callable[..., Iterable[bytes]]:
    return application
