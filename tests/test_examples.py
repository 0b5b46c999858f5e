"""The examples run, and produce the segments their comments promise."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx

import k8sxray
from k8sxray.testing import capture_segments

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def check(segments: list[dict[str, object]], body: object) -> None:
    assert body == {"order": 42, "total": 126}
    [segment] = segments
    assert segment["annotations"] == {"order_id": 42}
    assert [sub["name"] for sub in segment["subsegments"]] == ["load-order"]  # type: ignore[index,union-attr]
    assert segment["http"]["response"]["status"] == 200  # type: ignore[index]


def test_flask_example() -> None:
    k8sxray.configure(sampling_rate=1, environ={})
    app = load("flask_app").app
    with capture_segments() as segments:
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://shop") as client:
            body = client.get("/orders/42").json()
        k8sxray.flush()
    check(segments, body)


def test_fastapi_example() -> None:
    k8sxray.configure(sampling_rate=1, environ={})
    app = load("fastapi_app").app

    async def call() -> object:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            return (await client.get("/orders/42")).json()

    with capture_segments() as segments:
        body = asyncio.run(call())
        k8sxray.flush()
    check(segments, body)
