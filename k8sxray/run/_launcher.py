"""Start a command with the k8sxray bootstrap first on ``PYTHONPATH``."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping

BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")
"""The directory holding the bootstrap ``sitecustomize.py``."""

USAGE = """\
usage: k8sxray-run [--] <command> [args...]

Run an unmodified Python app with AWS X-Ray tracing, configured from environment
variables (AWS_XRAY_DAEMON_ADDRESS, AWS_XRAY_TRACING_NAME, K8SXRAY_SAMPLING_RATE, ...).
Examples:
  k8sxray-run gunicorn -w 4 app:app
  k8sxray-run uvicorn app:app --workers 2
  k8sxray-run flask run
  k8sxray-run python app.py
AWS_XRAY_SDK_ENABLED=false runs the command untraced.
"""


def child_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """*environ* with the bootstrap directory first on ``PYTHONPATH`` (exactly once)."""
    env = dict(environ)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != BOOTSTRAP_DIR]
    env["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_DIR, *parts])
    return env


def launch(argv: list[str], environ: Mapping[str, str] | None = None) -> int:
    """Replace this process with *argv*; returns an exit status only when it cannot."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv or argv[0] in {"-h", "--help"}:
        (sys.stdout if argv else sys.stderr).write(USAGE)
        return 0 if argv else 2
    env = child_environ(os.environ if environ is None else environ)
    program = shutil.which(argv[0], path=env.get("PATH"))
    if program is None:
        sys.stderr.write(f"k8sxray-run: {argv[0]}: command not found\n")
        return 127
    try:
        os.execve(program, argv, env)
    except OSError as exc:
        sys.stderr.write(f"k8sxray-run: cannot run {argv[0]}: {exc.strerror}\n")
        return 126
    return 0  # not reached: execve replaced the process
