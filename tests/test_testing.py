"""``k8sxray.testing``: the README's snippet, run verbatim with each framework's test client."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import k8sxray
from k8sxray import _recorder
from k8sxray.sampling.sampler import AlwaysSampler
from k8sxray.testing import capture_segments

README = Path(__file__).resolve().parent.parent / "README.md"


def _snippet() -> str:
    """The README's testing snippet, as written there."""
    found = re.search(
        r"```python\n(from k8sxray\.testing import capture_segments\n.*?)```", README.read_text(), re.S
    )
    assert found is not None, "the README has no capture_segments() snippet"
    return found.group(1)


def _run_snippet(client: Any) -> list[dict[str, Any]]:
    namespace: dict[str, Any] = {"client": client}
    exec(_snippet(), namespace)  # our own README's code
    segments: list[dict[str, Any]] = namespace["segments"]
    return segments


def _configure(name: str, rules: Path) -> None:
    # a sampler that says no to every request: whatever the snippet captures, the capture sampled
    rules.write_text('{"version": 2, "rules": [], "default": {"fixed_target": 0, "rate": 0.0}}')
    options: dict[str, Any] = {"daemon_address": "127.0.0.1:9", "plugins": (), "sampling_central": False}
    k8sxray.configure(service_name=name, sampling_rules=str(rules), **options)


@pytest.fixture(autouse=True)
def _sampling_nothing(tmp_path: Path) -> Iterator[None]:
    _configure("svc", tmp_path / "rules.json")
    _recorder.set_emitter(None)
    yield
    _recorder.set_emitter(None)


def _check(segments: list[dict[str, Any]], url: str) -> None:
    (doc,) = segments
    assert doc["http"]["request"]["url"] == url
    assert doc["http"]["response"]["status"] == 200
    assert "end_time" in doc


def test_the_snippet_with_flasks_test_client() -> None:
    from flask import Flask

    app = Flask(__name__)

    @app.get("/orders/<int:order>")
    def order(order: int) -> dict[str, int]:
        return {"order": order}

    client = k8sxray.instrument(app).test_client()
    for _ in range(5):  # every request, not one a second: the capture samples them all
        _check(_run_snippet(client), "http://localhost/orders/42")
    assert k8sxray.trace_header() is None  # no segment left current in the test's context


def test_the_snippet_with_starlettes_and_fastapis_test_client() -> None:
    with warnings.catch_warnings():  # starlette's own deprecation notice about its httpx client
        warnings.simplefilter("ignore")
        from fastapi import FastAPI
        from fastapi.testclient import TestClient

    app = FastAPI()

    @app.get("/orders/{order}")
    def order(order: int) -> dict[str, int]:
        return {"order": order}

    with TestClient(k8sxray.instrument(app)) as client:
        for _ in range(5):
            _check(_run_snippet(client), "http://testserver/orders/42")


def test_the_snippet_with_a_wsgi_client_on_an_instrumented_django_app() -> None:
    """Django's own test client calls Django's handler, never the WSGI app that ``instrument()``
    returned: the README says to drive that app with a WSGI client, as here."""
    django = pytest.importorskip("django")
    import httpx
    from django.conf import settings
    from django.test.utils import override_settings

    if not settings.configured:
        settings.configure(
            ALLOWED_HOSTS=["*"], SECRET_KEY="test-only", INSTALLED_APPS=[], LOGGING_CONFIG=None
        )
    django.setup()
    from django.core.wsgi import get_wsgi_application

    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[]):
        app = k8sxray.instrument(get_wsgi_application())
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver") as client:
            for _ in range(5):
                _check(_run_snippet(client), "http://testserver/orders/42")


def _django_order(request: Any, order: int) -> Any:
    from django.http import JsonResponse

    return JsonResponse({"order": order})


try:  # this module is the Django test's URLconf
    from django.urls import path
except ImportError:  # no Django: its test is skipped
    urlpatterns: list[Any] = []
else:
    urlpatterns = [path("orders/<int:order>", _django_order)]


def test_every_request_is_sampled_while_capturing_and_the_sampler_comes_back(tmp_path: Path) -> None:
    configured = _recorder.state().sampler
    assert not isinstance(configured, AlwaysSampler)
    with capture_segments() as segments:
        assert isinstance(_recorder.state().sampler, AlwaysSampler)
        _configure("other", tmp_path / "other.json")  # reconfigured inside: still every request
        for _ in range(5):
            trace = _recorder.start_request(None, "h", "GET", "/", 1.7e9)
            assert trace is not None
            _recorder.end_segment(trace)
        header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
        unsampled = _recorder.start_request(header, "h", "GET", "/", 1.7e9)
        assert unsampled is not None
        assert not unsampled.sampled  # an upstream decision is still obeyed
        _recorder.end_segment(unsampled)
    assert [s["name"] for s in segments] == ["other"] * 5
    state = _recorder.state()
    assert state.sampler is state.own_sampler  # the configured sampler decides again
    trace = _recorder.start_request(None, "h", "GET", "/", 1.7e9)
    assert trace is not None
    assert not trace.sampled
    _recorder.end_segment(trace)
