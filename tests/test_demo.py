"""``python -m k8sxray demo``, for real: the services, their clients and the console, then nothing left.

The demo runs as a subprocess in its own session, as in a terminal; a Ctrl-C is SIGINT to its
process group. What it shows is read back through the console's X-Ray API with boto3's client.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from k8sxray import _cli
from k8sxray.demo.runner import REQUIRED

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

_CONSOLE = re.compile(r"open (http://127\.0\.0\.1:(\d+)/) ")
_SERVICE = re.compile(r"^  (service-[ab])  http://127\.0\.0\.1:(\d+)")
_UDP = re.compile(r"daemon     udp 127\.0\.0\.1:(\d+)")


class Demo:
    """``python -m k8sxray demo ...`` with its output read line by line."""

    def __init__(self, home: Path, *args: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "K8SXRAY_"))}
        env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), AWS_EC2_METADATA_DISABLED="true")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "k8sxray", "demo", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.console = ""
        self.tcp_ports: set[int] = set()
        self.udp_port = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_line(self, needle: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {needle!r} in {timeout} s: {self.output}") from None
            if line is None:
                raise AssertionError(f"the demo ended before {needle!r}: {self.output}\n{self.stderr()}")
            self.output.append(line)
            if needle in line:
                return line

    def wait_started(self) -> None:
        """Until the banner is complete; notes the addresses it gives."""
        match = _CONSOLE.search(self.wait_for_line("to see the service map"))
        assert match, self.output
        self.console = match.group(1)
        self.tcp_ports.add(int(match.group(2)))
        for _ in range(2):
            service = _SERVICE.match(self.wait_for_line("  service-"))
            assert service, self.output
            self.tcp_ports.add(int(service.group(2)))
        udp = _UDP.search(self.wait_for_line("  daemon "))
        assert udp, self.output
        self.udp_port = int(udp.group(1))
        self.wait_for_line("Ctrl-C")

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr and self.proc.poll() is not None else ""

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        while (line := self.lines.get(timeout=5)) is not None:
            self.output.append(line)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:  # a failed test must not leave a demo behind either
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.reader.join(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def xray(self) -> Any:
        return boto3.client(
            "xray",
            endpoint_url=self.console.rstrip("/"),
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 1}),
        )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def demos() -> Iterator[list[Demo]]:
    started: list[Demo] = []
    yield started
    for demo in started:
        demo.close()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_nothing_left(demo: Demo, children: set[int]) -> None:
    assert sorted(p for p in children if alive(p)) == []
    for port in demo.tcp_ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # SO_REUSEADDR looks past connections in TIME_WAIT; on Linux a listener still refuses it
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", demo.udp_port))


def traces_cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "k8sxray", "traces", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def wait_for_graph(demo: Demo, timeout: float = 45.0) -> dict[str, dict[str, Any]]:
    """The service graph (by name; the clients' node as ``client``) once service-b has recorded both
    errors (403) and faults (500)."""
    client = demo.xray()
    deadline = time.monotonic() + timeout
    services: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        now = time.time()
        graph = client.get_service_graph(StartTime=now - 600, EndTime=now + 60)["Services"]
        services = {("client" if s.get("Type") == "client" else s["Name"]): s for s in graph}
        b = services.get("service-b", {}).get("SummaryStatistics", {})
        if b.get("ErrorStatistics", {}).get("TotalCount") and b.get("FaultStatistics", {}).get("TotalCount"):
            return services
        time.sleep(0.5)
    raise AssertionError(f"no errors and faults on service-b in {timeout} s: {services}")


def test_the_demo_shows_the_blogs_map_and_ctrl_c_leaves_nothing_running(
    home: Path, demos: list[Demo]
) -> None:
    demo = Demo(home, "--port", "0", "--rate", "20", "--duration", "300")
    demos.append(demo)
    demo.wait_started()
    services = wait_for_graph(demo)

    a, b = services["service-a"], services["service-b"]
    assert sorted(services) == ["client", "service-a", "service-b"]
    assert [e["ReferenceId"] for e in services["client"]["Edges"]] == [a["ReferenceId"]]
    [a_to_b] = [e for e in a["Edges"] if e["ReferenceId"] == b["ReferenceId"]]
    assert a_to_b["SummaryStatistics"]["TotalCount"] > 0
    assert a_to_b["ResponseTimeHistogram"]
    stats = b["SummaryStatistics"]
    assert stats["OkCount"] > 0
    assert stats["TotalResponseTime"] / stats["TotalCount"] >= 0.02  # B's delays: 20 to 300 ms
    assert b["Edges"] == []
    faults = demo.xray().get_trace_summaries(
        StartTime=time.time() - 600,
        EndTime=time.time() + 60,
        FilterExpression='service("service-b") { fault }',
    )["TraceSummaries"]
    assert faults
    assert all(s["HasFault"] for s in faults)

    # The terminal, as docs/quickstart.md shows it while the demo runs.
    endpoint = demo.console.rstrip("/")
    listed = traces_cli("--endpoint", endpoint)
    assert "service-a" in listed
    assert "service-b" in listed
    faulty = traces_cli("--endpoint", endpoint, "--filter", 'service("service-b") { fault }')
    assert faulty.splitlines()
    assert all(" 500 " in line and "fault" in line for line in faulty.splitlines()), faulty

    children = descendants(demo.proc.pid)
    assert len(children) >= 5  # the daemon, uvicorn, gunicorn's master and its two workers
    os.killpg(demo.proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
    assert demo.wait() == 0, demo.stderr()
    assert demo.output[-1].startswith("stopped; the clients sent ")
    assert_nothing_left(demo, children)


def test_sigterm_stops_everything(home: Path, demos: list[Demo]) -> None:
    demo = Demo(home, "--port", "0")
    demos.append(demo)
    demo.wait_started()
    children = descendants(demo.proc.pid)
    assert len(children) >= 5
    demo.proc.send_signal(signal.SIGTERM)
    assert demo.wait() == 0, demo.stderr()
    assert_nothing_left(demo, children)


def test_duration_ends_it_and_a_taken_port_is_replaced(home: Path, demos: list[Demo]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        demo = Demo(home, "--port", str(port), "--duration", "2", "--store", str(home / "kept.db"))
        demos.append(demo)
        demo.wait_for_line(f"port {port} is taken")
        demo.wait_started()
        assert port not in demo.tcp_ports
        children = descendants(demo.proc.pid)
        assert demo.wait() == 0, demo.stderr()
    assert demo.output[-1].startswith("the traces stay in ")
    assert (home / "kept.db").stat().st_size > 0
    assert_nothing_left(demo, children)


def test_ctrl_c_while_starting_stops_what_was_started(home: Path, demos: list[Demo]) -> None:
    demo = Demo(home, "--port", "0")
    demos.append(demo)
    deadline = time.monotonic() + 30
    while not (children := descendants(demo.proc.pid)):  # the daemon is starting
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(demo.proc.pid, signal.SIGINT)
    assert demo.wait() == 0, demo.stderr()
    assert demo.output[-1] in ("stopped before everything was up", "stopped; the clients sent 0 requests")
    assert sorted(p for p in children | descendants(demo.proc.pid) if alive(p)) == []


def test_a_daemon_that_cannot_start_is_reported(home: Path, demos: list[Demo]) -> None:
    blocker = home / "not-a-directory"
    home.mkdir(parents=True)
    blocker.write_text("")
    demo = Demo(home, "--port", "0", "--store", str(blocker / "traces.db"))
    demos.append(demo)
    assert demo.wait() == 1
    assert "the daemon did not start" in demo.stderr()
    assert demo.output == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "--rate: 0 must be above 0"),
        (["--duration", "soon"], "--duration: 'soon' is not a number"),
        (["--port", "70000"], "--port: 70000 is not a port number"),
    ],
)
def test_bad_options_are_refused(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _cli.main(["demo", *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_the_demo_extra_installs_what_the_demo_needs() -> None:
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def names(extra: str) -> set[str]:
        return {re.split(r"[<>=\[ ]", requirement)[0].lower() for requirement in extras[extra]}

    assert names("demo") == set(REQUIRED)
    assert names("demo") <= names("dev")  # CI's install, the README's test command, covers the demo
