"""Daemon throughput, CPU and memory: ``python benchmarks/bench_daemon.py`` (about a minute).

A sender process blasts valid ~440-byte segment datagrams at 20k, 40k and 80k per second and as an
unpaced burst of 200,000; a fresh ``python -m k8sxray.daemon`` per run ships them to a fast local
PutTraceSegments sink (ThreadingHTTPServer, Nagle off). Per run it prints delivered/sent, kernel
drops (/proc/net/snmp Udp RcvbufErrors), daemon CPU seconds per 1,000 segments and peak RSS (VmHWM),
beside the figures measured for AWS's Go daemon on this kind of machine (from issue 6; that daemon
is not installed here, so its column is quoted, not measured in this run).

Options: ``--rates 20000,40000`` ``--seconds 3`` ``--burst 200000`` ``--repeat 3`` ``--daemon-args "..."``.
With repeats, each figure is the median; the CPU column also shows the range.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HEADER = b'{"format": "json", "version": 1}\n'
TICKS = os.sysconf("SC_CLK_TCK")
GO_DAEMON = {  # issue 6, measured on a 2-core machine like this one (default buffer)
    20000: "lossless, 9-18 us/seg, 130-220 MB",
    40000: "0.03% lost, 14 us/seg, 130-220 MB",
    80000: "0.3% lost, 9-18 us/seg, 130-220 MB",
    0: "16-20% delivered, 130-220 MB",
}


def make_datagram(i: int) -> bytes:
    """A valid segment of about 430 bytes with a unique id."""
    doc = {
        "name": "checkout",
        "id": f"{i:016x}",
        "trace_id": f"1-5f000000-{i:024x}",
        "start_time": 1700000000.123456,
        "end_time": 1700000000.223456,
        "origin": "AWS::EKS::Container",
        "http": {
            "request": {"method": "GET", "url": "http://checkout.shop.svc:8080/api/v1/orders/12345"},
            "response": {"status": 200},
        },
        "aws": {"eks": {"pod": "checkout-7d9f8b6c5d-x2x9z", "cluster_name": "prod"}},
        "annotations": {"tenant": "acme"},
    }
    return HEADER + json.dumps(doc, separators=(",", ":")).encode()


def sender(port: int, rate: int, count: int, result: Any) -> None:
    """Send ``count`` datagrams at ``rate`` per second (0 = as fast as possible)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    payloads = [make_datagram(i) for i in range(1000)]  # distinct ids, all the same size
    addr = ("127.0.0.1", port)
    sendto = sock.sendto
    start = time.perf_counter()
    sent = 0
    if rate == 0:
        for i in range(count):
            try:
                sendto(payloads[i % 1000], addr)
                sent += 1
            except OSError:
                pass
    else:
        tick = 0.001
        per_tick = rate * tick
        due = 0.0
        while sent < count:
            due += per_tick
            n = min(int(due) - sent, count - sent)
            for _ in range(n):
                with contextlib.suppress(OSError):  # a full send buffer: counted as sent, then lost
                    sendto(payloads[sent % 1000], addr)
                sent += 1
            next_at = start + (sent / rate)
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    result.put((sent, time.perf_counter() - start))


class CountingEndpoint:
    """A fast loopback HTTP endpoint (Nagle off) that counts what each POST carries with ``count``."""

    def __init__(
        self,
        count: Callable[[bytes], int],
        answer: bytes = b"",
        content_type: str = "application/json",
        path: str = "",
    ) -> None:
        self.count = 0
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = count(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.lock:
                    endpoint.count += n
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 64

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Sink(CountingEndpoint):
    """A fast PutTraceSegments endpoint that counts documents."""

    def __init__(self) -> None:
        super().__init__(lambda body: body.count(b'\\"trace_id\\"'), b'{"UnprocessedTraceSegments":[]}')


def rcvbuf_errors() -> int:
    lines = Path("/proc/net/snmp").read_text().splitlines()
    udp = [line.split() for line in lines if line.startswith("Udp:")]
    return int(udp[1][udp[0].index("RcvbufErrors")])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mib(pid: int) -> float:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def run_once(rate: int, count: int, daemon_args: list[str]) -> dict[str, float]:
    sink = Sink()
    log = tempfile.NamedTemporaryFile(prefix="bench-daemon-", suffix=".log", delete=False)  # noqa: SIM115
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDBENCH",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "k8sxray.daemon",
            "-b",
            "127.0.0.1:0",
            "-t",
            "off",
            "--http",
            "off",
            "-n",
            "us-east-1",
            "--endpoint-url",
            sink.url,
            "--no-telemetry",
            *daemon_args,
        ],
        stderr=log,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    try:
        port = 0
        deadline = time.monotonic() + 15
        while not port:
            found = re.search(r"receiving segments on udp [0-9.]+:(\d+)", Path(log.name).read_text())
            if found:
                port = int(found.group(1))
            elif time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(Path(log.name).read_text())
            time.sleep(0.02)
        time.sleep(0.3)
        drops0, cpu0 = rcvbuf_errors(), cpu_seconds(proc.pid)
        results: Any = mp.get_context("fork").Queue()
        child = mp.get_context("fork").Process(target=sender, args=(port, rate, count, results))
        child.start()
        sent, took = results.get(timeout=120)
        child.join()
        last, stable_since = -1, time.monotonic()
        while time.monotonic() - stable_since < 1.0 and sink.count < sent:
            if sink.count != last:
                last, stable_since = sink.count, time.monotonic()
            time.sleep(0.05)
        cpu = cpu_seconds(proc.pid) - cpu0
        drops = rcvbuf_errors() - drops0
        rss = peak_rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
        sink.server.shutdown()
        sink.server.server_close()
        log.close()
        os.unlink(log.name)
    return {
        "sent": sent,
        "delivered": sink.count,
        "rate": sent / took,
        "drops": drops,
        "cpu_per_1k": cpu / max(sink.count, 1) * 1000,
        "rss": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="20000,40000,80000")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--burst", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--daemon-args", default="")
    args = parser.parse_args()
    runs: list[tuple[int, int]] = [(int(r), int(int(r) * args.seconds)) for r in args.rates.split(",") if r]
    if args.burst:
        runs.append((0, args.burst))
    extra = shlex.split(args.daemon_args)
    print(
        f"{'rate/s':>9} {'sent':>8} {'delivered':>10} {'lost %':>7} {'kernel drops':>12} "
        f"{'CPU s/1k':>9} {'µs/seg':>7} {'(min-max)':>11} {'peak RSS MiB':>12}  "
        f"AWS Go daemon (issue 6, not run here)"
    )
    for rate, count in runs:
        results = [run_once(rate, count, extra) for _ in range(args.repeat)]
        r = {key: statistics.median(res[key] for res in results) for key in results[0]}
        label = f"{rate:>9}" if rate else f"{'burst':>9}"
        per_segment = [res["cpu_per_1k"] * 1000 for res in results]
        spread = f"{min(per_segment):.1f}-{max(per_segment):.1f}"
        lost = 100.0 * (r["sent"] - r["delivered"]) / max(r["sent"], 1)
        print(
            f"{label} {int(r['sent']):>8} {int(r['delivered']):>10} {lost:>7.2f} {int(r['drops']):>12} "
            f"{r['cpu_per_1k']:>9.4f} {r['cpu_per_1k'] * 1000:>7.1f} {spread:>11} {r['rss']:>12.1f}  "
            f"{GO_DAEMON.get(rate, '')}" + (f"   (sent at {r['rate']:,.0f}/s)" if rate == 0 else "")
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
