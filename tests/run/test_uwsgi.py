"""`k8sxray-run uwsgi ...` as a real subprocess: a master and two preforked workers.

Each case serves ``apps/uwsgi_app.py`` through uWSGI's HTTP router, makes both workers
answer (each response names its pid), then stops sending requests and reads the segments
from a real UDP socket: every request's segment must arrive, promptly (the last ones are
partial batches, so they prove the emitter's flusher runs between requests), from every
worker, with ids that no other worker drew.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from .helpers import BIN, Receiver, free_port, get, k8sxray_lines

needs_uwsgi = pytest.mark.skipif(
    shutil.which("uwsgi", path=BIN + os.pathsep + os.environ.get("PATH", "")) is None,
    reason="the uwsgi command is not installed (pip install pyuwsgi)",
)

PROMPTLY = 2.0
"""Seconds within which every segment must arrive once requests stop (the flusher waits 5 ms)."""

OLD_UWSGI = os.environ.get("K8SXRAY_TEST_OLD_UWSGI", "")
"""Optional: an older uwsgi binary that runs no Python threads by default, such as 2.0.21
(``pip wheel --no-deps --no-binary uwsgi uwsgi==2.0.21``, unzip, ``uwsgi-2.0.21.data/scripts/uwsgi``)."""

CASES = {
    # the default: the app is loaded in the master, the workers are forked from it
    "wsgi-file": ["--wsgi-file", "uwsgi_app.py"],
    "wsgi-file-lazy-apps": ["--wsgi-file", "uwsgi_app.py", "--lazy-apps"],
    "enable-threads": ["--wsgi-file", "uwsgi_app.py", "--enable-threads"],
    "enable-threads-lazy-apps": ["--wsgi-file", "uwsgi_app.py", "--enable-threads", "--lazy-apps"],
    "module-factory": ["--module", "uwsgi_app:create_app()"],
    "module-lazy-apps": ["-w", "uwsgi_app", "--lazy-apps"],
    "py-call-uwsgi-fork-hooks": ["--wsgi-file", "uwsgi_app.py", "--py-call-uwsgi-fork-hooks"],
    "py-call-osafterfork": ["--wsgi-file", "uwsgi_app.py", "--py-call-osafterfork"],
    # the app sets its own uwsgi.post_fork_hook (uwsgidecorators' @postfork): both must run
    "app-postfork-hook": ["--wsgi-file", "uwsgi_postfork_app.py"],
}


def _command(uwsgi: str, port: int, args: list[str]) -> list[str]:
    """A master and two workers behind uWSGI's HTTP router on *port*."""
    return [
        *(uwsgi, "--http", f"127.0.0.1:{port}", "--master", "--processes", "2"),
        "--die-on-term",  # uWSGI 2.0 reloads on SIGTERM otherwise
        "--disable-logging",
        *args,
    ]


def _hit_until_two_workers(url: str) -> tuple[set[str], int]:
    """Concurrent GETs until two worker pids answered; (pids, requests made)."""
    pids: set[str] = set()
    made = 0
    with ThreadPoolExecutor(4) as pool:
        for _ in range(10):  # bounded: 10 rounds of 4 concurrent requests
            answers = list(pool.map(lambda _: get(url), range(4)))
            made += len(answers)
            assert {status for status, _, _ in answers} == {200}
            pids |= {pid for _, pid, _ in answers}
            if len(pids) >= 2:
                break
    return pids, made


def _worker_pid(segment: dict[str, Any]) -> str:
    (call,) = segment["subsegments"]
    match = re.search(r"/pid/(\d+)$", call["http"]["request"]["url"])
    assert match, call
    return match.group(1)


@needs_uwsgi
@pytest.mark.parametrize("args", CASES.values(), ids=CASES.keys())
def test_every_worker_emits_promptly(
    args: list[str], receiver: Receiver, downstream: Any, env: dict[str, str], launch: Any
) -> None:
    _serve_and_check("uwsgi", args, receiver, downstream, env, launch)


@pytest.mark.skipif(not OLD_UWSGI, reason="K8SXRAY_TEST_OLD_UWSGI (an older uwsgi binary) is not set")
@pytest.mark.parametrize("lazy", [[], ["--lazy-apps"]], ids=["", "lazy-apps"])
def test_without_python_threads(
    lazy: list[str], receiver: Receiver, downstream: Any, env: dict[str, str], launch: Any
) -> None:
    """An older uWSGI runs no Python thread between requests: each response sends its segment."""
    _serve_and_check(OLD_UWSGI, ["--wsgi-file", "uwsgi_app.py", *lazy], receiver, downstream, env, launch)


def _serve_and_check(  # noqa: PLR0917  # the test's fixtures, passed on
    uwsgi: str, args: list[str], receiver: Receiver, downstream: Any, env: dict[str, str], launch: Any
) -> None:
    port = free_port()
    env["APP_DELAY"] = "0.05"  # keeps a worker busy, so concurrent requests reach both
    app = launch(_command(uwsgi, port, args), env)
    pids, made = _hit_until_two_workers(f"http://127.0.0.1:{port}/")
    assert len(pids) == 2, app.stop()

    # no more requests: every segment, the last partial batch of each worker included, arrives now
    started = time.monotonic()
    documents = receiver.collect(lambda docs: len(docs) >= made, timeout=PROMPTLY)
    assert len(documents) == made, (time.monotonic() - started, app.stop())

    assert {_worker_pid(doc) for doc in documents} == pids  # segments from every worker
    assert len({doc["id"] for doc in documents}) == made  # no two workers drew the same ids
    assert len({doc["trace_id"] for doc in documents}) == made
    for segment in documents:
        assert segment["name"] == "zero-code"
        assert re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", segment["trace_id"])
        assert re.fullmatch(r"[0-9a-f]{16}", segment["id"])
        assert segment["start_time"] <= segment["end_time"]
        assert segment["http"]["request"]["method"] == "GET"
        assert segment["http"]["request"]["url"] == f"http://127.0.0.1:{port}/"
        assert segment["http"]["response"]["status"] == 200
        (call,) = segment["subsegments"]
        assert call["namespace"] == "remote"
        # the downstream got exactly one trace header, pointing at the call's subsegment
        expected = [f"Root={segment['trace_id']};Parent={call['id']};Sampled=1"]
        assert expected in [header for _, header in downstream.seen]
    errors = app.stop()
    assert k8sxray_lines(errors) == [], errors  # no warnings
    assert "Traceback" not in errors, errors


@needs_uwsgi
def test_an_active_trace_function_leaves_the_app_untraced_with_one_warning(
    tmp_path: Any, receiver: Receiver, downstream: Any, env: dict[str, str], launch: Any
) -> None:
    # a debugger or coverage owns sys.settrace: k8sxray does not take it over
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.settrace(lambda *args: None)\n")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    port = free_port()
    app = launch(_command("uwsgi", port, ["--wsgi-file", "uwsgi_app.py"]), env)
    assert get(f"http://127.0.0.1:{port}/")[0] == 200
    assert receiver.collect(bool, timeout=0.5) == []
    errors = app.stop()
    lines = [line for line in errors.splitlines() if "not traced" in line]
    assert lines == [
        "k8sxray-run: the uWSGI app is not traced: a trace function (debugger, coverage) is active"
    ], errors  # once: the master loads the app once
    assert "Traceback" not in errors, errors


def test_the_uwsgi_hooks_are_armed_only_when_pyuwsgi_is_imported() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY", "K8SXRAY"))}
    code = (
        "import sys, _frozen_importlib_external as external\n"
        "original = external._fix_up_module\n"
        "from k8sxray.run import _boot\n"
        "assert _boot.start()\n"
        "def armed():\n"
        "    finder = any(type(f).__name__ == '_ModuleFinder' for f in sys.meta_path)\n"
        "    return (external._fix_up_module is not original, finder)\n"
        "print(armed())\n"
        "import pyuwsgi\n"
        "print(armed())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=30
    )
    if "No module named 'pyuwsgi'" in result.stderr:
        pytest.skip("pyuwsgi is not installed")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["(False, False)", "(True, True)"]
