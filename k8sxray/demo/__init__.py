"""The blog's two-service demo, shipped in the package so that ``python -m k8sxray demo`` runs anywhere.

``service_a`` (Flask, WSGI) calls ``service_b`` (FastAPI, ASGI), which waits a random delay and
now and then answers 403 or fails with a 500. Both are plain apps: ``examples/`` shows them traced
with one line, ``k8sxray-run`` traces them with none, and :mod:`k8sxray.demo.runner` starts them
beside a local daemon and a traffic generator. Nothing here is imported by the library itself.
"""
