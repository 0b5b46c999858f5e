"""The C entry (k8sxray._native) against the Python one: same answers, same context, same
guards. The end-to-end WSGI tests (test_wsgi*.py) already run with both entries; these
drive the C entry in-process where its own code has choices to make."""

from __future__ import annotations

import contextvars
import gc
import logging
import re
import shutil
import sysconfig
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import k8sxray
from k8sxray import _guard, _recorder
from k8sxray.integrations import wsgi
from k8sxray.sampling.sampler import RateSampler

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"
UNSAMPLED = f"Root={ROOT};Parent={PARENT};Sampled=0"
NEW_ROOT = re.compile(r"Root=1-([0-9a-f]{8})-[0-9a-f]{24}")

needs_native = pytest.mark.skipif(wsgi._native is None, reason="k8sxray._native is not built")


def test_the_c_module_is_built_where_a_compiler_is() -> None:
    """A machine with a C compiler builds it at install time (so CI cannot lose it silently)."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): k8sxray runs on the Python entry alone")
    assert wsgi._native is not None
    assert wsgi.NATIVE is True


def environ(header: str | None = None, **extra: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/hello",
        "SERVER_NAME": "h",
        "SERVER_PORT": "80",
        "HTTP_HOST": "h:80",
        "wsgi.url_scheme": "http",
    }
    if header is not None:
        env["HTTP_X_AMZN_TRACE_ID"] = header
    env.update(extra)
    return env


class Seen:
    """What a request's app saw and what the server was given."""

    def __init__(self) -> None:
        self.in_app: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.after: str | None = None
        self.body = b""


def serve(
    app: Callable[..., Iterable[bytes]], env: dict[str, Any], *, native: bool, seen: Seen | None = None
) -> Seen:
    seen = seen or Seen()

    def inner(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen.in_app = k8sxray.trace_header()
        return app(environ, start_response)

    traced = wsgi.wrap(inner, native=native)
    body = traced(env, lambda status, headers, exc_info=None: seen.headers.extend(headers))
    seen.body = b"".join(body)
    close = getattr(body, "close", None)
    if close is not None:
        close()
    seen.after = k8sxray.trace_header()
    return seen


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


DURING: list[str | None] = []  # what the apps below saw while producing their bodies


def lazy(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    """A generator: start_response (with a Content-Length) runs on the server's first next()."""
    start_response("200 OK", [("Content-Length", "5")])
    DURING.append(k8sxray.trace_header())
    yield b"hello"


def unsized(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    DURING.append(k8sxray.trace_header())
    yield b"hello"


class Body:
    """An iterable body that is not a generator, its headers given with another spelling."""

    def __init__(self, start_response: Any, headers: list[Any]) -> None:
        start_response("200 OK", headers)

    def __iter__(self) -> Iterator[bytes]:
        DURING.append(k8sxray.trace_header())
        yield b"hello"

    def close(self) -> None:
        DURING.append(k8sxray.trace_header())


def shouting(environ: dict[str, Any], start_response: Any) -> Body:
    return Body(start_response, [("CONTENT-LENGTH", "5")])


def list_pairs(environ: dict[str, Any], start_response: Any) -> Body:
    return Body(start_response, [["Content-Length", "5"]])


def by_name(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response(status="200 OK", headers=[("Content-Length", "5")], exc_info=None)
    return [b"hello"]


def early(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers first, then works: an outgoing call after start_response still carries the trace."""
    start_response("200 OK", [("Content-Length", "5")])
    DURING.append(k8sxray.trace_header())
    return [b"hello"]


def early_iterable(environ: dict[str, Any], start_response: Any) -> Body:
    start_response("200 OK", [("Content-Length", "5")])
    DURING.append(k8sxray.trace_header())
    return Body(lambda *args: None, [])


class Name(str):
    pass


class Pair(NamedTuple):
    name: str
    value: str


def subclassed(environ: dict[str, Any], start_response: Any) -> Body:
    """Header items and names of subclasses (outside PEP 3333, still read as the Python entry reads them)."""
    return Body(start_response, [Pair(Name("Content-Length"), "5")])


def generated(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Headers given as an iterator (outside PEP 3333): read once, all of them kept."""
    start_response("200 OK", (pair for pair in [("Content-Type", "text/plain"), ("Content-Length", "5")]))
    return [b"hello"]


APPS = [hello, lazy, unsized, shouting, list_pairs, by_name, early, early_iterable, subclassed, generated]


@needs_native
def test_the_entry_is_c_and_undoes_like_the_python_one(configure_to: Any) -> None:
    configure_to()
    traced = wsgi.wrap(hello, native=True)
    assert type(traced).__name__ == "Entry"
    assert traced._k8sxray_traced is True  # type: ignore[attr-defined]
    assert traced.__wrapped__ is hello  # type: ignore[attr-defined]
    assert wsgi.wrap(traced) is traced  # traced once
    assert k8sxray.uninstrument(traced) is hello
    traced.note = "free-form attributes, as on a function"  # type: ignore[attr-defined]
    assert traced.__dict__ == {"note": "free-form attributes, as on a function"}
    assert callable(wsgi.wrap(hello, native=False))
    assert type(wsgi.wrap(hello, native=False)).__name__ == "function"
    with pytest.raises(TypeError):
        wsgi._native.Entry(hello, None)  # type: ignore[union-attr, arg-type]


# --- the same answers as the Python entry ------------------------------------------------------

HEX = "0123456789abcdef"


@st.composite
def headers(draw: st.DrawFn) -> str | None:
    """Trace headers near the usual unsampled form: one character changed, cut, or grown."""
    kind = draw(st.sampled_from(["usual", "changed", "cut", "grown", "other", "none", "empty"]))
    if kind == "none":
        return None
    if kind == "empty":
        return ""
    if kind == "other":
        return draw(st.text(max_size=90))
    root = (
        "1-" + draw(st.text(HEX, min_size=8, max_size=8)) + "-" + draw(st.text(HEX, min_size=24, max_size=24))
    )
    parent = draw(st.text(HEX, min_size=16, max_size=16))
    flag = draw(st.sampled_from("0001?"))  # mostly the one the C entry serves
    header = f"Root={root};Parent={parent};Sampled={flag}"
    if kind == "changed":
        at = draw(st.integers(0, len(header) - 1))
        near = st.sampled_from("ABCDEFgG:;=-_ \x00\xe9")  # what a lax check would let through
        header = header[:at] + draw(near | st.characters(codec="latin-1")) + header[at + 1 :]
    elif kind == "cut":
        header = header[: draw(st.integers(0, len(header) - 1))]
    elif kind == "grown":
        header += draw(st.text(min_size=1, max_size=5))
    return header


def shape(value: str | None, incoming: str | None) -> str | None:
    """A trace header with the ids drawn for this request masked (the two entries draw different
    ones); ids that came with the request stay."""
    if value is None:
        return None

    def mask(match: re.Match[str]) -> str:
        return match.group(0) if incoming and match.group(0) in incoming else match.group(1) + "<new>"

    return re.sub(r"(Root=|Parent=)[0-9a-f-]+", mask, value)


@needs_native
@pytest.mark.parametrize("app", APPS, ids=[app.__name__ for app in APPS])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=headers())
@example(header=UNSAMPLED.replace("bd86", "BD86"))
@example(header=UNSAMPLED.replace(PARENT, PARENT.upper()))
@example(header=UNSAMPLED.replace("1-5759", "2-5759"))
@example(header=UNSAMPLED + " ")
@example(header=UNSAMPLED.replace("Sampled=0", "sampled=0"))
def test_same_answers_as_the_python_entry(
    configure_to: Any, app: Callable[..., Iterable[bytes]], header: str | None
) -> None:
    configure_to()
    _recorder.state().sampler = RateSampler(0, 0.0)  # a new trace is not sampled
    results = []
    for native in (True, False):
        DURING.clear()
        seen = serve(app, environ(header), native=native)
        results.append(
            (
                shape(seen.in_app, header),
                [(name, shape(value, header)) for name, value in seen.headers],
                seen.body,
                [shape(value, header) for value in DURING],
                seen.after,
            )
        )
    assert results[0] == results[1]
    assert results[0][4] is None  # nothing left current


@needs_native
def test_unsampled_header_continues_its_trace(configure_to: Any) -> None:
    configure_to()
    seen = serve(hello, environ(UNSAMPLED), native=True)
    assert seen.in_app == UNSAMPLED  # outgoing calls pass the decision on
    assert ("X-Amzn-Trace-Id", f"Root={ROOT}") in seen.headers
    assert seen.headers[-1] == ("X-Amzn-Trace-Id", f"Root={ROOT}")
    assert seen.after is None


@needs_native
def test_a_request_the_sampler_turns_down_gets_a_new_trace(configure_to: Any) -> None:
    configure_to()
    _recorder.state().sampler = RateSampler(0, 0.0)
    before = int(time.time())
    seen = serve(hello, environ(), native=True)
    name, value = seen.headers[-1]
    match = NEW_ROOT.fullmatch(value)
    assert name == "X-Amzn-Trace-Id"
    assert match is not None
    assert before <= int(match.group(1), 16) <= int(time.time())
    assert seen.in_app == value + ";Sampled=0"
    other = serve(hello, environ(), native=True)
    assert other.headers[-1] != seen.headers[-1]  # a new trace each time


@needs_native
def test_the_sampler_is_asked_once_per_request(configure_to: Any, daemon: Any) -> None:
    configure_to()
    asked: list[tuple[str, str, str]] = []
    answers = iter([True, False, True, False])

    class Sampler:
        def decide(self, host: str, method: str, path: str) -> bool:
            asked.append((host, method, path))
            return next(answers)

        def close(self) -> None:
            return None

    _recorder.state().sampler = Sampler()  # type: ignore[assignment]
    sampled = [
        NEW_ROOT.fullmatch(serve(hello, environ(SCRIPT_NAME="/app"), native=True).headers[-1][1])
        for _ in range(4)
    ]
    assert asked == [("h:80", "GET", "/app/hello")] * 4
    assert all(sampled)
    documents = daemon.segments(2)
    assert [d["http"]["request"]["url"] for d in documents] == ["http://h:80/app/hello"] * 2


@needs_native
def test_an_environ_without_the_usual_strings_goes_to_the_python_entry(configure_to: Any) -> None:
    configure_to()
    _recorder.state().sampler = RateSampler(0, 0.0)
    env = environ()
    env["HTTP_HOST"] = b"bytes"  # not a str: the Python entry decides what to make of it
    env.pop("REQUEST_METHOD")
    seen = serve(hello, env, native=True)
    assert NEW_ROOT.fullmatch(seen.headers[-1][1])
    assert seen.body == b"hello"


class BrokenSampler:
    """A sampler with a bug: every decision raises."""

    def decide(self, host: str, method: str, path: str) -> bool:
        raise RuntimeError("sampler bug")

    def close(self) -> None:
        return None


# --- bodies, errors and context ----------------------------------------------------------------


@needs_native
def test_a_streamed_body_keeps_the_trace_current_until_closed(configure_to: Any) -> None:
    configure_to()
    during: list[str | None] = []

    def streaming(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])  # called on the first next()
        during.append(k8sxray.trace_header())
        yield b"a"
        during.append(k8sxray.trace_header())
        yield b"b"

    traced = wsgi.wrap(streaming, native=True)
    got: list[tuple[str, str]] = []
    body = traced(environ(UNSAMPLED), lambda status, headers, exc_info=None: got.extend(headers))
    assert k8sxray.trace_header() == UNSAMPLED
    assert b"".join(body) == b"ab"
    assert during == [UNSAMPLED, UNSAMPLED]
    body.close()  # type: ignore[attr-defined]
    assert k8sxray.trace_header() is None
    assert got[-1] == ("X-Amzn-Trace-Id", f"Root={ROOT}")


@needs_native
def test_the_apps_exception_propagates_unchanged(configure_to: Any) -> None:
    configure_to()
    error = KeyError("the app's own")

    def failing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise error

    with pytest.raises(KeyError) as raised:
        wsgi.wrap(failing, native=True)(environ(UNSAMPLED), lambda *args: None)
    assert raised.value is error
    assert k8sxray.trace_header() is None
    assert _guard.counts() == {}


@needs_native
def test_exc_info_reaches_the_server(configure_to: Any) -> None:
    configure_to()
    calls: list[tuple[Any, ...]] = []

    def recovering(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        try:
            raise RuntimeError("late")
        except RuntimeError as exc:
            start_response("500 Internal Server Error", [("Content-Length", "3")], (type(exc), exc, None))
        start_response("200 OK", [("Content-Length", "2")], None)
        return [b"err"]

    def start_response(*args: Any) -> None:
        calls.append(args)

    wsgi.wrap(recovering, native=True)(environ(UNSAMPLED), start_response)
    assert [len(call) for call in calls] == [2, 3, 2]  # exc_info=None is not passed on, as in Python
    assert all(call[1][-1] == ("X-Amzn-Trace-Id", f"Root={ROOT}") for call in calls)
    assert calls[1][2][0] is RuntimeError


@needs_native
def test_a_failure_inside_the_c_entry_is_logged_once_and_the_app_still_answers(
    configure_to: Any, caplog: pytest.LogCaptureFixture
) -> None:
    configure_to()

    _recorder.state().sampler = BrokenSampler()  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="k8sxray"):
        first = serve(hello, environ(), native=True)
        second = serve(hello, environ(), native=True)
    assert first.body == second.body == b"hello"
    assert first.headers == [("Content-Type", "text/plain"), ("Content-Length", "5")]  # served untraced
    assert _guard.counts() == {"wsgi.start": 2}
    warnings = [r for r in caplog.records if "internal error in wsgi.start" in r.getMessage()]
    assert len(warnings) == 1
    assert "sampler bug" in str(warnings[0].exc_info[1])  # type: ignore[index]


@needs_native
def test_headers_the_c_entry_cannot_extend_reach_the_server_as_given(configure_to: Any) -> None:
    configure_to()
    given_headers = object()  # not a sequence: the server will say what it thinks of it
    received: list[Any] = []

    def odd(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", given_headers)
        return [b""]

    wsgi.wrap(odd, native=True)(environ(UNSAMPLED), lambda status, headers: received.append(headers))
    assert received == [given_headers]
    assert _guard.counts() == {"wsgi.start_response": 1}
    assert k8sxray.trace_header() is None


@needs_native
def test_a_body_closed_in_another_context_restores_what_was_current_there(configure_to: Any) -> None:
    """Best effort, as the Python entry does it: the closing context gets the value the request
    replaced; the request's own context keeps the trace (it cannot be reached from there)."""
    configure_to()

    def streaming(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"x"

    def request() -> list[str | None]:
        body = wsgi.wrap(streaming, native=True)(environ(UNSAMPLED), lambda *args: None)
        assert b"".join(body) == b"x"
        closed_in: list[str | None] = []

        def close_elsewhere() -> None:
            body.close()  # type: ignore[attr-defined]
            closed_in.append(k8sxray.trace_header())

        thread = threading.Thread(target=contextvars.copy_context().run, args=(close_elsewhere,))
        thread.start()
        thread.join()
        return [*closed_in, k8sxray.trace_header()]

    assert contextvars.copy_context().run(request) == [None, UNSAMPLED]  # run apart: nothing leaks
    assert k8sxray.trace_header() is None
    assert _guard.counts() == {}


@needs_native
def test_tracing_switched_off_between_requests_is_honoured(configure_to: Any) -> None:
    configure_to()
    traced = wsgi.wrap(hello, native=True)
    got: list[tuple[str, str]] = []
    traced(environ(UNSAMPLED), lambda status, headers: got.extend(headers))
    assert got[-1][0] == "X-Amzn-Trace-Id"
    configure_to(enabled=False)
    got.clear()
    traced(environ(UNSAMPLED), lambda status, headers: got.extend(headers))
    assert got == [("Content-Type", "text/plain"), ("Content-Length", "5")]


def streamed(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"hello"


@needs_native
@pytest.mark.parametrize(
    ("header", "app"), [(UNSAMPLED, hello), (None, hello), (UNSAMPLED, streamed), (None, streamed)]
)
def test_no_memory_is_kept_per_request(
    configure_to: Any, header: str | None, app: Callable[..., Iterable[bytes]]
) -> None:
    configure_to()
    _recorder.state().sampler = RateSampler(0, 0.0)
    traced = wsgi.wrap(app, native=True)

    def run(n: int) -> None:
        for _ in range(n):
            body = traced(environ(header), lambda status, headers: None)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()

    run(2_000)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        run(20_000)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 64 * 1024, f"{grown} bytes kept after 20,000 requests"


@needs_native
def test_a_responder_kept_in_a_cycle_is_collected(configure_to: Any) -> None:
    configure_to()
    kept: list[Any] = []

    def keeping(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        holder: dict[str, Any] = {"start_response": start_response}
        holder["self"] = holder
        kept.append(holder)
        start_response("200 OK", [("Content-Length", "0")])
        return []

    wsgi.wrap(keeping, native=True)(environ(UNSAMPLED), lambda *args: None)
    assert type(kept[0]["start_response"]).__name__ == "Responder"
    kept.clear()
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o).__name__ == "Responder"]


@needs_native
@pytest.mark.parametrize(("setting", "entry"), [("false", "function"), ("true", "Entry"), (None, "Entry")])
def test_k8sxray_native_chooses_the_entry(
    monkeypatch: pytest.MonkeyPatch, configure_to: Any, setting: str | None, entry: str
) -> None:
    if setting is None:
        monkeypatch.delenv("K8SXRAY_NATIVE", raising=False)
    else:
        monkeypatch.setenv("K8SXRAY_NATIVE", setting)
    config = configure_to()
    assert config.native is (entry == "Entry")
    assert config.sources["native"].kind == ("default" if setting is None else "env")
    if setting is None:
        assert config.sources["native"].detail == "the C module is built"  # python -m k8sxray config says so
    assert type(k8sxray.instrument(hello)).__name__ == entry
    got: list[tuple[str, str]] = []
    k8sxray.instrument(hello)(environ(UNSAMPLED), lambda status, headers: got.extend(headers))
    assert got[-1] == ("X-Amzn-Trace-Id", f"Root={ROOT}")  # either way, the same answer


@needs_native
def test_a_failure_wrapping_a_streamed_body_restores_the_context_and_serves_the_body(
    configure_to: Any,
) -> None:
    configure_to()
    native = wsgi._native
    assert native is not None

    def broken(trace: Any, result: Any) -> Any:
        raise RuntimeError("wrapper bug")

    def streaming(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"still served"

    traced = wsgi.wrap(streaming, native=True)  # the hooks are set by the first wrap
    native.hooks(**{**wsgi._native_hooks(), "streaming_body": broken})
    try:
        body = traced(environ(UNSAMPLED), lambda *args: None)
        assert k8sxray.trace_header() is None  # restored at once: nothing would restore it later
        assert b"".join(body) == b"still served"
    finally:
        native.hooks(**wsgi._native_hooks())
    assert _guard.counts() == {"wsgi.end": 1}


@pytest.mark.parametrize("native", [pytest.param(True, marks=needs_native), False], ids=["native", "python"])
def test_a_keyboard_interrupt_while_logging_a_failure_is_not_swallowed(
    configure_to: Any, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    """Only `Exception`s are kept from the app; Ctrl-C in the middle of logging one still stops it."""
    configure_to()

    def interrupted(where: str) -> None:
        raise KeyboardInterrupt

    _recorder.state().sampler = BrokenSampler()  # type: ignore[assignment]
    monkeypatch.setattr(_guard, "internal_error", interrupted)
    with pytest.raises(KeyboardInterrupt):
        wsgi.wrap(hello, native=native)(environ(), lambda *args: None)
    assert k8sxray.trace_header() is None


@pytest.mark.parametrize("native", [pytest.param(True, marks=needs_native), False], ids=["native", "python"])
@pytest.mark.parametrize("app", [early, early_iterable])
def test_an_outgoing_call_after_start_response_still_carries_the_trace(
    configure_to: Any, native: bool, app: Callable[..., Iterable[bytes]]
) -> None:
    """A bare WSGI app may answer first and work after: its trace is current until it returns."""
    configure_to()
    DURING.clear()
    seen = serve(app, environ(UNSAMPLED), native=native)
    assert DURING[0] == UNSAMPLED
    assert seen.after is None


# --- W3C traceparent: read in C as _header.parse_traceparent reads it ---------------------------
TRACE = ROOT[2:10] + ROOT[11:]
W3C_UNSAMPLED = f"00-{TRACE}-{PARENT}-00"
W3C_SAMPLED = f"00-{TRACE}-{PARENT}-01"
STATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"


@st.composite
def traceparents(draw: st.DrawFn) -> str | None:
    """Traceparents valid and near-valid: every version and flags that matter, ids all zero or
    not, one character changed, cut or grown, whitespace around, or anything."""
    kind = draw(
        st.sampled_from(["valid", "valid", "changed", "cut", "grown", "spaced", "other", "none", "empty"])
    )
    if kind == "none":
        return None
    if kind == "empty":
        return ""
    if kind == "other":
        return draw(st.text(max_size=80))
    trace = draw(
        st.sampled_from(["0" * 32, "0" * 8 + TRACE[8:], TRACE[:8] + "0" * 24])
        | st.text(HEX, min_size=32, max_size=32)
    )
    parent = draw(st.just("0" * 16) | st.text(HEX, min_size=16, max_size=16))
    version = draw(st.sampled_from(["00", "00", "01", "cc", "fe", "ff"]))
    flags = draw(st.sampled_from(["00", "00", "01", "02", "03", "0a", "0b", "10", "11", "fe", "ff"]))
    value = f"{version}-{trace}-{parent}-{flags}"
    if kind == "changed":
        at = draw(st.integers(0, len(value) - 1))
        value = value[:at] + draw(st.sampled_from("0aAgG- \t\x00\xe9,") | st.characters()) + value[at + 1 :]
    elif kind == "cut":
        value = value[: draw(st.integers(0, len(value) - 1))]
    elif kind == "grown":
        value += draw(st.sampled_from(["-", "-x", "-what-the-future-holds", "x", ",", " ", "\t"]))
        value += draw(st.text(max_size=3))
    elif kind == "spaced":
        value = (
            draw(st.sampled_from(["", " ", "\t", " \t"])) + value + draw(st.sampled_from(["", " ", "\t "]))
        )
    return value


def seen_outgoing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers with the trace as the app sees it: its kind, trace id and parent, and the trace
    headers an outgoing call made here would carry."""
    sent = {name: value for _key, (name, value) in _recorder.trace_headers() or ()}
    trace: Any = _recorder.current()
    sent["kind"] = type(trace).__name__  # Segment (sampled) or UnsampledTrace
    sent["trace"] = str(getattr(trace, "trace_id", None))
    sent["parent"] = str(getattr(trace, "parent_id", None))
    body = "\n".join(f"{key}: {value}" for key, value in sorted(sent.items())).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def masked(text: str, incoming: str) -> str:
    """Ids drawn for this request masked (the two entries draw different ones); ids that came
    with the request stay."""

    def mask(match: re.Match[str]) -> str:
        return match.group(0) if match.group(0) in incoming else "<new>"

    return re.sub(r"1-[0-9a-f]{8}-[0-9a-f]{24}|[0-9a-f]{32}|[0-9a-f]{16}", mask, text)


@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    traceparent=traceparents(),
    tracestate=st.sampled_from([None, None, "", STATE, " ", "bad\x01state"]),
    xray=st.sampled_from([None, None, "", UNSAMPLED, f"Root={ROOT};Parent={PARENT};Sampled=1"]),
    sample_new=st.booleans(),
)
@example(traceparent=W3C_UNSAMPLED, tracestate=None, xray=None, sample_new=False)
@example(traceparent=W3C_SAMPLED, tracestate=None, xray=None, sample_new=False)
@example(traceparent=W3C_UNSAMPLED, tracestate=STATE, xray=None, sample_new=False)
@example(traceparent=f" {W3C_UNSAMPLED}\t", tracestate=None, xray="", sample_new=False)
@example(traceparent=f"cc-{TRACE}-{PARENT}-02-later", tracestate=None, xray=None, sample_new=False)
@example(traceparent=f"ff-{TRACE}-{PARENT}-00", tracestate=None, xray=None, sample_new=True)
@example(traceparent=f"00-{'0' * 32}-{PARENT}-00", tracestate=None, xray=None, sample_new=False)
@example(traceparent=f"00-{TRACE}-{'0' * 16}-00", tracestate=None, xray=None, sample_new=False)
@example(traceparent=f"00-{TRACE.upper()}-{PARENT}-00", tracestate=None, xray=None, sample_new=False)
@example(traceparent=W3C_UNSAMPLED + "\xe9", tracestate=None, xray=None, sample_new=False)
@example(traceparent=W3C_UNSAMPLED[:-2] + "\u0100\u0100", tracestate=None, xray=None, sample_new=False)
def test_a_traceparent_gets_the_same_answers_from_both_entries(
    configure_to: Any, traceparent: str | None, tracestate: str | None, xray: str | None, sample_new: bool
) -> None:
    """The same trace id, parent, sampling decision, response header and outgoing headers from
    the C entry as from the Python one, whatever the W3C headers (and X-Amzn-Trace-Id) say."""
    configure_to()
    extra = {"HTTP_TRACEPARENT": traceparent, "HTTP_TRACESTATE": tracestate}
    env = environ(xray, **{key: value for key, value in extra.items() if value is not None})
    incoming = " ".join(str(value) for value in (traceparent, tracestate, xray))
    results = []
    for native in (True, False):
        _recorder.state().sampler = RateSampler(0, 1.0 if sample_new else 0.0)
        seen = serve(seen_outgoing, dict(env), native=native)
        assert seen.after is None  # nothing left current
        trace_headers = [value for name, value in seen.headers if name == "X-Amzn-Trace-Id"]
        assert len(trace_headers) == 1
        results.append((masked(trace_headers[0], incoming), masked(seen.body.decode(), incoming)))
    assert results[0] == results[1]


class Spy:
    """Stands in for the Python entry: counts the requests the C entry hands it."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.python = wsgi.wrap(app, native=False)
        self.handed = 0

    def __call__(
        self, environ: dict[str, Any], start_response: Any, decided: bool = False
    ) -> Iterable[bytes]:
        self.handed += 1
        return self.python(environ, start_response, decided)  # type: ignore[call-arg]


@needs_native
@pytest.mark.parametrize(
    ("traceparent", "tracestate", "in_c"),
    [
        (W3C_UNSAMPLED, None, True),  # the sampled flag off: served in C
        (f"00-{TRACE}-{PARENT}-02", None, True),
        (f" cc-{TRACE}-{PARENT}-00-later ", None, True),  # a later version, whitespace around
        (W3C_SAMPLED, None, False),  # sampled: a segment, recorded by the Python entry
        (W3C_UNSAMPLED, STATE, False),  # a tracestate to pass on: the Python entry
        (f"00-{'0' * 32}-{PARENT}-00", None, True),  # invalid: a new trace, the sampler says no
        (W3C_UNSAMPLED[:-1], None, True),
    ],
)
def test_an_unsampled_traceparent_is_served_in_c(
    configure_to: Any, traceparent: str, tracestate: str | None, in_c: bool
) -> None:
    configure_to()
    _recorder.state().sampler = RateSampler(0, 0.0)
    wsgi.wrap(hello, native=True)  # hooks the C module
    spy = Spy(seen_outgoing)
    entry = wsgi._native.Entry(seen_outgoing, spy)  # type: ignore[union-attr]
    received: list[tuple[str, str]] = []
    extra = {"HTTP_TRACEPARENT": traceparent} | ({"HTTP_TRACESTATE": tracestate} if tracestate else {})
    body = b"".join(
        entry(environ(None, **extra), lambda status, headers, exc_info=None: received.extend(headers))
    )
    assert spy.handed == (0 if in_c else 1)
    valid = (
        "0" * 32 not in traceparent and traceparent.strip().count("-") >= 3 and len(traceparent.strip()) >= 55
    )
    if valid:
        assert ("X-Amzn-Trace-Id", f"Root={ROOT}") in received
        assert f"traceparent: 00-{TRACE}-" in body.decode()
    else:
        assert NEW_ROOT.fullmatch(received[-1][1])
    assert k8sxray.trace_header() is None


@needs_native
def test_with_xray_alone_the_c_entry_ignores_a_traceparent(configure_to: Any) -> None:
    configure_to(propagators=["xray"])
    _recorder.state().sampler = RateSampler(0, 0.0)
    seen = serve(hello, environ(None, HTTP_TRACEPARENT=W3C_UNSAMPLED), native=True)
    assert NEW_ROOT.fullmatch(seen.headers[-1][1])
    assert ROOT not in seen.headers[-1][1]


@pytest.mark.parametrize("native", [pytest.param(True, marks=needs_native), False])
@pytest.mark.parametrize(
    "header", [None, UNSAMPLED, UNSAMPLED.replace("Sampled=0", "Sampled=1"), f"Root={ROOT};Sampled=?"]
)
@pytest.mark.parametrize("traceparent", [None, W3C_UNSAMPLED, W3C_SAMPLED])
@pytest.mark.parametrize("name", ["X-Amzn-Trace-Id", "x-amzn-trace-id", "X-AMZN-TRACE-ID"])
def test_a_trace_header_the_app_set_is_not_added_twice(
    configure_to: Any, native: bool, header: str | None, traceparent: str | None, name: str
) -> None:
    """The official SDK's middleware (or any app) that answers with its own X-Amzn-Trace-Id
    keeps it, alone, whichever entry serves the request."""
    configure_to()
    _recorder.state().sampler = RateSampler(0, 0.0)

    def own_header(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2"), (name, "the app's")])
        return [b"ok"]

    extra = {"HTTP_TRACEPARENT": traceparent} if traceparent else {}
    seen = serve(own_header, environ(header, **extra), native=native)
    assert [value for key, value in seen.headers if key.lower() == "x-amzn-trace-id"] == ["the app's"]
    assert seen.after is None
