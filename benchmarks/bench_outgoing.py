"""CPU cost of one traced outgoing HTTP call: k8sxray vs the official SDK vs OpenTelemetry.

    python benchmarks/bench_outgoing.py [--calls 1000] [--rounds 4] [--repeat 5]
                                        [--transport in-process|loopback] [--client httpx|requests]
                                        [--variants k8sxray,k8sxray-xray]

``--transport``/``--client``/``--variants`` run one table, one client or some variants only
(quicker while iterating; the variants chosen still run side by side).

One run measures, for ``requests.Session`` and ``httpx.Client`` (keep-alive) calling a
loopback server in another process: no tracing, k8sxray (its default: ``X-Amzn-Trace-Id`` and
W3C ``traceparent``; and ``k8sxray-xray``, ``X-Amzn-Trace-Id`` alone), the official
aws-xray-sdk's patchers, and OpenTelemetry's instrumentors (BatchSpanProcessor, no-op exporter). Each
variant runs in its own fresh process (patches are global), inside a sampled parent
segment/span that is closed and sent every 50 calls; X-Ray documents go to a real UDP
socket drained by the server process. The figure is process CPU time (all threads, so
background emitters count) per call; "added" subtracts the untraced median; "- xray", on
k8sxray's row, subtracts k8sxray-xray's added cost: what sending W3C's ``traceparent`` beside
``X-Amzn-Trace-Id`` costs a call.

The loopback figures include a real socket round trip, whose CPU cost varies by tens of µs
on a busy machine; a second table repeats the measurement with an in-process transport
(a canned response below each library's own transport layer, where every tracer still
sees the call), which shows the tracers' own cost with far less noise.

Most of the remaining noise is between processes (one untraced process may run 10 µs per call
slower than the next), so the default spends the time on more fresh processes (5 per variant)
and fewer rounds in each; the last column shows how far apart they were.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

VARIANTS = ("k8sxray", "k8sxray-xray", "k8sxray-w3c", "xray-sdk", "otel")
"""k8sxray with its default propagators (X-Amzn-Trace-Id and W3C traceparent), k8sxray sending
X-Amzn-Trace-Id alone (``K8SXRAY_PROPAGATORS=xray``), the two in one process (``k8sxray-w3c``:
see :data:`PAIRED`), the X-Ray SDK, OpenTelemetry."""
PAIRED = "k8sxray-w3c"
"""Not a tracer but a measurement: one process times traced rounds sending X-Amzn-Trace-Id alone
and both headers back to back (the propagators switched between rounds), so what the W3C header
costs a call is a difference within one process, free of the noise between processes. Its row's
"untraced" column is X-Amzn-Trace-Id alone, "traced" both headers."""
CLIENTS = ("requests", "httpx")
TRANSPORTS = {
    "loopback": "a real HTTP server in another process",
    "in-process": "a canned response below the library's transport (no I/O, 3x the calls)",
}
BATCH = 50


# --- the server process: HTTP on loopback plus a UDP sink --------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def serve() -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))

    def drain() -> None:
        while True:
            udp.recv(65535)

    threading.Thread(target=drain, daemon=True).start()
    print(httpd.server_port, udp.getsockname()[1], flush=True)
    httpd.serve_forever()


# --- one variant, in its own process -------------------------------------------------------
class Tracer:
    """One tracer in this process, which can be switched off and on between timed rounds."""

    def __init__(self, parent: Callable[[], Any], on: Callable[[], None], off: Callable[[], None]) -> None:
        self.parent = parent  # a context manager factory: a sampled parent segment or span
        self.on = on
        self.off = off


def _setup(variant: str, udp: str, client_name: str, inproc: bool) -> tuple[Tracer, Any, Any]:
    """Set up *variant*; returns it with the untraced and the traced client (often one object)."""
    import contextlib

    if variant.startswith("k8sxray"):
        import k8sxray
        from k8sxray import _recorder, integrations

        options = {"propagators": ["xray"]} if variant == "k8sxray-xray" else {}
        k8sxray.configure(
            daemon_address=udp,
            sampling_rate=1.0,
            plugins=[],
            sampling_central=False,
            service_name="bench",
            **options,  # type: ignore[arg-type]
        )
        integration = integrations.load(client_name)
        integration.instrument()

        @contextlib.contextmanager
        def k8s_parent() -> Any:
            segment = _recorder.start_request(None, "bench", "GET", "/", time.time())
            try:
                yield
            finally:
                if segment is not None:
                    _recorder.end_segment(segment)

        client = _client(client_name, inproc)
        return Tracer(k8s_parent, integration.instrument, integration.uninstrument), client, client
    if variant == "xray-sdk":
        import requests
        from aws_xray_sdk.core import patch, xray_recorder

        xray_recorder.configure(
            daemon_address=udp, sampling=False, context_missing="LOG_ERROR", plugins=(), service="bench"
        )
        bare_client = _client(client_name, inproc)  # made before patch(): httpx's patch swaps the class
        names = ("request", "prepare_request")
        originals = {name: vars(requests.Session)[name] for name in names}
        patch([client_name])
        patched = {name: vars(requests.Session)[name] for name in names}

        def sdk_switch(functions: dict[str, Any]) -> Callable[[], None]:
            def switch() -> None:  # requests is patched on its class; httpx by its traced client
                for name, function in functions.items():
                    setattr(requests.Session, name, function)

            return switch

        @contextlib.contextmanager
        def sdk_parent() -> Any:
            xray_recorder.begin_segment("bench")
            try:
                yield
            finally:
                xray_recorder.end_segment()

        tracer = Tracer(sdk_parent, sdk_switch(patched), sdk_switch(originals))
        return tracer, bare_client, _client(client_name, inproc)
    from opentelemetry import trace
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class _NoOp(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_NoOp()))
    instrumentor: Any = RequestsInstrumentor() if client_name == "requests" else HTTPXClientInstrumentor()
    tracer = trace.get_tracer("bench", tracer_provider=provider)
    otel = Tracer(
        lambda: tracer.start_as_current_span("parent"),
        lambda: instrumentor.instrument(tracer_provider=provider),
        instrumentor.uninstrument,
    )
    otel.on()
    client = _client(client_name, inproc)
    return otel, client, client


def _client(client_name: str, inproc: bool) -> Any:
    import httpx
    import requests

    if client_name == "requests":
        session = requests.Session()
        session.trust_env = False  # no proxy lookups in the environment on every call
        if inproc:
            session.mount("http://", _canned_adapter())
        return session
    if not inproc:
        return httpx.Client(trust_env=False)
    import httpcore

    class CannedPool:
        def handle_request(self, request: Any) -> Any:
            return httpcore.Response(200, headers=[(b"Content-Length", b"2")], content=b"ok")

    transport = httpx.HTTPTransport()
    transport._pool = CannedPool()  # below HTTPTransport.handle_request, which OpenTelemetry wraps
    return httpx.Client(transport=transport, trust_env=False)


def _canned_adapter() -> Any:
    import requests
    import requests.adapters

    class CannedAdapter(requests.adapters.BaseAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:
            response = requests.Response()
            response.status_code = 200
            response.headers["Content-Length"] = "2"
            response._content = b"ok"
            response.request = request
            response.url = request.url
            return response

        def close(self) -> None:
            pass

    return CannedAdapter()


def run_variant(
    variant: str, client_name: str, url: str, udp: str, *, calls: int, rounds: int, inproc: bool
) -> list[tuple[float, float]]:
    """``rounds`` pairs of (untraced, traced) CPU µs per call, measured back to back in this
    process (the order alternates), so that a slower process or a slower minute cancels out."""
    import contextlib

    tracer, bare_client, traced_client = _setup(
        "k8sxray" if variant == PAIRED else variant, udp, client_name, inproc
    )
    if variant == PAIRED:  # both rounds traced: X-Amzn-Trace-Id alone (the "bare" one), then both
        from k8sxray import _recorder

        state = _recorder.state()
        both, alone = state.send, _recorder._XRAY
        tracer.on()

        def switch(traced: bool) -> None:
            state.send = both if traced else alone

        tracer = Tracer(tracer.parent, lambda: switch(True), lambda: switch(False))

    def timed(traced: bool) -> float:
        if traced:
            tracer.on()
        else:
            tracer.off()
        parent = tracer.parent if traced or variant == PAIRED else contextlib.nullcontext
        get = (traced_client if traced else bare_client).get
        for _ in range(50):  # warm up after the switch
            get(url)
        start = time.process_time()
        for _ in range(calls // BATCH):
            with parent():
                for _ in range(BATCH):
                    get(url)
        return (time.process_time() - start) / calls * 1e6

    for _ in range(4):  # warm up: connections, caches, both paths
        timed(False)
        timed(True)
    pairs = []
    for index in range(rounds):
        if index % 2:
            traced = timed(True)
            bare = timed(False)
        else:
            bare = timed(False)
            traced = timed(True)
        pairs.append((bare, traced))
    return pairs


# --- the orchestrator ------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=250, help="calls per timed round (multiple of 50)")
    parser.add_argument("--rounds", type=int, default=16, help="pairs of rounds in each process")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per variant (interleaved)")
    parser.add_argument("--transport", choices=tuple(TRANSPORTS), help="only this transport's table")
    parser.add_argument("--client", choices=CLIENTS, help="only this client")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--udp", help=argparse.SUPPRESS)
    parser.add_argument("--inproc", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.variant:
        print(
            json.dumps(
                run_variant(
                    args.variant,
                    args.client,
                    args.url,
                    args.udp,
                    calls=args.calls,
                    rounds=args.rounds,
                    inproc=args.inproc,
                )
            )
        )
        return

    variants = tuple(v for v in VARIANTS if v in args.variants.split(","))
    transports = (args.transport,) if args.transport else tuple(TRANSPORTS)
    clients = (args.client,) if args.client else CLIENTS
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY", "K8SXRAY", "OTEL"))}
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert server.stdout is not None
        http_port, udp_port = server.stdout.readline().split()
        url, udp = f"http://127.0.0.1:{http_port}/", f"127.0.0.1:{udp_port}"
        results: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        per_process: dict[tuple[str, str, str], list[float]] = {}  # each process's added median
        for repeat in range(args.repeat):
            order = variants if repeat % 2 == 0 else tuple(reversed(variants))
            for transport in transports:
                for client in clients:
                    for variant in order:
                        command = [sys.executable, __file__, "--variant", variant, "--client", client]
                        command += ["--url", url, "--udp", udp, "--rounds", str(args.rounds)]
                        command += ["--calls", str(args.calls * (3 if transport == "in-process" else 1))]
                        command += ["--inproc"] if transport == "in-process" else []
                        out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
                        pairs = [tuple(pair) for pair in json.loads(out.stdout.splitlines()[-1])]
                        key = (transport, client, variant)
                        results.setdefault(key, []).extend(pairs)  # type: ignore[arg-type]
                        per_process.setdefault(key, []).append(statistics.median(t - b for b, t in pairs))
    finally:
        server.terminate()
        server.wait()

    report(results, per_process, transports, clients, variants, args.rounds, args.repeat)


def report(  # noqa: PLR0917  # the run's results and its shape
    results: dict[tuple[str, str, str], list[tuple[float, float]]],
    per_process: dict[tuple[str, str, str], list[float]],
    transports: tuple[str, ...],
    clients: tuple[str, ...],
    variants: tuple[str, ...],
    rounds: int,
    repeat: int,
) -> None:
    """Print one table per transport."""
    print(
        f"CPU µs per outgoing call ({os.cpu_count()} CPUs); each process times {rounds} pairs of"
        " rounds, untraced and traced back to back;"
    )
    print(
        f"added: the median of all {rounds * repeat} pairs' differences; per process: the"
        f" lowest and highest of the {repeat} processes' added medians"
    )
    for transport in transports:
        print(f"\n{transport}: {TRANSPORTS[transport]}")
        print(
            f"{'client':<9} {'variant':<12} {'untraced':>9} {'traced':>8} {'added':>8} {'x k8sxray':>10}"
            f" {'- xray':>7}  added per process"
        )
        for client in clients:
            added = {}
            for variant in variants:
                pairs = results[(transport, client, variant)]
                added[variant] = statistics.median(t - b for b, t in pairs)
            for variant in variants:
                pairs = results[(transport, client, variant)]
                bare = statistics.median(b for b, _ in pairs)
                traced = statistics.median(t for _, t in pairs)
                ratio = ""
                if not variant.startswith("k8sxray") and added.get("k8sxray") is not None:
                    # a ratio to an added cost within the noise (or below zero) would mean nothing
                    ratio = (
                        f"{added[variant] / added['k8sxray']:.1f}x" if added["k8sxray"] >= 2.0 else "(noise)"
                    )
                # what the W3C header costs: added minus k8sxray-xray's (X-Amzn-Trace-Id alone)
                over = ""
                if variant == "k8sxray" and "k8sxray-xray" in added:
                    over = f"{added[variant] - added['k8sxray-xray']:+.1f}"
                elif variant == PAIRED:
                    over = f"{added[variant]:+.1f}"
                each = sorted(per_process[(transport, client, variant)])
                row = f"{client:<9} {variant:<12} {bare:>9.1f} {traced:>8.1f} {added[variant]:>+8.1f}"
                print(f"{row} {ratio:>10} {over:>7}  {each[0]:+.1f} .. {each[-1]:+.1f}")


if __name__ == "__main__":
    main()
