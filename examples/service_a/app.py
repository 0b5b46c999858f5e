"""Service-A of the demo, traced with one line.

Service-A is a Flask app (``k8sxray/demo/service_a.py``, shipped inside k8sxray so that
``python -m k8sxray demo`` can run it anywhere) that calls Service-B with ``requests`` and ``httpx``.
Here it gets the one line your own app needs. Run it from the repository's root:

    K8SXRAY_SAMPLING_RATE=1 AWS_XRAY_TRACING_NAME=service-a SERVICE_B_URL=http://127.0.0.1:8081 \
        gunicorn examples.service_a.app:app -b 127.0.0.1:8080
"""

from __future__ import annotations

import k8sxray
from k8sxray.demo.service_a import app

app = k8sxray.instrument(app)  # the one line: every request a segment, every call to B a subsegment
