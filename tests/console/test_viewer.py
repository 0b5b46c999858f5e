"""The viewer in a real headless browser (Debian's chromium driven by Playwright) against the real daemon.

The daemon runs as a subprocess with ``--sink local``; segment documents of a small shop (client →
service-a on EKS → service-b → DynamoDB, with faults, errors, throttles and hostile content) go to its
UDP port, and the browser reads the console the daemon serves: the map, the list and its filter, a
trace's own URL with its timeline and Resources. Hostile strings must show as text; every request the
page makes must go to the daemon's own origin.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.daemon_helpers import HEADER, DaemonProcess, free_tcp_port

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
STATIC = Path(__file__).resolve().parents[2] / "k8sxray" / "console" / "static"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console.png"
HOSTILE_IMG = "<img src=x onerror=alert(1)>"
HOSTILE_SCRIPT = "<script>alert(2)</script>"
HOSTILE_QUOTE = '"><b>bold</b>'
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _ids(n: int, salt: int) -> str:
    return f"{salt:04x}{n:012x}"


def shop_traffic(now: float, count: int = 24) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Segment documents of ``count`` requests through the shop, plus one hostile trace.

    Returns the documents (subsegments of service-b's DynamoDB call sent on their own, as a streaming
    SDK does) and named trace ids: ``fault`` (service-b answered 500), ``ok``, ``hostile``.
    """
    docs: list[dict[str, Any]] = []
    named: dict[str, str] = {}
    for i in range(count):
        start = now - 60 + i * 2
        trace_id = f"1-{int(start):08x}-{i:024x}"
        fault = i % 4 == 1
        throttle = i % 8 == 3
        not_found = i % 6 == 5
        a_id, call_b, b_id, call_db = _ids(i, 0xA), _ids(i, 0xAB), _ids(i, 0xB), _ids(i, 0xDB)
        b_status = 500 if fault else 429 if throttle else 200
        a_status = 502 if fault else 404 if not_found else 200
        b_call: dict[str, Any] = {
            "id": call_b,
            "name": "service-b",
            "namespace": "remote",
            "start_time": start + 0.002,
            "end_time": start + 0.060,
            "http": {
                "request": {"method": "POST", "url": "http://service-b.shop.svc:8080/price", "traced": True},
                "response": {"status": b_status},
            },
        }
        if fault:
            b_call["fault"] = True
        if throttle:
            b_call.update(error=True, throttle=True)
        seg_a: dict[str, Any] = {
            "name": "service-a",
            "id": a_id,
            "trace_id": trace_id,
            "start_time": start,
            "end_time": start + 0.070,
            "origin": "AWS::EKS::Container",
            "http": {
                "request": {
                    "method": "GET",
                    "url": f"http://service-a.shop.svc/orders/{i}",
                    "client_ip": "10.0.0.7",
                    "user_agent": "curl/8.5",
                },
                "response": {"status": a_status, "content_length": 17},
            },
            "aws": {
                "eks": {
                    "pod": "service-a-6d4f9c7b8-x7k2p",
                    "cluster_name": "shop-cluster",
                    "container_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
                },
                "xray": {"sdk": "k8sxray", "sdk_version": "0.1.0"},
            },
            "metadata": {"k8s": {"namespace": "shop", "node": "ip-10-0-1-23", "deployment": "service-a"}},
            "annotations": {"order": i, "customer": f"c{i % 3}"},
            "subsegments": [b_call],
        }
        if fault:
            seg_a["fault"] = True
        if not_found:
            seg_a["error"] = True
        seg_b: dict[str, Any] = {
            "name": "service-b",
            "id": b_id,
            "trace_id": trace_id,
            "parent_id": call_b,
            "start_time": start + 0.005,
            "end_time": start + 0.055,
            "origin": "AWS::EKS::Container",
            "http": {
                "request": {"method": "POST", "url": "http://service-b.shop.svc:8080/price"},
                "response": {"status": b_status},
            },
            "aws": {"eks": {"pod": "service-b-5c8d7f6e9-q2w3e", "cluster_name": "shop-cluster"}},
        }
        if fault:
            seg_b["fault"] = True
            seg_b["cause"] = {
                "working_directory": "/srv/service-b",
                "exceptions": [
                    {
                        "id": _ids(i, 0xEE),
                        "type": "PriceUnavailable",
                        "message": "no price for item 42",
                        "stack": [
                            {"path": "/srv/service-b/prices.py", "line": 88, "label": "lookup_price"},
                            {"path": "/srv/service-b/app.py", "line": 31, "label": "price"},
                        ],
                    }
                ],
            }
        if throttle:
            seg_b.update(error=True, throttle=True)
        db_call = {
            "type": "subsegment",
            "trace_id": trace_id,
            "parent_id": b_id,
            "id": call_db,
            "name": "DynamoDB",
            "namespace": "aws",
            "start_time": start + 0.010,
            "end_time": start + 0.030 + (i % 5) * 0.004,
            "http": {"response": {"status": 200}},
            "aws": {"operation": "GetItem", "region": "us-east-1", "table_name": "prices", "request_id": "R1"},
        }
        docs += [seg_a, seg_b, db_call]
        if fault and "fault" not in named:
            named["fault"] = trace_id
        if not (fault or throttle or not_found) and "ok" not in named:
            named["ok"] = trace_id
    hostile_id = f"1-{int(now - 5):08x}-{'f' * 24}"
    named["hostile"] = hostile_id
    docs.append(
        {
            "name": HOSTILE_IMG,
            "id": "f" * 16,
            "trace_id": hostile_id,
            "start_time": now - 5,
            "end_time": now - 4.9,
            "http": {
                "request": {"method": "GET", "url": f"http://evil.example/{HOSTILE_SCRIPT}?q={HOSTILE_QUOTE}"},
                "response": {"status": 200},
            },
            "annotations": {"note": HOSTILE_IMG, "quote": HOSTILE_QUOTE},
            "metadata": {"debug": {"html": HOSTILE_SCRIPT}},
            "subsegments": [
                {
                    "id": "e" * 16,
                    "name": HOSTILE_QUOTE,
                    "namespace": "remote",
                    "start_time": now - 4.99,
                    "end_time": now - 4.95,
                    "http": {"request": {"method": "GET", "url": f"http://x/{HOSTILE_IMG}"}},
                }
            ],
        }
    )
    return docs, named
