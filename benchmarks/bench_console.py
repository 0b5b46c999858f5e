"""The local console under load: ``python benchmarks/bench_console.py`` (about three minutes).

1. **Ingest.** A fresh ``python -m k8sxray.daemon --sink local`` receives ``--segments`` (default
   1,000,000) segment datagrams over UDP, paced at ``--rate`` (default 20,000/s) by a sender process,
   while a poller asks GetServiceGraph and GetTraceSummaries every second, as the viewer does. Traces
   are Service-A → Service-B → a DynamoDB table (5% 500s, 5% 403s, 2% 429s), three documents each,
   B's DynamoDB call sent on its own; their start times spread over the last hour. Printed: the rate
   achieved, documents kept / sent (zero loss is the target), kernel drops, the daemon's CPU per
   1,000 segments, its peak RSS, and bytes on disk per segment beside the segments' JSON size.
2. **Queries over what was stored**, through boto3's real client: GetTraceSummaries over a 5-minute
   window with ``service()`` filters (p50 and p95 of ``--queries`` runs), GetServiceGraph and
   GetTimeSeriesServiceStatistics over the hour.
3. **The viewer's first paint** (when Debian's chromium and Playwright are installed): a fresh page
   until the service map shows Service-B.
4. **Beside moto_server's X-Ray** (the stand-in most projects use), on the calls it answers: the
   same ``--peer-segments`` (default 20,000) put with PutTraceSegments in batches of 50 into both, then
   GetTraceSummaries over them (moto answers any FilterExpression with a 500, and GetServiceGraph
   with an empty list, so those have no peer figure).

Targets (issue 16, 2 cores): ingest ≥ 20,000/s with zero loss while polled; with 1,000,000 segments
GetTraceSummaries p95 ≤ 200 ms, GetServiceGraph ≤ 1 s, first paint ≤ 1 s, bytes on disk per segment
≤ its JSON size, RSS ≤ 128 MiB. Options: ``--segments``, ``--rate``, ``--queries``, ``--peer-segments``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

HEADER = b'{"format": "json", "version": 1}\n'
TICKS = os.sysconf("SC_CLK_TCK")


def trace_documents(n: int, start: float, rng: random.Random) -> list[bytes]:
    """Service-A → Service-B → DynamoDB: three documents, the DynamoDB call sent on its own."""
    trace_id = f"1-{int(start):08x}-{n:024x}"
    a_id, call, b_id = f"a{n:015x}", f"c{n:015x}", f"b{n:015x}"
    draw = rng.random()
    status = 500 if draw < 0.05 else 403 if draw < 0.10 else 429 if draw < 0.12 else 200
    took = 0.01 + rng.random() * 0.2
    eks = {"pod": "service-a-7d9f8b6c5d-x2x9z", "cluster_name": "demo", "container_id": f"{n % 7:064x}"}
    a = {
        "name": "Service-A",
        "id": a_id,
        "trace_id": trace_id,
        "start_time": start,
        "end_time": start + took + 0.004,
        "origin": "AWS::EKS::Container",
        "aws": {"eks": eks, "xray": {"sdk": "k8sxray", "sdk_version": "0.1.0"}},
        "http": {
            "request": {
                "method": "GET",
                "url": f"http://service-a/orders/{n % 1000}",
                "client_ip": "10.0.0.9",
            },
            "response": {"status": 500 if status == 500 else 200},
        },
        "annotations": {"customer": f"c{n % 100}"},
        "subsegments": [
            {
                "name": "service-b",
                "id": call,
                "start_time": start + 0.001,
                "end_time": start + took + 0.003,
                "namespace": "remote",
                "http": {
                    "request": {"method": "GET", "url": "http://service-b/"},
                    "response": {"status": status},
                },
            }
        ],
    }
    b = {
        "name": "Service-B",
        "id": b_id,
        "trace_id": trace_id,
        "parent_id": call,
        "start_time": start + 0.002,
        "end_time": start + took + 0.002,
        "origin": "AWS::EKS::Container",
        "aws": {"eks": {**eks, "pod": "service-b-5c6d7e8f9-q8w7e"}},
        "http": {"request": {"method": "GET", "url": "http://service-b/"}, "response": {"status": status}},
    }
    if status == 500:
        b["fault"] = True
    elif status >= 400:
        b["error"] = True
        if status == 429:
            b["throttle"] = True
    dynamo = {
        "type": "subsegment",
        "trace_id": trace_id,
        "parent_id": b_id,
        "name": "DynamoDB",
        "id": f"d{n:015x}",
        "namespace": "aws",
        "start_time": start + 0.003,
        "end_time": start + 0.008,
        "aws": {
            "operation": "GetItem",
            "region": "us-east-1",
            "table_name": "orders",
            "request_id": "R" * 32,
        },
    }
    return [json.dumps(d, separators=(",", ":")).encode() for d in (a, b, dynamo)]


def documents(count: int, now: float, seed: int = 1) -> list[bytes]:
    """``count`` documents (a multiple of three), their traces' starts spread over the last hour."""
    rng = random.Random(seed)
    traces = max(1, count // 3)
    out: list[bytes] = []
    for n in range(traces):
        out += trace_documents(n, now - 3600 + 3600 * n / traces, rng)
    return out


def _send(port: int, count: int, rate: int, now: float, events: tuple[Any, Any]) -> None:
    ready, done = events
    docs = [HEADER + d for d in documents(count, now)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    target = ("127.0.0.1", port)
    ready.set()
    started = time.perf_counter()
    tick = 0.005
    per_tick = max(1, int(rate * tick))
    sent = 0
    while sent < len(docs):
        for doc in docs[sent : sent + per_tick]:
            sock.sendto(doc, target)
        sent = min(len(docs), sent + per_tick)
        ahead = started + sent / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    done.put((len(docs), sum(len(d) - len(HEADER) for d in docs), time.perf_counter() - started))


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _udp_drops() -> int:
    lines = Path("/proc/net/snmp").read_text().splitlines()
    udp = [line.split() for line in lines if line.startswith("Udp:")]
    return int(udp[1][udp[0].index("RcvbufErrors")])


def _family(pid: int) -> list[int]:
    """The daemon and its children (the store's packing workers)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return [pid, *children]


def _cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in _family(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def _peak_rss_mib(pid: int) -> tuple[float, list[float]]:
    """The peak resident memory of the daemon and its workers, summed, and each one's."""
    each = []
    for member in _family(pid):
        match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{member}/status").read_text())
        each.append(int(match.group(1)) / 1024 if match else 0.0)
    return sum(each), each


def client(url: str) -> Any:
    return boto3.client(
        "xray",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )


class Daemon:
    def __init__(self, store: Path) -> None:
        self.udp = _free_port(socket.SOCK_DGRAM)
        self.http = _free_port(socket.SOCK_STREAM)
        self.url = f"http://127.0.0.1:{self.http}"
        self.store = store
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        argv = [sys.executable, "-m", "k8sxray.daemon", "--sink", "local", "--store", str(store)]
        argv += ["-b", f"127.0.0.1:{self.udp}", "-t", "off", "--http", f"127.0.0.1:{self.http}"]
        self.log = tempfile.NamedTemporaryFile(prefix="k8sxray-bench-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        deadline = time.monotonic() + 30
        while "receiving segments" not in Path(self.log.name).read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start:\n{Path(self.log.name).read_text()}")
            time.sleep(0.05)

    def kept(self) -> int:
        import sqlite3

        conn = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=30)
        try:
            return int(conn.execute("SELECT total(documents) FROM traces").fetchone()[0])
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def _poll(url: str, stop: threading.Event, latencies: list[float]) -> None:
    xray = client(url)
    while not stop.wait(1.0):
        now = time.time()
        started = time.perf_counter()
        xray.get_service_graph(StartTime=now - 300, EndTime=now)
        xray.get_trace_summaries(StartTime=now - 300, EndTime=now)
        latencies.append(time.perf_counter() - started)


def ingest(args: argparse.Namespace, workdir: Path) -> tuple[Daemon, float]:
    daemon = Daemon(workdir / "traces.db")
    now = time.time()
    ready, done = mp.Event(), mp.Queue()
    sender = mp.Process(target=_send, args=(daemon.udp, args.segments, args.rate, now, (ready, done)))
    drops, cpu = _udp_drops(), _cpu_seconds(daemon.proc.pid)
    sender.start()
    ready.wait(timeout=600)
    stop, polls = threading.Event(), []
    poller = threading.Thread(target=_poll, args=(daemon.url, stop, polls))
    poller.start()
    sent, json_bytes, seconds = done.get(timeout=3600)
    sender.join()
    deadline = time.monotonic() + 120
    kept = daemon.kept()
    while kept < sent and time.monotonic() < deadline:
        time.sleep(0.5)
        kept = daemon.kept()
    stop.set()
    poller.join()
    cpu = _cpu_seconds(daemon.proc.pid) - cpu
    drops = _udp_drops() - drops
    disk = sum(p.stat().st_size for p in workdir.iterdir() if p.name.startswith("traces.db"))
    print(f"\n## Ingest: {sent:,} segments at {args.rate:,}/s asked, polled every second")
    print(f"{'':28s} {'k8sxray console':>22s}   target")
    print(f"{'rate achieved':28s} {sent / seconds:>20,.0f}/s   ≥ 20,000/s")
    print(f"{'kept / sent':28s} {kept:>10,} / {sent:<9,}   all")
    print(f"{'kernel drops':28s} {drops:>22,}")
    print(f"{'daemon CPU per 1k segments':28s} {1000 * cpu / sent * 1000:>19,.1f} ms   (with its workers)")
    rss, each = _peak_rss_mib(daemon.proc.pid)
    parts = " + ".join(f"{m:.0f}" for m in each)
    print(f"{'daemon peak RSS':28s} {rss:>18,.1f} MiB   ≤ 128 MiB (summed: {parts})")
    print(f"{'bytes on disk per segment':28s} {disk / sent:>22,.0f}   ≤ {json_bytes / sent:,.0f} (its JSON)")
    if polls:
        print(f"{'poll (graph + list), median':28s} {1000 * statistics.median(polls):>19,.1f} ms")
    return daemon, now


def _timed(call: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def _row(label: str, middle: float, high: float, target: str) -> str:
    return f"{label:52s} {1000 * middle:>7,.1f}ms {1000 * high:>7,.1f}ms   {target}".rstrip()


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def queries(daemon: Daemon, now: float, runs: int) -> None:
    xray = client(daemon.url)
    window = {"StartTime": now - 1800, "EndTime": now - 1500}
    print(f"\n## Queries over the stored segments ({runs} runs each)")
    print(f"{'':52s} {'median':>9s} {'p95':>9s}   target")
    for label, expression in (
        ("summaries, 5 min, service(B)", 'service("Service-B")'),
        ("summaries, 5 min, service(B) {fault}", 'service("Service-B") { fault }'),
        (
            "summaries, 5 min, edge(A, B) {error} AND http",
            'edge("Service-A", "Service-B") { error } AND http.method = "GET"',
        ),
    ):
        times = _timed(lambda e=expression: xray.get_trace_summaries(**window, FilterExpression=e), runs)
        print(_row(label, statistics.median(times), _p95(times), "p95 ≤ 200 ms"))
    hour = {"StartTime": now - 3600, "EndTime": now}
    times = _timed(lambda: xray.get_service_graph(**hour), max(3, runs // 5))
    services = xray.get_service_graph(**hour)["Services"]
    label = f"service graph, 1 h ({len(services)} services)"
    print(_row(label, statistics.median(times), max(times), "≤ 1 s (max)"))
    times = _timed(lambda: xray.get_time_series_service_statistics(**hour, Period=60), max(3, runs // 5))
    print(_row("time series, 1 h, per minute", statistics.median(times), max(times), ""))


def first_paint(url: str) -> float | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path("/usr/bin/chromium").exists():
        return None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    flags += ["--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", args=flags, headless=True
        )
        try:
            page = browser.new_page()
            page.goto(url + "/", wait_until="commit")  # warm: the browser's own start-up is not the viewer's
            page.locator("svg text", has_text="Service-B").first.wait_for(timeout=30000)
            started = time.perf_counter()
            page.goto(url + "/?range=1h")
            page.locator("svg text", has_text="Service-B").first.wait_for(timeout=30000)
            return time.perf_counter() - started
        finally:
            browser.close()


def peers(args: argparse.Namespace, workdir: Path) -> None:
    count = args.peer_segments
    now = time.time()
    docs = [d.decode() for d in documents(count, now, seed=2)]
    moto_port = _free_port(socket.SOCK_STREAM)
    moto = shutil.which("moto_server")
    if moto is None:
        print("\n(moto_server is not installed: no peer figures)")
        return
    moto_proc = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ours = Daemon(workdir / "peer.db")
    try:
        moto_url = f"http://127.0.0.1:{moto_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", moto_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        results: dict[str, dict[str, str]] = {}
        for name, url in (("k8sxray console", ours.url), ("moto_server", moto_url)):
            xray = client(url)
            started = time.perf_counter()
            for i in range(0, len(docs), 50):
                xray.put_trace_segments(TraceSegmentDocuments=docs[i : i + 50])
            put = len(docs) / (time.perf_counter() - started)
            time.sleep(1.5)  # the console writes a trace once it has settled
            window = {"StartTime": now - 3600, "EndTime": now}
            times = _timed(lambda x=xray, w=window: x.get_trace_summaries(**w), 5)
            found = len(xray.get_trace_summaries(**window)["TraceSummaries"])
            try:
                xray.get_trace_summaries(**window, FilterExpression='service("Service-B") { fault }')
                filtered = "answers"
            except Exception as exc:
                filtered = type(exc).__name__
            graph = len(xray.get_service_graph(**window)["Services"])
            results[name] = {
                "PutTraceSegments": f"{put:,.0f} seg/s",
                "GetTraceSummaries, 1 h": f"{1000 * statistics.median(times):,.0f} ms ({found} on page 1)",
                "with a FilterExpression": filtered,
                "GetServiceGraph services": str(graph),
            }
        print(f"\n## Beside moto_server's X-Ray: {count:,} segments put in batches of 50")
        print(f"{'':28s} {'k8sxray console':>28s} {'moto_server':>28s}")
        for row in results["moto_server"]:
            print(f"{row:28s} {results['k8sxray console'][row]:>28s} {results['moto_server'][row]:>28s}")
    finally:
        ours.stop()
        moto_proc.terminate()
        moto_proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=20_500)  # the pacing loses about 1%
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--peer-segments", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="k8sxray-bench-") as tmp:
        workdir = Path(tmp)
        daemon, now = ingest(args, workdir)
        try:
            queries(daemon, now, args.queries)
            paint = first_paint(daemon.url)
            if paint is None:
                print("\n(viewer first paint: needs Debian's chromium and Playwright)")
            else:
                print(f"\n{'viewer: map first paint':52s} {1000 * paint:>7,.0f}ms   ≤ 1 s")
        finally:
            daemon.stop()
        peers(args, workdir)


if __name__ == "__main__":
    main()
