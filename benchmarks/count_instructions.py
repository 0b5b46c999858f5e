"""CPU instructions that tracing adds to one Flask request, counted by valgrind's callgrind.

    python benchmarks/count_instructions.py [--requests 2000] [--w3c]

Unlike timings, instruction counts do not move with the machine's load, so they show
small changes (the C entry against the Python one, one step more or less) that a timed
run cannot tell from noise. Each variant runs in its own process under callgrind, twice
(1,000 and 1,000 + N requests after a warm-up); the difference divided by N is the cost of
one request, and "added" is that minus the bare app's. Needs `valgrind` (Debian: `apt-get
install valgrind`); takes about 3 minutes. Instructions are not time: inside a framework,
Python frames cost more per instruction than C (see docs/benchmarks.md).

``--w3c`` counts instead what W3C's header costs beside X-Ray's: a Flask request continued from
``X-Amzn-Trace-Id`` against the same one from ``traceparent`` (sampled and not, each entry;
datagrams dropped in process), and a traced ``requests``/``httpx`` call (bench_outgoing's
in-process transport) sending ``X-Amzn-Trace-Id`` alone against both headers.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

UNSAMPLED = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"

VARIANTS = {
    "bare Flask": "bare",
    "k8sxray unsampled (Sampled=0)": "k8s-zero-native",
    "k8sxray unsampled (sampler: no)": "k8s-no-native",
    "k8sxray unsampled (Sampled=0, Python entry)": "k8s-zero-python",
    "k8sxray unsampled (sampler: no, Python entry)": "k8s-no-python",
    "k8sxray sampled": "k8s-sampled-native",
    "k8sxray sampled (Python entry)": "k8s-sampled-python",
    "X-Ray SDK unsampled (Sampled=0)": "sdk-zero",
    "X-Ray SDK XRayMiddleware, sampled": "sdk-sampled",
    "OpenTelemetry WSGI, sampled": "otel",
}


W3C_PAIRS = {
    # what is compared: (X-Amzn-Trace-Id's kind, traceparent's / both headers' kind)
    "Flask sampled, C entry": ("w3c-xray1-native", "w3c-tp1-native"),
    "Flask unsampled, C entry": ("w3c-xray0-native", "w3c-tp0-native"),
    "Flask sampled, Python entry": ("w3c-xray1-python", "w3c-tp1-python"),
    "Flask unsampled, Python entry": ("w3c-xray0-python", "w3c-tp0-python"),
    "requests call": ("out-requests-xray", "out-requests-both"),
    "httpx call": ("out-httpx-xray", "out-httpx-both"),
}


def _w3c_runner(kind: str) -> Callable[[int], None]:
    """A Flask request with one trace header (``w3c-<xray|tp><1|0>-<entry>``), or a traced outgoing
    call sending X-Amzn-Trace-Id alone or both headers (``out-<client>-<xray|both>``)."""
    import time

    from bench_app import SAMPLED_ROOT, TRACEPARENT, _flask_app, wsgi_runner

    import k8sxray
    from k8sxray import _recorder
    from k8sxray.integrations import INTEGRATIONS
    from k8sxray.integrations import wsgi as k8s_wsgi

    _, what, last = kind.split("-")
    if kind.startswith("out-"):
        from bench_outgoing import BATCH, _setup

        tracer, _, client = _setup("k8sxray-xray" if last == "xray" else "k8sxray", "127.0.0.1:9", what, True)
        tracer.on()
        get = client.get

        def calls(n: int) -> None:
            for _ in range(n // BATCH):
                segment = _recorder.start_request(None, "bench", "GET", "/", time.time())
                for _ in range(BATCH):
                    get("http://127.0.0.1:9/")
                if segment is not None:
                    _recorder.end_segment(segment)

        return calls

    k8sxray.configure(
        service_name="bench", sampling_rate=1.0, plugins=(), disabled_integrations=list(INTEGRATIONS)
    )

    class Dropped:  # no datagram, no emitter thread: only the request's own work is counted
        def send(self, document: bytes) -> None:
            pass

        def flush(self, timeout: float = 1.0) -> bool:
            return True

        def close(self) -> None:
            pass

    _recorder.set_emitter(Dropped())
    app = _flask_app()
    app.wsgi_app = k8s_wsgi.wrap(app.wsgi_app, native=last == "native")
    sampled = what.endswith("1")
    header = SAMPLED_ROOT if sampled else SAMPLED_ROOT[:-1] + "0"
    traceparent = TRACEPARENT if sampled else TRACEPARENT[:-1] + "0"
    if what.startswith("xray"):
        return wsgi_runner(app, header, None)
    return wsgi_runner(app, None, traceparent)


def _runner(kind: str) -> Callable[[int], None]:
    """The request loop of one variant (runs inside the callgrind child)."""
    import logging

    if kind.startswith(("w3c-", "out-")):
        logging.disable(logging.CRITICAL)
        return _w3c_runner(kind)

    from bench_app import _flask_app, otel_dropping_everything, sdk_sampling_everything, wsgi_runner

    logging.disable(logging.CRITICAL)
    if kind == "bare":
        return wsgi_runner(_flask_app(), None)
    if kind == "otel":
        from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

        finish = otel_dropping_everything()
        app = _flask_app()
        app.wsgi_app = OpenTelemetryMiddleware(app.wsgi_app)
        run_otel = wsgi_runner(app, None)

        def flushed_otel(n: int) -> None:
            run_otel(n)
            finish()

        return flushed_otel
    if kind.startswith("sdk"):
        xray_recorder, XRayMiddleware = sdk_sampling_everything("127.0.0.1:9")
        app = _flask_app()
        XRayMiddleware(app, xray_recorder)
        return wsgi_runner(app, UNSAMPLED if kind == "sdk-zero" else None)

    import k8sxray
    from k8sxray import _recorder
    from k8sxray.integrations import INTEGRATIONS
    from k8sxray.integrations import wsgi as k8s_wsgi
    from k8sxray.sampling.sampler import RateSampler

    k8sxray.configure(
        service_name="bench",
        daemon_address="127.0.0.1:9",  # discard: the datagrams' kernel time is not counted anyway
        sampling_rate=1.0,
        plugins=(),
        disabled_integrations=list(INTEGRATIONS),
    )
    _, case, entry = kind.split("-")
    app = _flask_app()
    app.wsgi_app = k8s_wsgi.wrap(app.wsgi_app, native=entry == "native")
    if case == "no":
        _recorder.state().sampler = RateSampler(0, 0.0)
    run = wsgi_runner(app, UNSAMPLED if case == "zero" else None)

    def flushed(n: int) -> None:
        run(n)
        _recorder.flush(1.0)

    return flushed


def child(kind: str, n: int) -> None:
    run = _runner(kind)
    run(200)  # warm-up: imports, caches, first-request work
    run(n)


def count(kind: str, n: int, python: str) -> int:
    """Instructions callgrind counts for a child process serving *n* requests."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/out",
                python,
                os.path.abspath(__file__),
                "--child",
                kind,
                str(n),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict layouts in every run
        )
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        raise RuntimeError(f"callgrind gave no count for {kind}:\n{out.stderr[-2000:]}")
    return int(match.group(1))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests counted per variant")
    parser.add_argument("--w3c", action="store_true", help="what traceparent costs beside X-Amzn-Trace-Id")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("count_instructions.py needs valgrind (Debian: apt-get install valgrind)")
    from k8sxray.integrations import wsgi as k8s_wsgi

    python = os.path.realpath(sys.executable)  # the interpreter itself, not a shim script
    n = args.requests
    if args.w3c:
        print(f"instructions per request or call (callgrind, {n} counted; C module built: {k8s_wsgi.NATIVE})")
        print(f"{'':32} {'X-Amzn-Trace-Id':>16} {'traceparent/both':>17} {'difference':>11}")
        for name, kinds in W3C_PAIRS.items():
            if kinds[0].endswith("-native") and not k8s_wsgi.NATIVE:
                continue
            xray, w3c = ((count(kind, 1000 + n, python) - count(kind, 1000, python)) / n for kind in kinds)
            print(f"{name:32} {xray:16,.0f} {w3c:17,.0f} {w3c - xray:+11,.0f}")
        return
    print(f"instructions per Flask request (callgrind, {n} requests; C module built: {k8s_wsgi.NATIVE})")
    print(f"{'variant':46} {'per request':>12} {'added':>8}")
    bare = 0
    for name, kind in VARIANTS.items():
        if kind.endswith("-native") and not k8s_wsgi.NATIVE:
            continue
        per: Any = (count(kind, 1000 + n, python) - count(kind, 1000, python)) / n
        if kind == "bare":
            bare = per
            print(f"{name:46} {per:12,.0f}")
        else:
            print(f"{name:46} {per:12,.0f} {per - bare:8,.0f}")


if __name__ == "__main__":
    main()
