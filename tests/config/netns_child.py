"""Runs inside ``unshare --net --mount``: a private loopback, a Kubernetes-style resolv.conf
bind-mounted over /etc/resolv.conf, and a real DNS server (dnslib) on 127.0.0.1:53.

Usage: ``python netns_child.py SCENARIO_JSON``. The scenario names the DNS records, the names
that never get an answer, the environment, and what to run; the result is one JSON object on
stdout. Only the test suite runs this file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class Zone(BaseResolver):  # type: ignore[misc]  # dnslib is untyped
    """Answers A records from a dict; NXDOMAIN for unknown names; silence for slow ones."""

    def __init__(self, records: dict[str, str], slow: list[str]) -> None:
        self.records = records
        self.slow = set(slow)
        self.queries: list[str] = []
        self.lock = threading.Lock()

    def resolve(self, request: Any, handler: Any) -> Any:
        name = str(request.q.qname).rstrip(".")
        with self.lock:
            self.queries.append(f"{QTYPE[request.q.qtype]} {name}")
        reply = request.reply()
        if name in self.slow:
            time.sleep(5)  # longer than any bound under test: the client must give up first
            return reply
        with self.lock:
            ip = self.records.get(name)
        if ip is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            reply.add_answer(RR(name, QTYPE.A, rdata=A(ip), ttl=1))
        return reply


def setup_network(namespace: str) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    conf = tempfile.NamedTemporaryFile("w", suffix=".resolv.conf", delete=False)  # noqa: SIM115
    conf.write(
        "nameserver 127.0.0.1\n"
        f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5 timeout:3 attempts:1\n"
    )
    conf.close()
    subprocess.run(["mount", "--bind", conf.name, "/etc/resolv.conf"], check=True)


def main() -> None:
    scenario = json.loads(sys.argv[1])
    setup_network(scenario.get("namespace", "default"))
    zone = Zone(scenario.get("records", {}), scenario.get("slow", []))
    server = DNSServer(zone, address="127.0.0.1", port=53, logger=DNSLogger(logf=lambda _msg: None))
    server.start_thread()
    env = {**os.environ, **scenario.get("env", {})}
    for name in scenario.get("unset", []):
        env.pop(name, None)
    result: dict[str, Any] = {}
    started = time.perf_counter()
    if scenario["run"] == "cli":
        proc = subprocess.run(
            [sys.executable, "-m", "k8sxray", "config", "--json", "--no-probe"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        result["returncode"] = proc.returncode
        result["stderr"] = proc.stderr
        result["config"] = json.loads(proc.stdout) if proc.returncode == 0 else None
    elif scenario["run"] == "refresh":
        # Start-up, then change what DNS says, and watch the endpoint follow.
        from k8sxray import _config

        config = _config.configure(environ=env)
        endpoint = config.daemon
        assert endpoint is not None
        result["before"] = list(endpoint.udp_sockaddr)
        with zone.lock:
            zone.records.update(scenario["later"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and list(endpoint.udp_sockaddr) == result["before"]:
            time.sleep(0.05)
        result["after"] = list(endpoint.udp_sockaddr)
        result["reason"] = endpoint.reason
        _config.reset()
    result["elapsed"] = time.perf_counter() - started
    with zone.lock:
        result["queries"] = list(zone.queries)
    server.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
