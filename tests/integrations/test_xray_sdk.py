"""The official SDK's ``xray_recorder`` inside requests traced by k8sxray lands in k8sxray's segment."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import flask
import pytest

import k8sxray
from k8sxray.integrations import xray_sdk

pytest.importorskip("aws_xray_sdk")
from aws_xray_sdk.core import xray_recorder  # after the importorskip

pytestmark = pytest.mark.usefixtures("wsgi_entry")  # each test with the C entry and the Python one


ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"


@pytest.fixture
def bridged(daemon: Any) -> Iterator[None]:
    """The SDK sends to the same UDP socket, so a segment of its own would be seen."""
    xray_recorder.configure(daemon_address=daemon.address, sampling=False, context_missing="LOG_ERROR")
    yield
    xray_sdk.uninstrument()
    xray_recorder.clear_trace_entities()


def sdk_app() -> flask.Flask:
    app = flask.Flask("sdk_test")

    @xray_recorder.capture("captured_fn")
    def captured(x: int) -> int:
        xray_recorder.put_annotation("inside_capture", x)
        return x * 2

    @xray_recorder.capture("failing_fn")
    def failing() -> None:
        raise KeyError("nope")

    @app.get("/sdk")
    def sdk() -> str:
        assert captured(21) == 42
        with xray_recorder.in_subsegment("in_sub") as sub:
            sub.put_annotation("sub_key", "sub_value")
            sub.put_metadata("detail", {"n": 1}, "sdkns")
            with xray_recorder.in_subsegment("nested"):
                pass
        with contextlib.suppress(KeyError):
            failing()
        segment = xray_recorder.current_segment()
        segment.put_annotation("from_sdk", "yes")
        segment.put_metadata("order", {"id": 7}, "shop")
        xray_recorder.put_metadata("plain", True)
        k8sxray.annotate("from_k8sxray", 1)
        return "sdk:" + segment.trace_id

    return app


def test_sdk_calls_land_in_our_segment(
    bridged: None, daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    configure_to(disabled_integrations=["botocore", "httpx", "requests"])
    app = k8sxray.instrument(sdk_app())
    assert xray_sdk.is_instrumented()
    with serve_wsgi(app) as base:
        resp = http(base, "/sdk", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=1"})
    assert (resp.status, resp.body) == (200, f"sdk:{ROOT}".encode())
    docs = daemon.quiet(0.3)
    assert len(docs) == 1, docs  # the SDK emitted nothing of its own
    (doc,) = docs
    assert doc["trace_id"] == ROOT
    assert doc["parent_id"] == PARENT
    assert doc["annotations"] == {"from_sdk": "yes", "from_k8sxray": 1}
    assert doc["metadata"] == {"shop": {"order": {"id": 7}}, "default": {"plain": True}}
    captured, in_sub, failing = doc["subsegments"]
    assert captured["name"] == "captured_fn"
    assert captured["namespace"] == "local"
    assert captured["annotations"] == {"inside_capture": 21}
    assert in_sub["name"] == "in_sub"
    assert in_sub["annotations"] == {"sub_key": "sub_value"}
    assert in_sub["metadata"] == {"sdkns": {"detail": {"n": 1}}}
    assert [s["name"] for s in in_sub["subsegments"]] == ["nested"]
    assert failing["fault"] is True
    assert failing["cause"]["exceptions"][0]["type"] == "KeyError"
    for sub in (captured, in_sub, failing):
        assert doc["start_time"] <= sub["start_time"] <= sub["end_time"] <= doc["end_time"]


def test_unsampled_request_sdk_calls_are_harmless(
    bridged: None, daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any
) -> None:
    configure_to(disabled_integrations=["botocore", "httpx", "requests"])
    with serve_wsgi(k8sxray.instrument(sdk_app())) as base:
        resp = http(base, "/sdk", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=0"})
    assert (resp.status, resp.body) == (200, f"sdk:{ROOT}".encode())
    assert daemon.quiet(0.3) == []


def test_outside_our_requests_the_sdk_works_as_before(bridged: None, daemon: Any, configure_to: Any) -> None:
    configure_to(disabled_integrations=["botocore", "httpx", "requests"])
    xray_sdk.instrument()
    segment = xray_recorder.begin_segment("sdk-own")
    with xray_recorder.in_subsegment("sdk-sub"):
        pass
    xray_recorder.end_segment()
    daemon.quiet(0.2)
    (datagram,) = daemon.raw
    header, _, body = datagram.partition(b"\n")
    assert json.loads(header) == {"format": "json", "version": 1}  # the SDK's own (compact) header
    doc = json.loads(body)
    assert doc["name"] == "sdk-own"
    assert doc["id"] == segment.id
    assert doc["subsegments"][0]["name"] == "sdk-sub"
    xray_sdk.uninstrument()
    assert not xray_sdk.is_instrumented()
    assert "begin_subsegment" not in vars(xray_recorder)


PATCH_ALL_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    import flask, requests
    from werkzeug.serving import make_server
    from aws_xray_sdk.core import patch_all, xray_recorder
    import k8sxray

    daemon = sys.argv[1]
    seen = []
    downstream = flask.Flask("downstream")

    @downstream.get("/down")
    def down():
        seen.append(flask.request.headers.get("X-Amzn-Trace-Id"))
        return "down", 202

    down_server = make_server("127.0.0.1", 0, downstream, threaded=True)
    threading.Thread(target=down_server.serve_forever, daemon=True).start()
    down_url = "http://127.0.0.1:%d/down" % down_server.server_port

    xray_recorder.configure(daemon_address=daemon, sampling=False, context_missing="LOG_ERROR")
    patch_all()
    k8sxray.configure(service_name="front", daemon_address=daemon, sampling_rate=1.0, plugins=(),
                      disabled_integrations=["botocore", "httpx", "requests"])
    app = flask.Flask("front")

    @app.get("/front")
    def front():
        return "front:%d" % requests.get(down_url, timeout=5).status_code

    client = k8sxray.instrument(app).test_client()
    response = client.get("/front")
    body = response.get_data(as_text=True)
    response.close()
    k8sxray.flush(2.0)
    print(json.dumps({"body": body, "seen": seen, "trace": response.headers["X-Amzn-Trace-Id"]}))
    """
)


def test_patch_all_libraries_nest_under_our_segment(daemon: Any, tmp_path: Any) -> None:
    script = tmp_path / "patch_all_app.py"
    script.write_text(PATCH_ALL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    env.pop("AWS_XRAY_DAEMON_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, str(script), daemon.address],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["body"] == "front:202"
    docs = daemon.quiet(0.5)
    assert len(docs) == 1, docs  # one segment: ours; the SDK sent none
    (doc,) = docs
    assert doc["name"] == "front"
    assert result["trace"] == f"Root={doc['trace_id']}"
    (sub,) = doc["subsegments"]
    assert sub["namespace"] == "remote"
    assert sub["http"]["request"]["method"] == "GET"
    assert sub["http"]["request"]["url"].endswith("/down")
    assert sub["http"]["response"]["status"] == 202
    (header,) = result["seen"]
    assert header.startswith(f"Root={doc['trace_id']};Parent={sub['id']};Sampled=1")


class CountingSampler:
    """An SDK sampler (``xray_recorder.configure(sampler=...)``) that counts when it is asked."""

    def __init__(self) -> None:
        self.asked = 0

    def should_trace(self, sampling_req: Any = None) -> bool:
        self.asked += 1
        return True


@pytest.fixture
def sdk_flask_middleware() -> Iterator[Any]:
    """The SDK's Flask middleware class; its constructor patches Flask's template rendering: undone."""
    import flask.templating
    from aws_xray_sdk.ext.flask.middleware import XRayMiddleware

    render = flask.templating._render
    yield XRayMiddleware
    flask.templating._render = render


@pytest.mark.usefixtures("bridged")
def test_sdk_middleware_sampler_and_response_header(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any, sdk_flask_middleware: Any
) -> None:
    """Inside our requests the SDK's sampler is not asked (k8sxray decides), and the response
    header the SDK's middleware writes agrees with ours; outside them and after uninstrument()
    the sampler is the SDK's own again."""
    sampler = CountingSampler()
    xray_recorder.configure(sampling=True, sampler=sampler)
    configure_to(disabled_integrations=["botocore", "httpx", "requests"])
    app = flask.Flask("sdk_mw")
    sdk_flask_middleware(app, xray_recorder)

    @app.get("/")
    def index() -> str:
        return "sampled" if xray_recorder.is_sampled() else "unsampled"

    with serve_wsgi(k8sxray.instrument(app)) as base:
        fresh = http(base, "/")
        asked = http(base, "/", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=?"})
    assert (fresh.status, fresh.body, asked.body) == (200, b"sampled", b"sampled")
    assert sampler.asked == 0  # k8sxray sampled both; the SDK's sampler was never asked
    fresh_doc, asked_doc = daemon.segments(2)
    assert asked_doc["trace_id"] == ROOT
    # one response header, the SDK middleware's (k8sxray adds none after it), answers the '?'
    for response in (fresh, asked):
        assert len(response.all("X-Amzn-Trace-Id")) == 1, response.raw_headers
    assert asked.headers["x-amzn-trace-id"] == f"Root={ROOT};Sampled=1"
    assert fresh.headers["x-amzn-trace-id"] == f"Root={fresh_doc['trace_id']}"
    assert sampler.should_trace({}) is True  # outside a request: the SDK's own
    assert sampler.asked == 1
    xray_sdk.uninstrument()
    assert "should_trace" not in vars(sampler)


@pytest.mark.usefixtures("bridged")
def test_sdk_middleware_unsampled_calls_record_nothing(
    daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any, sdk_flask_middleware: Any
) -> None:
    """In a trace k8sxray does not sample, what the SDK hands out records nothing, propagates the
    upstream's decision, and breaks nothing (the SDK's own dummy entities do the same)."""
    from aws_xray_sdk.ext.util import inject_trace_header

    configure_to(disabled_integrations=["botocore", "httpx", "requests"])
    app = flask.Flask("sdk_mw_unsampled")
    sdk_flask_middleware(app, xray_recorder)
    seen: dict[str, str] = {}

    @app.get("/")
    def index() -> str:
        with xray_recorder.in_subsegment("block") as sub:
            sub.put_annotation("k", "v")
            sub.name = "renamed"
            current = xray_recorder.current_subsegment()
            assert current is not None
            assert current.type == "subsegment"
            inject_trace_header(seen, current)
        xray_recorder.current_segment().put_annotation("k", "v")
        return str(xray_recorder.is_sampled())

    with serve_wsgi(k8sxray.instrument(app)) as base:
        resp = http(
            base, "/", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=0;Lineage=a:1"}
        )
        propagated = dict(seen)
        usual = http(base, "/", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=0"})
        w3c = http(base, "/", headers={"traceparent": f"00-{ROOT[2:10]}{ROOT[11:]}-{PARENT}-00"})
    assert (resp.status, resp.body) == (200, b"False")
    assert propagated == {"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=0;Lineage=a:1"}
    assert seen == {"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=0"}  # from the traceparent
    for response in (resp, usual, w3c):  # served in C when it is built: it adds no second header either
        assert response.body == b"False"
        assert response.all("X-Amzn-Trace-Id") == [f"Root={ROOT}"], response.raw_headers
    assert daemon.quiet(0.3) == []
