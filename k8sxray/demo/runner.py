"""``python -m k8sxray demo``: a local daemon, Service-B, Service-A and their clients, until stopped.

Everything runs on loopback as child processes, each in its own process group: the daemon in local
mode (its own temporary store unless ``--store``), Service-B under uvicorn, Service-A under gunicorn
(each traced with one line, ``k8sxray.instrument(app)``, every request sampled), and a traffic
generator in this process. The viewer's address is printed once everything answers. Ctrl-C,
SIGTERM or ``--duration`` stop the clients, then the services, then the daemon (which stores what
it still holds), and nothing is left running: a group that does not stop within a few seconds is
killed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from .. import _env
from .traffic import Traffic

__all__ = ["DEFAULT_PORT", "DEFAULT_RATE", "REQUIRED", "add_parser", "run"]

DEFAULT_PORT = 2020
DEFAULT_RATE = 5.0
REQUIRED = ("fastapi", "flask", "gunicorn", "httpx", "requests", "uvicorn")
"""What the demo's services import or are served by: the ``demo`` extra."""
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
STATUS_EVERY = 15.0

# The daemon's UDP port is its own pick (port 0), read from its log; the sampling port is not needed
# (every request is sampled locally).
_DAEMON = (sys.executable, "-m", "k8sxray.daemon", "--sink", "local", "-b", "127.0.0.1:0", "-t", "off")
_UVICORN = (sys.executable, "-m", "uvicorn", "--log-level", "warning", "--factory")
# Threads: Service-B's delays keep each request up to 300 ms.
_GUNICORN = (
    *(sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "8"),
    *("--graceful-timeout", "5", "--log-level", "warning"),
)
_OURS = ("AWS_XRAY_", "K8SXRAY_")
"""Prefixes of the settings the demo sets itself for its services (a user's own would change the demo)."""
_SERVICE_B_URL = "SERVICE_B_URL"
"""Where Service-A finds Service-B (``service_a.SERVICE_B_URL``; not imported here, it needs Flask)."""
_UDP = re.compile(r"receiving segments on udp 127\.0\.0\.1:(\d+)")
_CONSOLE = re.compile(r"console: (http://\S+)")


class DemoError(Exception):
    """Why the demo cannot start or go on; printed without a traceback."""


class _Stopped(Exception):
    """Ctrl-C or SIGTERM before everything was up."""


def add_parser(commands: Any) -> None:
    """Add ``demo`` to the ``k8sxray`` command's subcommands."""
    p = commands.add_parser(
        "demo",
        help="run two traced services, their clients and a local console on this machine",
        description="Service-A (Flask) calls Service-B (FastAPI), clients call Service-A, and a local "
        "k8sxray daemon keeps the traces and shows them in your browser. Ctrl-C stops everything.",
    )
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"the console's port (default {DEFAULT_PORT}; a free one if taken; 0 for any)",
    )
    p.add_argument(
        "--rate", type=_positive, default=DEFAULT_RATE, help=f"requests a second (default {DEFAULT_RATE:g})"
    )
    p.add_argument("--duration", type=_positive, default=None, help="stop after this many seconds")
    p.add_argument("--store", type=Path, default=None, help="keep the traces in this SQLite file")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0 to 65535)")
    return port


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0")
    return value


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Runs the demo until a signal or ``--duration``; returns the exit code."""
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"k8sxray demo: needs {', '.join(missing)}: pip install 'k8sxray[demo]' "
            "(from a checkout: pip install -e '.[demo]')",
            file=sys.stderr,
        )
        return 2
    if os.name != "posix":
        print("k8sxray demo: runs on Linux and macOS (Service-A is served by gunicorn)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="k8sxray-demo-"))
    demo = _Demo(workdir, out)
    restore = _on_signals(demo.request_stop)
    try:
        return demo.run(args.port, args.rate, args.duration, args.store)
    except _Stopped:
        demo.say("stopped before everything was up")
        return 0
    except DemoError as exc:
        print(f"k8sxray demo: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.shutdown()
        restore()
        shutil.rmtree(workdir, ignore_errors=True)


def _on_signals(handler: Callable[[int], None]) -> Callable[[], None]:
    """SIGINT and SIGTERM call ``handler``; returns what puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


class _Child:
    """A child process in its own process group (so that the terminal's Ctrl-C reaches only us, and
    stopping it stops gunicorn's workers too), its output in a log file."""

    def __init__(
        self, name: str, argv: Sequence[str], env: dict[str, str], workdir: Path, pass_fds: Sequence[int] = ()
    ) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=workdir,
                start_new_session=True,
                pass_fds=tuple(pass_fds),
                preexec_fn=_die_with_parent(),  # noqa: PLW1509  # no threads have started yet
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self, last: int = 0) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-last:]) if last else text

    def stop(self, timeout: float, *, kill: bool = False) -> None:
        """SIGTERM to the group (SIGKILL with ``kill``), then SIGKILL to whatever is left of it."""
        if self.proc.poll() is None:
            self._signal_group(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait()
        self._signal_group(signal.SIGKILL)  # a worker that outlived its master

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a child gets SIGTERM when the demo itself dies without cleaning up (SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return preexec


class _Demo:
    def __init__(self, workdir: Path, out: TextIO) -> None:
        self.workdir = workdir
        self.out = out
        self.children: list[_Child] = []
        self.traffic: Traffic | None = None
        self.stop = threading.Event()
        self.signals = 0

    def say(self, line: str = "") -> None:
        print(line, file=self.out, flush=True)

    def request_stop(self, signum: int) -> None:
        self.signals += 1
        self.stop.set()

    def run(self, port: int, rate: float, duration: float | None, store: Path | None) -> int:
        if port and not _free_tcp(port):
            self.say(f"port {port} is taken (another k8sxray daemon?): the console takes a free port instead")
            port = 0
        store_path = store.resolve() if store else self.workdir / "traces.db"
        udp, console = self._start_daemon(port, store_path)
        env = _app_env(udp)
        b_sock, a_sock = _listener(), _listener()
        with b_sock, a_sock:
            b_url, a_url = _url(b_sock), _url(a_sock)
            self._start(
                "service-b",
                [*_UVICORN, "k8sxray.demo.service_b:traced", "--fd", str(b_sock.fileno())],
                {**env, _env.AWS_XRAY_TRACING_NAME: "service-b"},
                pass_fds=[b_sock.fileno()],
            )
            self._start(
                "service-a",
                [*_GUNICORN, "k8sxray.demo.service_a:traced()", "--bind", f"fd://{a_sock.fileno()}"],
                {**env, _env.AWS_XRAY_TRACING_NAME: "service-a", _SERVICE_B_URL: b_url},
                pass_fds=[a_sock.fileno()],
            )
        for url in (b_url, a_url):
            self._wait_answers(url)
        self.say(f"k8sxray demo: open {console} to see the service map (clients -> service-a -> service-b)")
        self.say(f"  service-a  {a_url}  Flask under gunicorn, k8sxray.instrument(app)")
        self.say(f"  service-b  {b_url}  FastAPI under uvicorn, k8sxray.instrument(app)")
        self.say(f"  daemon     udp 127.0.0.1:{udp}, traces kept in {store_path}")
        self.say(f"  clients    {rate:g} requests a second to service-a")
        ends = f"stops after {duration:g} s, or on Ctrl-C" if duration else "Ctrl-C stops everything"
        self.say(f"{ends}; python -m k8sxray traces --endpoint {console.rstrip('/')} lists the traces")
        self.traffic = Traffic(a_url, rate)
        self.traffic.start()
        started = last_status = time.monotonic()
        while not self.stop.wait(0.25):
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            for child in self.children:
                if child.proc.poll() is not None:
                    code = child.proc.returncode
                    raise DemoError(f"{child.name} stopped by itself (exit code {code}):\n{child.log(20)}")
            if now - last_status >= STATUS_EVERY:
                last_status = now
                self.say(f"clients: {self.traffic.summary()} so far")
        self.say("stopping: clients, service-a, service-b, then the daemon")
        self.shutdown()
        self.say(f"stopped; the clients sent {self.traffic.summary()}")
        if store:
            self.say(f"the traces stay in {store_path}: python -m k8sxray.daemon --store {store_path}")
        return 0

    def shutdown(self) -> None:
        """Stops everything started so far, newest first; safe to call twice."""
        if self.traffic is not None:
            self.traffic.stop(timeout=0 if self.signals > 1 else STOP_TIMEOUT)
        while self.children:
            child = self.children.pop()
            child.stop(STOP_TIMEOUT, kill=self.signals > 1)  # a second Ctrl-C: no more waiting

    def _start(self, name: str, argv: list[str], env: dict[str, str], pass_fds: Sequence[int] = ()) -> _Child:
        child = _Child(name, argv, env, self.workdir, pass_fds)
        self.children.append(child)
        return child

    def _start_daemon(self, port: int, store: Path) -> tuple[int, str]:
        daemon = self._start(
            "daemon",
            [*_DAEMON, "--store", str(store), "--http", f"127.0.0.1:{port}"],
            _clean(os.environ),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and not self.stop.is_set():
            log = daemon.log()
            udp, console = _UDP.search(log), _CONSOLE.search(log)
            if udp and console:
                return int(udp.group(1)), console.group(1)
            if daemon.proc.poll() is not None:
                raise DemoError(f"the daemon did not start (exit code {daemon.proc.returncode}):\n{log}")
            time.sleep(0.05)
        if self.stop.is_set():
            raise _Stopped
        raise DemoError(f"the daemon did not start within {START_TIMEOUT:g} s:\n{daemon.log(20)}")

    def _wait_answers(self, url: str) -> None:
        """Until ``url/healthz`` answers (asked unsampled, so that no trace comes of it)."""
        header = (
            f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(url + "/healthz", headers={"X-Amzn-Trace-Id": header})
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and not self.stop.is_set():
            for child in self.children:
                if child.proc.poll() is not None:
                    raise DemoError(
                        f"{child.name} did not start (exit code {child.proc.returncode}):\n{child.log(20)}"
                    )
            try:
                with opener.open(request, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        if self.stop.is_set():
            raise _Stopped
        raise DemoError(f"{url} did not answer within {START_TIMEOUT:g} s")


def _clean(environ: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    """The environment without settings of k8sxray or the X-Ray SDK (the demo sets its own), and
    with loopback kept away from any proxy."""
    env = {k: v for k, v in environ.items() if not k.startswith(_OURS)}
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(filter(None, [env.get(name, ""), "127.0.0.1", "localhost"]))
    return env


def _app_env(udp: int) -> dict[str, str]:
    env = _clean(os.environ)
    env[_env.AWS_XRAY_DAEMON_ADDRESS] = f"127.0.0.1:{udp}"
    env[_env.K8SXRAY_SAMPLING_RATE] = "1"  # every request traced
    return env


def _listener() -> socket.socket:
    return socket.create_server(("127.0.0.1", 0), backlog=128)


def _url(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _free_tcp(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
