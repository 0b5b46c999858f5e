"""Importing k8sxray (every module of it) opens no socket, starts no thread, patches nothing."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = r"""
import json, pkgutil, sys, threading, importlib
import urllib3  # probes for IPv6 with a socket at import time: its side effect, not ours
events = []
WATCHED = ("socket.", "os.register_at_fork", "subprocess.Popen", "urllib.Request")
def hook(event, args):
    if event.startswith(WATCHED):
        events.append(event)
sys.addaudithook(hook)
import requests, httpx, botocore.endpoint
originals = {
    "requests": requests.Session.send,
    "httpx": httpx.Client.send,
    "httpx_async": httpx.AsyncClient.send,
    "botocore": botocore.endpoint.Endpoint.make_request,
}
threads_before = threading.active_count()
import k8sxray
skipped = []
for info in pkgutil.walk_packages(k8sxray.__path__, "k8sxray."):
    leaf = info.name.rsplit(".", 1)[-1]
    if leaf == "__main__" or "sitecustomize" in info.name or "bootstrap" in info.name:
        skipped.append(info.name)
        continue
    importlib.import_module(info.name)
patched = [name for name, fn in originals.items() if {
    "requests": requests.Session.send,
    "httpx": httpx.Client.send,
    "httpx_async": httpx.AsyncClient.send,
    "botocore": botocore.endpoint.Endpoint.make_request,
}[name] is not fn]
print(json.dumps({
    "events": events, "threads": threading.active_count() - threads_before,
    "patched": patched, "modules": sorted(m for m in sys.modules if m.startswith("k8sxray")),
}))
"""


def test_import_has_no_side_effects() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert "k8sxray._config" in result["modules"]  # the walk really imported the package
    assert result["events"] == []
    assert result["threads"] == 0
    assert result["patched"] == []


def test_the_daemon_loads_nothing_of_the_library_but_the_wire_format() -> None:
    code = (
        "import sys, k8sxray.daemon.__main__, k8sxray.daemon.server; "
        "print(sorted(m for m in sys.modules "
        "if m.startswith('k8sxray') and not m.startswith('k8sxray.daemon')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['k8sxray', 'k8sxray._protocol']"
