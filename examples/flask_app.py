"""A Flask service traced by k8sxray.

python -m k8sxray.daemon --sink stdout &      # a local daemon that prints segments
K8SXRAY_SAMPLING_RATE=1 flask --app examples/flask_app run
curl localhost:5000/orders/42
"""

from __future__ import annotations

from flask import Flask

import k8sxray

app = Flask(__name__)


@app.get("/orders/<int:order_id>")
def order(order_id: int) -> dict[str, object]:
    k8sxray.annotate("order_id", order_id)  # searchable in the X-Ray console
    with k8sxray.subsegment("load-order"):  # a timed step inside the request
        total = order_id * 3
    return {"order": order_id, "total": total}


app = k8sxray.instrument(app)  # type: ignore[assignment]  # what to serve: the traced app
