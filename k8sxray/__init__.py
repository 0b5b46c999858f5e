"""k8sxray: AWS X-Ray tracing for Python services on Kubernetes.

import k8sxray
app = k8sxray.instrument(app)   # Flask, Django, FastAPI/Starlette, any WSGI/ASGI app
"""

from __future__ import annotations

from ._config import Config, configure
from ._instrument import instrument, uninstrument
from ._recorder import annotate, flush, put_metadata, subsegment, trace_header

__all__ = [
    "Config",
    "annotate",
    "configure",
    "flush",
    "instrument",
    "put_metadata",
    "subsegment",
    "trace_header",
    "uninstrument",
]
