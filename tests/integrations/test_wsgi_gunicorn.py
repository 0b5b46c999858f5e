"""Fork safety: gunicorn workers forked after configure (``--preload``) still emit, with fresh ids."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

pytest.importorskip("gunicorn")

APP = textwrap.dedent(
    """
    import os, time
    import k8sxray
    from k8sxray import _recorder

    k8sxray.configure(service_name="forked", daemon_address=os.environ["TEST_DAEMON"], sampling_rate=1.0,
                      plugins=(), disabled_integrations=["botocore", "httpx", "requests", "xray_sdk"])

    def plain(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]

    app = k8sxray.instrument(plain)

    # the master emits before forking: its socket, queue and flusher thread exist at fork time
    _recorder.end_segment(_recorder.start_request(None, "master", "GET", "/master", time.time()))
    assert _recorder.flush(2.0)
    """
)


def test_forked_workers_emit(daemon: Any, http: Any, tmp_path: Any) -> None:
    (tmp_path / "forkapp.py").write_text(APP)
    env = {**os.environ, "TEST_DAEMON": daemon.address, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.getcwd()}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-b", "127.0.0.1:0", "forkapp:app"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(server.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 30
        port = None
        while port is None and time.monotonic() < deadline:
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", "".join(lines))
            port = found and found.group(1)
            time.sleep(0.05)
        assert port, "".join(lines)
        base = f"http://127.0.0.1:{port}"
        while sum("Booting worker" in line for line in lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = {http(base, f"/req{i}", headers={"Connection": "close"}).body for i in range(8)}
        docs = daemon.segments(9, timeout=10)
    finally:
        server.terminate()
        server.wait(15)
        reader.join(5)
        server.stderr.close()  # type: ignore[union-attr]
    assert len(docs) == 9
    master = [d for d in docs if "http" not in d]  # begun by hand in the master, before forking
    assert len(master) == 1
    workers = [d for d in docs if d not in master]
    assert sorted(d["http"]["request"]["url"].rsplit("/", 1)[1] for d in workers) == [
        f"req{i}" for i in range(8)
    ]
    assert str(server.pid).encode() not in pids  # served by forked workers
    assert len({d["trace_id"] for d in docs}) == 9  # ids are re-seeded in each child
    assert len({d["id"] for d in docs}) == 9
