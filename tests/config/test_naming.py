"""The default service name, from the Pod, the program, or the app a server runs.

Real servers pick it up in tests/run/test_servers.py; here each command line is given as argv.
"""

from __future__ import annotations

import types

import pytest

from k8sxray._config import build
from k8sxray._naming import FALLBACK, default_service_name

K8S = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}


def _name(argv: list[str], environ: dict[str, str] | None = None, **kwargs: object) -> str:
    return default_service_name(environ or {}, argv, **kwargs).name  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/srv/checkout.py"], "checkout"),
        (["/usr/local/bin/checkout-api", "--port", "80"], "checkout-api"),
        (["/venv/bin/gunicorn", "-w", "4", "-b", "0.0.0.0:8000", "checkout.wsgi:app"], "checkout"),
        (["/venv/bin/gunicorn", "--bind=unix:/run/app.sock", "app:create_app()"], "app"),
        (
            ["/venv/bin/gunicorn", "-b", "localhost:8000", "-k", "uvicorn.workers.UvicornWorker", "shop:app"],
            "shop",
        ),
        (["/venv/bin/uvicorn", "orders.main:app", "--port", "8000"], "orders"),
        (["/venv/bin/hypercorn", "cart:app"], "cart"),
        (["/venv/bin/flask", "--app", "billing", "run"], "billing"),
        (["/venv/bin/flask", "--app=billing.web:create_app()", "run"], "billing"),
        (["/venv/bin/flask", "-A", "src/billing.py", "run"], "src"),
        (["manage.py", "runserver"], FALLBACK),
        (["/venv/bin/gunicorn", "-b", "localhost:8000"], FALLBACK),  # the app is in a config file
        (["/venv/bin/python3.11", "-c", "..."], FALLBACK),
        (["-c"], FALLBACK),
        ([], FALLBACK),
        (["/venv/bin/pytest", "tests"], FALLBACK),
        (["/srv/we~ird.py"], FALLBACK),  # not a valid segment name: never fail configure()
    ],
)
def test_from_the_command_line(argv: list[str], expected: str) -> None:
    assert _name(argv, uwsgi_options={}) == expected


def test_flask_app_and_django_settings_from_the_environment() -> None:
    assert _name(["/venv/bin/flask", "run"], {"FLASK_APP": "ledger/app.py"}, uwsgi_options={}) == "ledger"
    assert _name(["/venv/bin/flask", "run"], {"FLASK_APP": "/srv/ledger.py"}, uwsgi_options={}) == "ledger"
    django = {"DJANGO_SETTINGS_MODULE": "mysite.settings"}
    assert _name(["manage.py", "runserver"], django, uwsgi_options={}) == "mysite"
    assert _name(["/venv/bin/django-admin", "runserver"], django, uwsgi_options={}) == "mysite"


def test_python_dash_m_names_the_package() -> None:
    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="inventory.__main__")  # type: ignore[assignment]
    assert _name(["/srv/inventory/__main__.py"], main=main, uwsgi_options={}) == "inventory"
    main.__spec__ = types.SimpleNamespace(name="gunicorn.__main__")  # type: ignore[assignment]
    assert _name(["/venv/gunicorn/__main__.py", "shop.wsgi:app"], main=main, uwsgi_options={}) == "shop"


def test_uwsgi_options() -> None:
    assert _name(["uwsgi"], uwsgi_options={"module": b"payments.wsgi:app"}) == "payments"
    assert _name(["uwsgi"], uwsgi_options={"wsgi-file": b"/srv/app/refunds.py"}) == "refunds"
    assert _name(["uwsgi"], uwsgi_options={"wsgi-file": [b"refunds.py", b"other.py"]}) == "refunds"
    assert _name(["uwsgi"], uwsgi_options={}) == FALLBACK


def test_the_pods_workload_wins_on_kubernetes() -> None:
    pod = {**K8S, "POD_NAME": "checkout-7d9f8b6c5-x2k4p"}
    found = default_service_name(pod, ["/venv/bin/gunicorn", "orders:app"], uwsgi_options={})
    assert found == ("checkout", "workload of POD_NAME=checkout-7d9f8b6c5-x2k4p", True)
    # POD_NAME outside Kubernetes is not trusted
    assert _name(["/venv/bin/gunicorn", "orders:app"], {"POD_NAME": "x-1"}, uwsgi_options={}) == "orders"


def test_the_config_records_why() -> None:
    config = build(environ={})  # under pytest: nothing names the service
    assert config.service_name == FALLBACK
    assert config.sources["service_name"].kind == "default"
    assert "AWS_XRAY_TRACING_NAME" in config.sources["service_name"].detail
