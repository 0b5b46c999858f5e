"""`python uvicorn_script.py`: the Starlette app served by uvicorn from a script; no k8sxray code."""

from __future__ import annotations

import socket
import sys

import uvicorn
from asgi_app import app

if __name__ == "__main__":
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    print(sock.getsockname()[1], flush=True)
    print("sitecustomize:", "k8sxray" if "k8sxray.run._boot" in sys.modules else "none", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])
