"""Django, as WSGI (werkzeug) and as ASGI (uvicorn), traced with ``k8sxray.instrument``."""

from __future__ import annotations

from typing import Any

import pytest

import k8sxray

django = pytest.importorskip("django")
from django.conf import settings  # noqa: E402  # after the importorskip
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

pytestmark = pytest.mark.usefixtures("wsgi_entry")  # each test with the C entry and the Python one


def hello(request: HttpRequest) -> HttpResponse:
    k8sxray.annotate("framework", "django")
    return HttpResponse(b"hello django", content_type="text/plain")


def boom(request: HttpRequest) -> HttpResponse:
    raise ZeroDivisionError("django kaboom")


def teapot(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"short and stout", status=418)


urlpatterns = [path("hello", hello), path("boom", boom), path("teapot", teapot)]


@pytest.fixture(scope="module", autouse=True)
def _django() -> None:
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["*"],
            SECRET_KEY="test-only",
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
            LOGGING_CONFIG=None,
        )
    django.setup()


def test_django_wsgi(daemon: Any, configure_to: Any, serve_wsgi: Any, http: Any) -> None:
    from django.core.wsgi import get_wsgi_application

    configure_to()
    plain_app = get_wsgi_application()
    with serve_wsgi(k8sxray.instrument(get_wsgi_application())) as base, serve_wsgi(plain_app) as plain:
        ok = http(base, "/hello", headers={"User-Agent": "dj/1"})
        assert (ok.status, ok.body) == (200, b"hello django")
        failed = http(base, "/boom")
        assert failed.status == 500
        assert failed.body == http(plain, "/boom").body
        assert http(base, "/teapot").status == 418
    hello_doc, boom_doc, teapot_doc = daemon.segments(3)
    assert hello_doc["http"]["request"]["url"] == f"{base}/hello"
    assert hello_doc["http"]["request"]["user_agent"] == "dj/1"
    assert hello_doc["http"]["response"] == {"status": 200, "content_length": 12}
    assert hello_doc["annotations"] == {"framework": "django"}
    assert ok.headers["x-amzn-trace-id"] == f"Root={hello_doc['trace_id']}"
    assert boom_doc["fault"] is True
    assert boom_doc["http"]["response"]["status"] == 500
    (exc,) = boom_doc["cause"]["exceptions"]  # from Django's got_request_exception
    assert (exc["type"], exc["message"]) == ("ZeroDivisionError", "django kaboom")
    assert teapot_doc["error"] is True
    assert "fault" not in teapot_doc


def test_django_asgi(daemon: Any, configure_to: Any, serve_asgi: Any, http: Any) -> None:
    from django.core.asgi import get_asgi_application

    configure_to()
    app = k8sxray.instrument(get_asgi_application())
    with serve_asgi(app) as base:
        ok = http(base, "/hello")
        failed = http(base, "/boom")
    assert (ok.status, ok.body) == (200, b"hello django")
    assert failed.status == 500
    hello_doc, boom_doc = daemon.segments(2)
    assert hello_doc["annotations"] == {"framework": "django"}
    assert hello_doc["http"]["response"]["status"] == 200
    assert boom_doc["fault"] is True
    assert boom_doc["cause"]["exceptions"][0]["type"] == "ZeroDivisionError"
