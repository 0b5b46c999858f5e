"""Service-B: a FastAPI (ASGI) service that takes its time and sometimes fails.

Every answer comes after a random delay of 20 to 300 ms. About one request in ten is refused
with a 403, and about one in ten fails with an exception (a 500), so that the service map has
errors and faults to show. There is no tracing code here: see ``examples/service_b/app.py`` for
the one line that traces it, or run it under ``k8sxray-run``::

    k8sxray-run uvicorn k8sxray.demo.service_b:app --port 8081
"""

from __future__ import annotations

import asyncio
import random

from fastapi import FastAPI, HTTPException

DELAY_MS = (20, 300)
FORBIDDEN_SHARE = 0.1
FAULT_SHARE = 0.1

app = FastAPI(title="service-b")


class StockSystemDown(RuntimeError):
    """The simulated failure behind Service-B's 500s."""


async def _work(kind: str, item: int) -> dict[str, object]:
    delay_ms = random.randint(*DELAY_MS)
    await asyncio.sleep(delay_ms / 1000)
    draw = random.random()
    if draw < FORBIDDEN_SHARE:
        raise HTTPException(status_code=403, detail=f"{kind} {item}: not yours to see")
    if draw < FORBIDDEN_SHARE + FAULT_SHARE:
        raise StockSystemDown(f"{kind} {item}: the stock system did not answer")
    return {"service": "service-b", kind: item, "delay_ms": delay_ms}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/orders/{order_id}")
async def order(order_id: int) -> dict[str, object]:
    return await _work("order", order_id)


@app.get("/prices/{item_id}")
async def price(item_id: int) -> dict[str, object]:
    return await _work("price", item_id)


def traced() -> FastAPI:
    """The app with its one line of k8sxray, as ``python -m k8sxray demo`` serves it
    (``uvicorn --factory k8sxray.demo.service_b:traced``)."""
    import k8sxray

    traced_app: FastAPI = k8sxray.instrument(app)
    return traced_app
