"""A uWSGI app with its own ``@postfork`` hook (uwsgidecorators): it answers 500 if the hook did not run."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from uwsgi_app import application as traced_app
from uwsgidecorators import postfork  # sets uwsgi.post_fork_hook when imported

_forked_in: list[int] = []


@postfork
def _remember_the_fork() -> None:
    _forked_in.append(os.getpid())


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if _forked_in != [os.getpid()]:
        start_response("500 Internal Server Error", [("X-Pid", str(os.getpid()))])
        return [b"the app's own post-fork hook did not run"]
    return traced_app(environ, start_response)
