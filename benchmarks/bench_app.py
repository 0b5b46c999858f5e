"""What tracing adds to a trivial WSGI and ASGI app: k8sxray vs the X-Ray SDK vs OpenTelemetry.

    python benchmarks/bench_app.py [--requests 3000] [--rounds 7]

All variants run in this one process, interleaved round by round. Datagrams go to a
real UDP socket drained by a separate receiver process, and a timed run ends only
when every datagram it sent has ARRIVED there (OpenTelemetry's runs end after
``force_flush``), so work deferred to a background thread is inside the measurement.
Prints the median µs per request of each variant, the added cost over the bare app
(wall clock, paired with a bare run just before), how many times more the peers add
than k8sxray, and the added CPU time of this process (all its threads; not the receiver).
A last table paces the WSGI requests at ``--rate`` per second (1,000 by default), where what a
tracer's background work and datagrams cost is shared by fewer requests than at full speed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SAMPLED_ROOT = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
TRACEPARENT = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
"""The same trace and parent as W3C's header."""


# --- the receiver: a separate process counting datagrams ------------------------------------
def _pin(cpu_index: int) -> None:
    """Keep this process on one CPU (the last one for the receiver): fewer migrations, less noise."""
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[cpu_index]})


def _receive(port_out: Any, counter: Any, ready: Any) -> None:
    _pin(-1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    port_out.value = sock.getsockname()[1]
    ready.set()
    buf = bytearray(70000)
    recv_into = sock.recv_into
    while True:
        recv_into(buf)
        counter.value += 1


class Receiver:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.port = ctx.RawValue("i", 0)
        self.counter = ctx.RawValue("q", 0)
        ready = ctx.Event()
        self.process = ctx.Process(target=_receive, args=(self.port, self.counter, ready), daemon=True)
        self.process.start()
        if not ready.wait(30):
            raise RuntimeError("the receiver did not start")
        self.address = ("127.0.0.1", self.port.value)

    def wait_for(self, target: int, timeout: float = 10.0) -> bool:
        deadline = time.perf_counter() + timeout
        counter = self.counter
        while counter.value < target:
            if time.perf_counter() > deadline:
                return False
            time.sleep(0.0001)
        return True

    def stop(self) -> None:
        self.process.kill()
        self.process.join(5)


# --- apps ------------------------------------------------------------------------------------
def _flask_app() -> Any:
    from flask import Flask

    app = Flask("bench")

    @app.get("/hello")
    def hello() -> str:
        return "hello"

    return app


def _starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    return Starlette(routes=[Route("/hello", hello)])


def _environ(header: str | None, traceparent: str | None = None) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/hello",
        "QUERY_STRING": "",
        "SERVER_NAME": "bench.local",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "bench.local",
        "HTTP_USER_AGENT": "bench/1.0",
        "REMOTE_ADDR": "10.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": None,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if header:
        environ["HTTP_X_AMZN_TRACE_ID"] = header
    if traceparent:
        environ["HTTP_TRACEPARENT"] = traceparent
    return environ


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    return None


def wsgi_runner(app: Any, header: str | None, traceparent: str | None = None) -> Callable[[int], None]:
    import io

    base = _environ(header, traceparent)

    def run(n: int) -> None:
        for _ in range(n):
            environ = dict(base)
            environ["wsgi.input"] = io.BytesIO()
            result = app(environ, _start_response)
            for _chunk in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()

    return run


def asgi_runner(app: Any, header: str | None, traceparent: str | None = None) -> Callable[[int], None]:
    headers = [(b"host", b"bench.local"), (b"user-agent", b"bench/1.0")]
    if header:
        headers.append((b"x-amzn-trace-id", header.encode()))
    if traceparent:
        headers.append((b"traceparent", traceparent.encode()))
    scope_base = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/hello",
        "raw_path": b"/hello",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("10.0.0.1", 5000),
        "server": ("bench.local", 80),
    }
    request_message = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request_message

    async def send(message: Any) -> None:
        return None

    async def many(n: int) -> None:
        for _ in range(n):
            await app(dict(scope_base), receive, send)

    loop = asyncio.new_event_loop()

    def run(n: int) -> None:
        loop.run_until_complete(many(n))

    return run


# --- peers -----------------------------------------------------------------------------------
def sdk_sampling_everything(daemon: str) -> tuple[Any, Any]:
    """The X-Ray SDK, configured to sample everything and send to *daemon*: its recorder and
    its Flask middleware class."""
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.ext.flask.middleware import XRayMiddleware

    logging.getLogger("aws_xray_sdk").setLevel(logging.ERROR)
    xray_recorder.configure(
        service="bench", sampling=False, daemon_address=daemon, context_missing="IGNORE_ERROR", plugins=()
    )
    return xray_recorder, XRayMiddleware


def otel_dropping_everything() -> Callable[[], None]:
    """OpenTelemetry with a BatchSpanProcessor and an exporter that drops everything; returns
    what ends a timed run (``force_flush``)."""
    from opentelemetry import trace as otel_trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NoOpExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoOpExporter()))
    otel_trace.set_tracer_provider(provider)

    def finish() -> None:
        provider.force_flush()

    return finish


# --- variants --------------------------------------------------------------------------------
class Variant:
    def __init__(
        self,
        name: str,
        run: Callable[[int], None],
        *,
        datagrams: int = 0,
        finish: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.run = run
        self.datagrams = datagrams  # per request
        self.finish = finish
        self.samples: list[float] = []
        self.added: list[float] = []  # paired with a bare run just before it
        self.cpu: list[float] = []  # this process's CPU time (all threads), µs per request
        self.added_cpu: list[float] = []


def build(address: tuple[str, int], emitter_modes: Sequence[str]) -> tuple[list[Variant], list[Variant]]:
    import k8sxray
    from k8sxray import _emitter, _recorder
    from k8sxray.integrations import INTEGRATIONS
    from k8sxray.integrations import wsgi as k8s_wsgi

    daemon = f"{address[0]}:{address[1]}"
    k8sxray.configure(
        service_name="bench",
        daemon_address=daemon,
        sampling_rate=1.0,
        plugins=(),
        disabled_integrations=list(INTEGRATIONS),
    )

    def k8s_finish() -> None:
        _recorder.flush(1.0)

    def flask_wrapped(native: bool) -> Any:
        app = _flask_app()
        app.wsgi_app = k8s_wsgi.wrap(app.wsgi_app, native=native)  # what instrument() does
        return app

    def never_sampled(run: Callable[[int], None]) -> Callable[[int], None]:
        # a request without a trace header that the sampler turns down (most requests, with
        # X-Ray's default rule): a new trace id, the sampler's decision, the response header
        from k8sxray.sampling.sampler import RateSampler

        sampler = RateSampler(0, 0.0)

        def wrapped(n: int) -> None:
            state = _recorder.state()
            previous, state.sampler = state.sampler, sampler
            try:
                run(n)
            finally:
                state.sampler = previous

        return wrapped

    def with_emitter(mode: str, run: Callable[[int], None]) -> Callable[[int], None]:
        # "inline", "batched" (the defaults), or "batched-<delay ms>-<batch>"; a "+inline-json"
        # suffix serialises on the request thread instead of in the flusher
        delay, batch = _emitter.DEFAULT_DELAY, _emitter.DEFAULT_BATCH
        serialise = None if mode.endswith("+inline-json") else _recorder.datagrams
        mode = mode.removesuffix("+inline-json")
        if mode == "inline":
            delay = 0.0
        elif mode.count("-") == 2:
            delay, batch = float(mode.split("-")[1]) / 1000, int(mode.split("-")[2])
        emitter = _emitter.UDPEmitter(lambda: address, delay=delay, batch=batch, serialise=serialise)

        def wrapped(n: int) -> None:
            _recorder.set_emitter(emitter)
            run(n)

        return wrapped

    xray_recorder, XRayMiddleware = sdk_sampling_everything(daemon)
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware as OtelASGI
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as OtelWSGI

    otel_finish = otel_dropping_everything()

    wsgi: list[Variant] = []
    wsgi.append(Variant("bare Flask", wsgi_runner(_flask_app(), None)))
    for mode in emitter_modes:
        traced = k8sxray.instrument(_flask_app())
        wsgi.append(
            Variant(
                f"k8sxray sampled ({mode})",
                with_emitter(mode, wsgi_runner(traced, None)),
                datagrams=1,
                finish=k8s_finish,
            )
        )
    # a trace continued from an incoming header: X-Ray's, or W3C's (the same ids)
    for label, header, traceparent in (
        ("X-Amzn-Trace-Id", SAMPLED_ROOT, None),
        ("traceparent", None, TRACEPARENT),
    ):
        wsgi.append(
            Variant(
                f"k8sxray sampled (incoming {label})",
                with_emitter("batched", wsgi_runner(k8sxray.instrument(_flask_app()), header, traceparent)),
                datagrams=1,
                finish=k8s_finish,
            )
        )
    # unsampled requests are served in C when k8sxray._native is built (the default); the
    # Python entry's rows show what an install without a C compiler gets
    entries = [("", True), (", Python entry", False)] if k8s_wsgi.NATIVE else [(", Python entry", False)]
    for suffix, native in entries:
        wsgi.append(
            Variant(
                f"k8sxray unsampled (Sampled=0{suffix})",
                wsgi_runner(flask_wrapped(native), SAMPLED_ROOT[:-1] + "0"),
            )
        )
        wsgi.append(  # the same trace and parent, in W3C's header alone
            Variant(
                f"k8sxray unsampled (traceparent 00{suffix})",
                wsgi_runner(flask_wrapped(native), None, TRACEPARENT[:-1] + "0"),
            )
        )
        wsgi.append(
            Variant(
                f"k8sxray unsampled (sampler: no{suffix})",
                never_sampled(wsgi_runner(flask_wrapped(native), None)),
            )
        )
    sdk_app = _flask_app()
    XRayMiddleware(sdk_app, xray_recorder)
    wsgi.append(Variant("X-Ray SDK XRayMiddleware", wsgi_runner(sdk_app, None), datagrams=1))
    wsgi.append(Variant("X-Ray SDK unsampled (Sampled=0)", wsgi_runner(sdk_app, SAMPLED_ROOT[:-1] + "0")))
    otel_app = _flask_app()
    otel_app.wsgi_app = OtelWSGI(otel_app.wsgi_app)
    wsgi.append(Variant("OpenTelemetry WSGI", wsgi_runner(otel_app, None), finish=otel_finish))

    asgi: list[Variant] = []
    asgi.append(Variant("bare Starlette", asgi_runner(_starlette_app(), None)))
    for mode in emitter_modes:
        traced_asgi = k8sxray.instrument(_starlette_app())
        asgi.append(
            Variant(
                f"k8sxray sampled ({mode})",
                with_emitter(mode, asgi_runner(traced_asgi, None)),
                datagrams=1,
                finish=k8s_finish,
            )
        )
    for label, header, traceparent in (
        ("X-Amzn-Trace-Id", SAMPLED_ROOT, None),
        ("traceparent", None, TRACEPARENT),
    ):
        asgi.append(
            Variant(
                f"k8sxray sampled (incoming {label})",
                with_emitter(
                    "batched", asgi_runner(k8sxray.instrument(_starlette_app()), header, traceparent)
                ),
                datagrams=1,
                finish=k8s_finish,
            )
        )
    asgi.append(
        Variant(
            "k8sxray unsampled (Sampled=0)",
            asgi_runner(k8sxray.instrument(_starlette_app()), SAMPLED_ROOT[:-1] + "0"),
        )
    )
    asgi.append(
        Variant(
            "k8sxray unsampled (traceparent 00)",
            asgi_runner(k8sxray.instrument(_starlette_app()), None, TRACEPARENT[:-1] + "0"),
        )
    )
    asgi.append(
        Variant("OpenTelemetry ASGI", asgi_runner(OtelASGI(_starlette_app()), None), finish=otel_finish)
    )
    return wsgi, asgi


def measure(variant: Variant, receiver: Receiver, n: int) -> float:
    start_count = receiver.counter.value
    start_cpu = time.process_time()
    start = time.perf_counter()
    variant.run(n)
    if variant.finish is not None:
        variant.finish()
    if variant.datagrams and not receiver.wait_for(start_count + n * variant.datagrams):
        print(f"  ! {variant.name}: only {receiver.counter.value - start_count} of {n} datagrams arrived")
    sample = (time.perf_counter() - start) / n * 1e6
    variant.samples.append(sample)
    variant.cpu.append((time.process_time() - start_cpu) / n * 1e6)
    return sample


def measure_paced(variant: Variant, receiver: Receiver, rate: float, seconds: float) -> float:
    """CPU µs per request (this process, all threads) with requests arriving *rate* per second:
    the app is idle between them, as a real service mostly is, so each batch of datagrams (and
    each wake-up of a background thread) is shared by fewer requests than at full speed."""
    n = max(1, int(rate * seconds))
    gap = 1.0 / rate
    start_count = receiver.counter.value
    start_cpu = time.process_time()
    due = time.perf_counter()
    for _ in range(n):
        variant.run(1)
        due += gap
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    if variant.finish is not None:
        variant.finish()
    if variant.datagrams:
        receiver.wait_for(start_count + n * variant.datagrams)
    return (time.process_time() - start_cpu) / n * 1e6


def report_paced(title: str, variants: list[Variant], added: dict[str, list[float]]) -> None:
    ours = [statistics.median(added[v.name]) for v in variants if v.name.startswith("k8sxray sampled")]
    best = min(ours) if ours else 0.0
    print(f"\n{title}")
    print(f"{'variant':46} {'added CPU µs':>13} {'peer adds x k8sxray':>20}  runs from .. to")
    for v in variants[1:]:
        runs = added[v.name]
        cpu = statistics.median(runs)
        ratio = f"{cpu / best:.1f}x" if best > 0 and not v.name.startswith("k8sxray") else ""
        print(f"{v.name:46} {cpu:13.1f} {ratio:>20}  {min(runs):.1f} .. {max(runs):.1f}")


def report(title: str, variants: list[Variant]) -> None:
    """Medians; "added" is the median of (variant - the bare run just before it)."""
    ours = [v for v in variants if v.name.startswith("k8sxray sampled") and "incoming" not in v.name]
    best = min(statistics.median(v.added) for v in ours) if ours else 0.0
    print(f"\n{title}")
    head = f"{'variant':46} {'µs/request':>11} {'added µs':>9} {'peer adds x k8sxray':>20}"
    print(head + f" {'added CPU µs':>13}")
    for v in variants:
        med = statistics.median(v.samples)
        if v is variants[0]:
            print(f"{v.name:46} {med:11.1f}")
            continue
        added = statistics.median(v.added)
        ratio = f"{added / best:.1f}x" if best > 0 and not v.name.startswith("k8sxray") else ""
        cpu = statistics.median(v.added_cpu)
        print(f"{v.name:46} {med:11.1f} {added:9.1f} {ratio:>20} {cpu:13.1f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1000, help="requests per timed run")
    parser.add_argument("--rounds", type=int, default=15, help="timed runs per variant (median reported)")
    parser.add_argument(
        "--emitter", default="batched", help="k8sxray emitter modes, comma-separated: batched, inline"
    )
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="requests/s of the paced WSGI table (0: skip it)"
    )
    parser.add_argument("--paced-rounds", type=int, default=7, help="paced runs per variant, 1 s each")
    args = parser.parse_args(argv)
    receiver = Receiver()
    _pin(0)
    try:
        wsgi, asgi = build(receiver.address, [m for m in args.emitter.split(",") if m])
        for variant in wsgi + asgi:  # warm up every code path
            measure(variant, receiver, 200)
            variant.samples.clear()
        for index in range(args.rounds):
            for group in (wsgi, asgi):
                bare = group[0]
                # every other round backwards: a variant's place in the round moves its figure by
                # up to a few µs here (the second of two like rows paid 1-4 µs more every time)
                for variant in group[1:] if index % 2 == 0 else group[:0:-1]:
                    before = measure(bare, receiver, args.requests)
                    variant.added.append(measure(variant, receiver, args.requests) - before)
                    variant.added_cpu.append(variant.cpu[-1] - bare.cpu[-1])
        # paced: the sampled variants, whose datagrams and background threads pacing is about
        paced_variants = [wsgi[0]] + [
            v for v in wsgi[1:] if "unsampled" not in v.name and "incoming" not in v.name
        ]
        paced: dict[str, list[float]] = {v.name: [] for v in paced_variants}
        for index in range(args.paced_rounds if args.rate > 0 else 0):
            for variant in paced_variants[1:]:
                pair = (wsgi[0], variant) if index % 2 == 0 else (variant, wsgi[0])  # alternate the order
                first, second = (measure_paced(v, receiver, args.rate, 1.0) for v in pair)
                bare, traced = (first, second) if index % 2 == 0 else (second, first)
                paced[variant.name].append(traced - bare)
        print(f"{args.requests} requests x {args.rounds} rounds, medians; datagrams to a receiver process")
        report("WSGI (Flask hello)", wsgi)
        report("ASGI (Starlette hello)", asgi)
        if args.rate > 0:
            title = f"WSGI at a steady {args.rate:,.0f} requests/s (added CPU per request)"
            report_paced(title, paced_variants, paced)
    finally:
        receiver.stop()


if __name__ == "__main__":
    main()
