"""Settings as real servers see them: a bad one never stops the service; the default name.

Each case runs a real gunicorn, uvicorn or ``flask run`` (under ``k8sxray-run``, or plain
gunicorn serving an app that calls ``k8sxray.instrument()`` itself) and reads the segments
from a real UDP socket.
"""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import Receiver, free_port, get, k8sxray_lines


def _gunicorn(port: int, app: str) -> list[str]:
    return ["gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "--log-level", "warning", app]


MODES = {
    # (command, run under k8sxray-run)
    "instrument": ("instrumented_app:app", False),
    "k8sxray-run": ("wsgi_app:app", True),
}


@pytest.mark.parametrize("mode", MODES.keys())
@pytest.mark.parametrize(
    ("name", "value"),
    [("K8SXRAY_SAMPLING_RATE", "abc"), ("AWS_XRAY_DAEMON_ADDRESS", "udp:nowhere")],
)
def test_a_bad_setting_serves_untraced_and_says_which(  # noqa: PLR0917  # pytest passes fixtures positionally
    mode: str, name: str, value: str, receiver: Receiver, env: dict[str, str], launch: Any
) -> None:
    app_spec, zero_code = MODES[mode]
    env[name] = value
    port = free_port()
    app = launch(_gunicorn(port, app_spec), env, zero_code=zero_code)
    for _ in range(3):
        assert get(f"http://127.0.0.1:{port}/")[0] == 200
    assert receiver.collect(bool, timeout=0.5) == []  # untraced
    errors = app.stop()
    lines = k8sxray_lines(errors)
    assert lines, errors
    for line in lines:  # the one or two lines k8sxray wrote name the variable, its value, the outcome
        assert f"{name}={value!r}" in line, errors
        assert "tracing is off" in line, errors
    assert "Traceback" not in errors, errors


def _first_segment(receiver: Receiver) -> dict[str, Any]:
    documents = receiver.collect(bool, timeout=10)
    assert documents
    return documents[0]


NAMED = {
    # id: (command with {port}, run under k8sxray-run, the service name expected)
    "gunicorn": (_gunicorn(0, "wsgi_app:app"), True, "wsgi_app"),
    "gunicorn-instrument": (_gunicorn(0, "instrumented_app:app"), False, "instrumented_app"),
    "uvicorn": (["uvicorn", "asgi_app:app", "--port", "{port}", "--log-level", "warning"], True, "asgi_app"),
    "flask-run": (["flask", "--app", "script_app", "run", "--port", "{port}"], True, "script_app"),
}


@pytest.mark.parametrize("case", NAMED.keys())
def test_the_default_service_name_is_the_app_a_server_runs(
    case: str, receiver: Receiver, env: dict[str, str], launch: Any
) -> None:
    command, zero_code, expected = NAMED[case]
    del env["AWS_XRAY_TRACING_NAME"]
    port = free_port()
    args = [arg.replace("{port}", str(port)).replace("127.0.0.1:0", f"127.0.0.1:{port}") for arg in command]
    app = launch(args, env, zero_code=zero_code)
    assert get(f"http://127.0.0.1:{port}/")[0] == 200
    assert _first_segment(receiver)["name"] == expected
    assert k8sxray_lines(app.stop()) == []
