"""Service-B of the demo, traced with one line.

Service-B is a FastAPI app (``k8sxray/demo/service_b.py``, shipped inside k8sxray so that
``python -m k8sxray demo`` can run it anywhere) that waits 20 to 300 ms and now and then answers
403 or fails with a 500. Here it gets the one line your own app needs. Run it from the
repository's root:

    K8SXRAY_SAMPLING_RATE=1 AWS_XRAY_TRACING_NAME=service-b uvicorn examples.service_b.app:app --port 8081
"""

from __future__ import annotations

import k8sxray
from k8sxray.demo.service_b import app

app = k8sxray.instrument(app)  # the one line: requests from Service-A continue A's trace
