"""`python script_app.py`: a Flask app served by wsgiref, printing its port; no k8sxray code."""

from __future__ import annotations

import os
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

import flask
import requests

app = flask.Flask(__name__)


@app.get("/")
def hello() -> str:
    requests.get(f"{os.environ['DOWNSTREAM']}/pid/{os.getpid()}", timeout=5)
    return str(os.getpid())


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    print(server.server_port, flush=True)
    print("sitecustomize:", "k8sxray" if "k8sxray.run._boot" in sys.modules else "none", flush=True)
    server.serve_forever()
