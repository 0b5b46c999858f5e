"""Apps that already use the official SDK's web middleware, run unchanged under k8sxray.

Each framework's real SDK middleware (Flask, Django, Bottle) in a real gunicorn, traced by
``k8sxray.instrument(app)`` in the app or by ``k8sxray-run gunicorn`` around the unchanged app:
every request is answered as without k8sxray, and exactly one segment per sampled request
reaches the UDP socket, k8sxray's, holding what the middleware and the app recorded through
the SDK. aiohttp (neither WSGI nor ASGI, so not traced by k8sxray) keeps its SDK middleware's
own segments with the bridge instrumented.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import k8sxray

pytest.importorskip("aws_xray_sdk")
pytest.importorskip("gunicorn")

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"
SAMPLED = f"Root={ROOT};Parent={PARENT};Sampled=1"
UNSAMPLED = f"Root={ROOT};Parent={PARENT};Sampled=0"

# What every app does in its traced view, through the SDK only (the same for each framework).
SDK_WORK = textwrap.dedent(
    """
    from aws_xray_sdk.core import xray_recorder

    @xray_recorder.capture("captured")
    def captured(n):
        xray_recorder.put_annotation("in_capture", n)
        return n * 2

    def sdk_work():
        assert captured(21) == 42
        with xray_recorder.in_subsegment("block") as sub:
            sub.put_metadata("detail", {"n": 1}, "app")
        segment = xray_recorder.current_segment()
        segment.put_annotation("order", "o-7")
        segment.set_user("alice")
        return segment.trace_id
    """
)

FLASK_APP = textwrap.dedent(
    """
    import os
    import flask, jinja2
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.ext.flask.middleware import XRayMiddleware
    from sdk_work import sdk_work

    xray_recorder.configure(service="sdk-name", sampling=False, context_missing="LOG_ERROR")
    app = flask.Flask("flask_sdk")
    app.jinja_loader = jinja2.DictLoader({"page.html": "trace {{ trace }}"})
    XRayMiddleware(app, xray_recorder)

    @app.get("/work")
    def work():
        return flask.render_template("page.html", trace=sdk_work())

    @app.get("/boom")
    def boom():
        raise ZeroDivisionError("flask kaboom")

    if os.environ["MODE"] == "instrument":
        import k8sxray
        app = k8sxray.instrument(app)
    """
)

DJANGO_APP = textwrap.dedent(
    """
    import os
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        SECRET_KEY="test-only",
        INSTALLED_APPS=["aws_xray_sdk.ext.django"],
        MIDDLEWARE=["aws_xray_sdk.ext.django.middleware.XRayMiddleware"],
        TEMPLATES=[{
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "OPTIONS": {"loaders": [("django.template.loaders.locmem.Loader",
                                     {"page.html": "trace {{ trace }}"})]},
        }],
        XRAY_RECORDER={"AWS_XRAY_TRACING_NAME": "sdk-name", "SAMPLING": False,
                       "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR", "PATCH_MODULES": []},
        LOGGING_CONFIG=None,
    )

    from django.core.wsgi import get_wsgi_application
    from django.shortcuts import render
    from django.urls import path
    from sdk_work import sdk_work

    def work(request):
        return render(request, "page.html", {"trace": sdk_work()})

    def boom(request):
        raise ZeroDivisionError("django kaboom")

    urlpatterns = [path("work", work), path("boom", boom)]
    app = get_wsgi_application()
    if os.environ["MODE"] == "instrument":
        import k8sxray
        app = k8sxray.instrument(app)
    """
)

BOTTLE_APP = textwrap.dedent(
    """
    import os
    import bottle
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.ext.bottle.middleware import XRayMiddleware
    from sdk_work import sdk_work

    xray_recorder.configure(service="sdk-name", sampling=False, context_missing="LOG_ERROR")
    app = bottle.Bottle()
    app.install(XRayMiddleware(xray_recorder))
    here = os.path.dirname(os.path.abspath(__file__))

    @app.get("/work")
    def work():
        return bottle.template("page", trace=sdk_work(), template_lookup=[here])

    @app.get("/boom")
    def boom():
        raise ZeroDivisionError("bottle kaboom")

    if os.environ["MODE"] == "instrument":
        import k8sxray
        app = k8sxray.instrument(app)
    """
)

APPS = {"flask": FLASK_APP, "django": DJANGO_APP, "bottle": BOTTLE_APP}
# The name each SDK template patch gives its ``template_render`` subsegment. Flask 3 passes
# ``_render`` its arguments in another order than the SDK's patch expects: it names it after the app.
TEMPLATE_NAMES = {"flask": "flask_sdk", "django": "page.html", "bottle": "{dir}/page.tpl"}


class Server:
    def __init__(self, base: str) -> None:
        self.base = base
        self.stderr = ""


@contextmanager
def gunicorn(
    tmp_path: Path,
    source: str,
    daemon_address: str,
    mode: str,
    args: tuple[str, ...] = (),
    *,
    warns: bool = False,
) -> Iterator[Server]:
    """Serve ``app:app`` (*source*) with gunicorn on 127.0.0.1:0, under ``k8sxray-run`` when
    *mode* is ``zero-code``; its stderr must show no error but the app's own, and no k8sxray
    warning unless *warns*."""
    (tmp_path / "app.py").write_text(source)
    (tmp_path / "sdk_work.py").write_text(SDK_WORK)
    (tmp_path / "page.tpl").write_text("trace {{trace}}")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY", "K8SXRAY"))}
    env = {
        **base,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(k8sxray.__file__).parent.parent)]),
        "MODE": mode,
        "AWS_XRAY_DAEMON_ADDRESS": daemon_address,  # the SDK's and k8sxray's
        "AWS_XRAY_TRACING_NAME": "k8s-name",
        "K8SXRAY_SAMPLING_RATE": "1",
        "K8SXRAY_SAMPLING_CENTRAL": "false",
        "K8SXRAY_PLUGINS": "none",
    }
    command = ["gunicorn", "-w", "1", "-b", "127.0.0.1:0", *args, "app:app"]
    launcher = ["-m", "k8sxray.run"] if mode == "zero-code" else ["-m"]
    proc = subprocess.Popen(
        [sys.executable, *launcher, *command], env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 30
        port = None
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", "".join(lines))
            port = found and found.group(1)
            time.sleep(0.05)
        assert port, "".join(lines)
        server = Server(f"http://127.0.0.1:{port}")
        yield server
    finally:
        proc.terminate()
        proc.wait(15)
        reader.join(5)
        proc.stderr.close()  # type: ignore[union-attr]
    server.stderr = err = "".join(lines)
    for trace in err.split("Traceback (most recent call last):")[1:]:  # only the app's own error
        assert re.search(r"^ZeroDivisionError: \w+ kaboom$", trace, re.MULTILINE), err
    if not warns:
        assert "k8sxray" not in err, err  # no warning, no internal error


def _get(http: Any, base: str, path: str, headers: dict[str, str] | None = None) -> Any:
    """A GET, retried while the worker is still loading the app."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return http(base, path, headers=headers)
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("mode", ["instrument", "zero-code"])
@pytest.mark.parametrize("framework", ["flask", "django", "bottle"])
def test_sdk_middleware_runs_unchanged_with_one_segment(
    framework: str, mode: str, daemon: Any, http: Any, tmp_path: Path
) -> None:
    if framework == "bottle":
        pytest.importorskip("bottle")
    with gunicorn(tmp_path, APPS[framework], daemon.address, mode) as server:
        base = server.base
        traced = _get(http, base, "/work", {"X-Amzn-Trace-Id": SAMPLED, "User-Agent": "ua/1"})
        fresh = _get(http, base, "/work")  # no header: k8sxray samples (rate 1)
        unsampled = _get(http, base, "/work", {"X-Amzn-Trace-Id": UNSAMPLED})
        failed = _get(http, base, "/boom", {"X-Amzn-Trace-Id": SAMPLED})
        docs = daemon.documents(3, timeout=10)  # k8sxray's datagram header on each
        docs += daemon.quiet(0.5)[len(docs) :]
    assert (traced.status, traced.body) == (200, f"trace {ROOT}".encode())
    assert fresh.status == 200
    assert (unsampled.status, unsampled.body) == (200, f"trace {ROOT}".encode())  # Sampled=0 works
    assert failed.status == 500

    # one segment per sampled request: k8sxray's; none from the SDK, none for Sampled=0
    assert len(docs) == 3, docs
    by_trace = {doc["trace_id"]: doc for doc in docs if doc["trace_id"] != ROOT}
    doc, boom_doc = sorted((d for d in docs if d["trace_id"] == ROOT), key=lambda d: d["start_time"])
    (fresh_doc,) = by_trace.values()
    for segment in (doc, fresh_doc, boom_doc):
        assert segment["name"] == "k8s-name"  # k8sxray's segment, named by k8sxray
        assert segment["aws"]["xray"]["sdk"] == "k8sxray"
    assert doc["parent_id"] == PARENT
    assert doc["http"]["request"]["method"] == "GET"
    assert doc["http"]["request"]["url"] == f"{base}/work"
    assert doc["http"]["request"]["user_agent"] == "ua/1"
    assert doc["http"]["response"]["status"] == 200
    assert "x_forwarded_for" not in doc["http"]["request"]
    # what the app recorded through the SDK, in k8sxray's segment
    assert doc["annotations"] == {"order": "o-7"}
    assert doc["user"] == "alice"
    names = [sub["name"] for sub in doc["subsegments"]]
    template = TEMPLATE_NAMES[framework].format(dir=tmp_path)
    captured, block = doc["subsegments"][:2]
    assert captured["name"] == "captured"
    assert captured["annotations"] == {"in_capture": 21}
    assert block["name"] == "block"
    assert block["metadata"] == {"app": {"detail": {"n": 1}}}
    assert names == ["captured", "block", template]  # the SDK's template patch renamed the third
    for sub in doc["subsegments"]:
        assert doc["start_time"] <= sub["start_time"] <= sub["end_time"] <= doc["end_time"]
    assert fresh_doc["annotations"] == {"order": "o-7"}
    # the response header names k8sxray's trace, once: the SDK's middleware set it, k8sxray adds none
    for response in (traced, fresh, unsampled, failed):
        assert len(response.all("X-Amzn-Trace-Id")) == 1, response.raw_headers
    assert traced.headers["x-amzn-trace-id"].startswith(f"Root={ROOT}")
    assert fresh.headers["x-amzn-trace-id"].startswith(f"Root={fresh_doc['trace_id']}")
    # an error: one fault, one cause (the SDK's middleware and k8sxray saw the same exception)
    assert boom_doc["fault"] is True
    assert boom_doc["http"]["response"]["status"] == 500
    (exc,) = boom_doc["cause"]["exceptions"]
    assert (exc["type"], exc["message"]) == ("ZeroDivisionError", f"{framework} kaboom")


# --- aiohttp ---------------------------------------------------------------------------------
AIOHTTP_APP = textwrap.dedent(
    """
    from aiohttp import web
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.core.async_context import AsyncContext
    from aws_xray_sdk.ext.aiohttp.middleware import middleware

    xray_recorder.configure(service="sdk-name", sampling=False, context=AsyncContext())

    async def work(request):
        async with xray_recorder.in_subsegment_async("block") as sub:
            sub.put_annotation("inner", 1)
        xray_recorder.put_annotation("order", "o-7")
        bridged = "begin_segment" in vars(xray_recorder)  # k8sxray-run bridged the SDK
        return web.Response(text=f"trace {xray_recorder.current_segment().trace_id} bridged={bridged}")

    app = web.Application(middlewares=[middleware])
    app.router.add_get("/work", work)
    """
)


def test_aiohttp_is_not_traced_but_instrument_says_so() -> None:
    web = pytest.importorskip("aiohttp.web")
    import k8sxray

    with pytest.raises(TypeError, match="aiohttp Application is neither WSGI nor ASGI"):
        k8sxray.instrument(web.Application())


def test_aiohttp_sdk_middleware_under_k8sxray_run(daemon: Any, http: Any, tmp_path: Path) -> None:
    """k8sxray cannot trace aiohttp (neither WSGI nor ASGI): ``k8sxray-run gunicorn`` with
    aiohttp's worker serves the app as it is, and the SDK's aiohttp middleware, outside any
    k8sxray request with the bridge on, records and sends its own segments as it always did."""
    pytest.importorskip("aiohttp")
    worker = ("-k", "aiohttp.GunicornWebWorker")
    with gunicorn(tmp_path, AIOHTTP_APP, daemon.address, "zero-code", worker, warns=True) as server:
        traced = _get(http, server.base, "/work", {"X-Amzn-Trace-Id": SAMPLED})
        unsampled = _get(http, server.base, "/work", {"X-Amzn-Trace-Id": UNSAMPLED})
        docs = daemon.quiet(0.5)
    assert (traced.status, traced.body) == (200, f"trace {ROOT} bridged=True".encode())
    assert unsampled.status == 200  # (the SDK's dummy segment has a dummy trace id)
    (doc,) = docs  # the SDK's own segment; none for Sampled=0
    assert doc["name"] == "k8s-name"  # AWS_XRAY_TRACING_NAME, which the SDK reads too
    assert (doc["trace_id"], doc["parent_id"]) == (ROOT, PARENT)
    assert doc["aws"]["xray"]["sdk"] == "X-Ray for Python"
    assert doc["annotations"] == {"order": "o-7"}
    (sub,) = doc["subsegments"]
    assert (sub["name"], sub["annotations"]) == ("block", {"inner": 1})
    # one line says why the app is served untraced
    assert "aiohttp Application is neither WSGI nor ASGI" in server.stderr
