"""Service-A: a Flask (WSGI) service in front of Service-B.

``GET /orders/<id>`` asks Service-B with ``requests``, ``GET /prices/<id>`` with ``httpx``; either
way Service-A answers with what Service-B said (its status and body), or 502 when Service-B cannot
be reached. ``SERVICE_B_URL`` says where Service-B is (default ``http://127.0.0.1:8081``).

Its only k8sxray line is an annotation (searchable: ``annotation.order_id = 7``), harmless when
nothing is traced. ``examples/service_a/app.py`` shows the one line that traces it; with none::

    SERVICE_B_URL=http://127.0.0.1:8081 k8sxray-run gunicorn k8sxray.demo.service_a:app
"""

from __future__ import annotations

import json
import os

import httpx
import requests
from flask import Flask, Response, jsonify

import k8sxray

TIMEOUT = 5.0
SERVICE_B_URL = "SERVICE_B_URL"
"""The variable that says where Service-B is."""

app = Flask("service-a")


def _service_b() -> str:
    return os.environ.get(SERVICE_B_URL, "http://127.0.0.1:8081").rstrip("/")


def _relay(status: int, body: object) -> tuple[Response, int]:
    return jsonify({"service": "service-a", "service_b": body}), status


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/orders/<int:order_id>")
def order(order_id: int) -> tuple[Response, int]:
    k8sxray.annotate("order_id", order_id)
    try:
        answer = requests.get(f"{_service_b()}/orders/{order_id}", timeout=TIMEOUT)
    except requests.RequestException as exc:
        return _relay(502, f"service-b unreachable: {type(exc).__name__}")
    return _relay(answer.status_code, _body(answer.headers.get("content-type", ""), answer.text))


@app.get("/prices/<int:item_id>")
def price(item_id: int) -> tuple[Response, int]:
    k8sxray.annotate("item_id", item_id)
    try:
        answer = httpx.get(f"{_service_b()}/prices/{item_id}", timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        return _relay(502, f"service-b unreachable: {type(exc).__name__}")
    return _relay(answer.status_code, _body(answer.headers.get("content-type", ""), answer.text))


def _body(content_type: str, text: str) -> object:
    if content_type.startswith("application/json"):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def traced() -> Flask:
    """The app with its one line of k8sxray, as ``python -m k8sxray demo`` serves it
    (``gunicorn 'k8sxray.demo.service_a:traced()'``)."""
    traced_app: Flask = k8sxray.instrument(app)
    return traced_app
