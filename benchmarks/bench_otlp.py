"""OTLP in and out: ``python benchmarks/bench_otlp.py`` (about a minute and a half).

1. **Sink**: the daemon's CPU per segment with ``--sink otlp`` (protobuf + gzip, SigV4-signed like
   X-Ray's endpoint wants) beside ``--sink xray`` (PutTraceSegments), all fed ~440-byte segments
   over UDP at ``--rate`` (40,000/s) by ``bench_daemon.py``'s sender, all shipping to a fast local
   HTTP endpoint (ThreadingHTTPServer, Nagle off) that counts what arrives. Lossless is checked.
   ``otlp`` encodes documents in C when ``k8sxray.otlp._fast`` is built (the share of documents it
   took is printed), ``otlp-py`` is the same sink with ``K8SXRAY_NATIVE=false`` (Python only).
2. **Receiver, in process**: OTLP protobuf requests made by the OpenTelemetry SDK's own encoder
   (a server span and a database client span per request, realistic attributes), decoded and
   converted to segment documents on one thread: spans per second of one core.
3. **Receiver, end to end**: the same requests POSTed over keep-alive HTTP to a daemon's ``--otlp``
   port, its documents shipped to the fast endpoint: spans per daemon CPU second.

Options: ``--rate 40000`` ``--seconds 3`` ``--repeat 3``.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_daemon
from bench_daemon import CountingEndpoint, cpu_seconds, rcvbuf_errors, sender
from bench_daemon import Sink as XRayEndpoint
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from k8sxray.otlp import codec, segments

ENV = {
    **os.environ,
    "AWS_ACCESS_KEY_ID": "AKIDBENCH",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _spans(body: bytes) -> int:
    request = ExportTraceServiceRequest.FromString(gzip.decompress(body))
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


class OtlpEndpoint(CountingEndpoint):
    """A fast OTLP/HTTP endpoint that counts the spans of each request (gunzip + protobuf parse)."""

    def __init__(self) -> None:
        super().__init__(_spans, content_type="application/x-protobuf", path="/v1/traces")


def start_daemon(
    args: list[str], ready: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Any, re.Match[str]]:
    log = tempfile.NamedTemporaryFile(prefix="bench-otlp-", suffix=".log", delete=False)  # noqa: SIM115
    argv = [sys.executable, "-m", "k8sxray.daemon", "-b", "127.0.0.1:0", "-t", "off", "--http", "off"]
    proc = subprocess.Popen(
        [*argv, "--no-telemetry", *args], stderr=log, stdout=subprocess.DEVNULL, env=env or ENV
    )
    deadline = time.monotonic() + 15
    while not (found := re.search(ready, Path(log.name).read_text())):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(Path(log.name).read_text())
        time.sleep(0.02)
    time.sleep(0.3)
    return proc, log, found


def stop_daemon(proc: subprocess.Popen[bytes], log: Any) -> str:
    """Stops the daemon; returns its log."""
    proc.terminate()
    proc.wait(30)
    log.close()
    text = Path(log.name).read_text()
    os.unlink(log.name)
    return text


def wait_count(counter: Any, target: int) -> None:
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 1.0 and counter.count < target:
        if counter.count != last:
            last, stable_since = counter.count, time.monotonic()
        time.sleep(0.05)


def sink_run(kind: str, rate: int, count: int) -> dict[str, float]:
    """One daemon run at ``rate``: delivered, kernel drops, CPU µs per segment, share encoded in C."""
    if kind == "xray":
        endpoint: Any = XRayEndpoint()
        args = ["-n", "us-east-1", "--endpoint-url", endpoint.url, "--sink", "xray"]
    else:
        endpoint = OtlpEndpoint()
        args = ["-n", "us-east-1", "--sink", "otlp", "--otlp-endpoint", endpoint.url, "--otlp-sigv4"]
    env = {**ENV, "K8SXRAY_NATIVE": "false"} if kind == "otlp-py" else ENV
    proc, log, found = start_daemon(args, r"receiving segments on udp [0-9.]+:(\d+)", env)
    text = ""
    try:
        drops0, cpu0 = rcvbuf_errors(), cpu_seconds(proc.pid)
        results: Any = mp.get_context("fork").Queue()
        child = mp.get_context("fork").Process(
            target=sender, args=(int(found.group(1)), rate, count, results)
        )
        child.start()
        sent, _ = results.get(timeout=120)
        child.join()
        wait_count(endpoint, sent)
        cpu = cpu_seconds(proc.pid) - cpu0
        drops = rcvbuf_errors() - drops0
    finally:
        text = stop_daemon(proc, log)
        endpoint.server.shutdown()
        endpoint.server.server_close()
    share = float("nan")
    if counted := re.search(r"documents encoded as spans: (\d+) in C, (\d+) in Python", text):
        fast, slow = int(counted.group(1)), int(counted.group(2))
        share = 100.0 * fast / max(fast + slow, 1)
    return {
        "sent": sent,
        "delivered": endpoint.count,
        "drops": drops,
        "us": cpu / max(endpoint.count, 1) * 1e6,
        "c": share,
    }


def otlp_requests(spans_per_request: int = 500) -> bytes:
    """One OTLP protobuf request of server + database client span pairs, as the SDK encodes it."""
    exporter = InMemorySpanExporter()
    resource = Resource.create(
        {
            "service.name": "checkout",
            "k8s.pod.name": "checkout-7d9f8b6c5d-x2x9z",
            "k8s.namespace.name": "shop",
            "k8s.node.name": "ip-10-0-1-5",
            "cloud.platform": "aws_eks",
            "cloud.provider": "aws",
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    for _ in range(spans_per_request // 2):
        server_attributes = {
            "http.request.method": "GET",
            "url.full": "http://checkout.shop.svc:8080/api/v1/orders/12345",
            "http.response.status_code": 200,
            "user_agent.original": "Mozilla/5.0",
            "client.address": "10.0.3.7",
            "tenant": "acme",
            "aws.xray.annotations": ["tenant"],
        }
        with tracer.start_as_current_span(
            "GET /api/v1/orders/{id}", kind=SpanKind.SERVER, attributes=server_attributes
        ):
            client_attributes = {
                "db.system": "postgresql",
                "db.query.text": "SELECT * FROM orders WHERE id = $1",
                "db.namespace": "orders",
                "server.address": "db.shop.svc",
            }
            with tracer.start_as_current_span(
                "SELECT orders", kind=SpanKind.CLIENT, attributes=client_attributes
            ):
                pass
    body: bytes = encode_spans(exporter.get_finished_spans()).SerializeToString()
    provider.shutdown()
    return body


def receiver_in_process(body: bytes, seconds: float) -> float:
    """Spans per second decoded and converted (documents serialised) on this one thread."""
    n = len(codec.decode_protobuf(body))
    done, started = 0, time.process_time()
    while time.process_time() - started < seconds:
        segments.convert(codec.decode_protobuf(body))
        done += n
    return done / (time.process_time() - started)


def receiver_end_to_end(body: bytes, seconds: float) -> dict[str, float]:
    """A daemon's --otlp port fed over keep-alive HTTP for ``seconds``; spans per daemon CPU second."""
    endpoint = XRayEndpoint()
    args = ["-n", "us-east-1", "--endpoint-url", endpoint.url, "--sink", "xray", "--otlp", "127.0.0.1:0"]
    proc, log, found = start_daemon(args, r"receiving OTLP traces on http://127.0.0.1:(\d+)")
    spans_per_request = len(codec.decode_protobuf(body))
    try:
        cpu0 = cpu_seconds(proc.pid)
        connection = http.client.HTTPConnection("127.0.0.1", int(found.group(1)), timeout=10)
        sent, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
            answer = connection.getresponse()
            answer.read()
            if answer.status == 200:
                sent += spans_per_request
            else:
                time.sleep(0.05)  # 503: the buffer is full, as an SDK would, wait and send again
        took = time.monotonic() - started
        connection.close()
        wait_count(endpoint, sent // 2)  # a server span with its client span nested: one document
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        stop_daemon(proc, log)
        endpoint.server.shutdown()
        endpoint.server.server_close()
    return {
        "spans": sent,
        "rate": sent / took,
        "per_cpu": endpoint.count * 2 / max(cpu, 1e-9),
        "docs": endpoint.count,
    }


def main() -> None:
    # bench_daemon's segments count their ids from 0; an all-zero span id is invalid in OTLP
    make_datagram = bench_daemon.make_datagram
    bench_daemon.make_datagram = lambda i: make_datagram(i + 1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=40_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    count = int(args.rate * args.seconds)

    print(f"1. sink: {args.rate:,} segments/s for {args.seconds:g} s, {args.repeat} runs each (median)")
    columns = ("sent", "delivered", "lost %", "drops", "µs/seg", "(min-max)", "in C %", "/ xray")
    widths = (8, 10, 7, 6, 7, 11, 7, 7)
    print(f"{'sink':>7} " + " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    # the three kinds take turns, so that a noisy moment on the machine falls on all of them
    kinds = ("xray", "otlp", "otlp-py")
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for _ in range(args.repeat):
        for kind in kinds:
            runs[kind].append(sink_run(kind, args.rate, count))
    xray = statistics.median(run["us"] for run in runs["xray"])
    for kind in kinds:
        r = {key: statistics.median(run[key] for run in runs[kind]) for key in runs[kind][0]}
        lost = 100.0 * (r["sent"] - r["delivered"]) / max(r["sent"], 1)
        spread = f"{min(x['us'] for x in runs[kind]):.1f}-{max(x['us'] for x in runs[kind]):.1f}"
        share = "" if kind == "xray" else f"{r['c']:.0f}"
        print(
            f"{kind:>7} {int(r['sent']):>8} {int(r['delivered']):>10} {lost:>7.2f} {int(r['drops']):>6} "
            f"{r['us']:>7.1f} {spread:>11} {share:>7} {r['us'] / xray:>6.2f}x"
        )
    for kind in ("otlp", "otlp-py"):
        each = ", ".join(f"{o['us'] / x['us']:.2f}x" for o, x in zip(runs[kind], runs["xray"], strict=True))
        print(f"   {kind} / xray CPU per segment, run by run: {each} (target 1.5x)")
    print()
    sys.stdout.flush()

    body = otlp_requests()
    print("2. receiver in process (decode protobuf + convert + serialise documents), one thread:")
    rates = [receiver_in_process(body, args.seconds) for _ in range(args.repeat)]
    each = ", ".join(f"{r:,.0f}" for r in rates)
    print(f"   {statistics.median(rates):,.0f} spans/s (runs: {each}; target 20,000)\n")

    print("3. receiver end to end (HTTP POSTs of 500 spans to --otlp, shipped to a fast X-Ray endpoint):")
    for _ in range(args.repeat):
        r = receiver_end_to_end(body, args.seconds)
        print(
            f"   posted {int(r['spans']):,} spans at {r['rate']:,.0f}/s, "
            f"{int(r['docs']):,} documents shipped; {r['per_cpu']:,.0f} spans per daemon CPU second"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
