"""A FastAPI service traced by k8sxray.

python -m k8sxray.daemon --sink stdout &      # a local daemon that prints segments
K8SXRAY_SAMPLING_RATE=1 uvicorn examples.fastapi_app:app
curl localhost:8000/orders/42
"""

from __future__ import annotations

from fastapi import FastAPI

import k8sxray

app = FastAPI()


@app.get("/orders/{order_id}")
async def order(order_id: int) -> dict[str, int]:
    k8sxray.annotate("order_id", order_id)
    with k8sxray.subsegment("load-order"):
        total = order_id * 3
    return {"order": order_id, "total": total}


app = k8sxray.instrument(app)
