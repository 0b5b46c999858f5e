"""The ``k8sxray`` command line: ``k8sxray config`` shows what k8sxray would do here, and why;
``k8sxray traces`` lists, shows and exports the traces a daemon's local console keeps;
``k8sxray demo`` runs two traced services and a local console on this machine."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from . import _config
from ._discovery import DaemonEndpoint


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="k8sxray", description="AWS X-Ray tracing for Python on Kubernetes."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    config_cmd = commands.add_parser(
        "config", help="print the resolved configuration, where each value came from, and probe the daemon"
    )
    config_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    config_cmd.add_argument("--no-probe", action="store_true", help="do not probe the daemon's TCP port")
    config_cmd.add_argument(
        "--probe-timeout", type=float, default=0.5, metavar="SECONDS", help="TCP probe timeout (0.5)"
    )
    from .console import cli as traces_cli
    from .demo import runner as demo

    traces_cli.add_parser(commands)
    demo.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "traces":
        return traces_cli.run(args)
    if args.command == "demo":
        return demo.run(args)
    return _config_command(args.json, probe=not args.no_probe, timeout=args.probe_timeout)


def _config_command(as_json: bool, *, probe: bool, timeout: float) -> int:
    try:
        config = _config.build(environ=os.environ)
    except ValueError as exc:
        print(f"k8sxray: configuration error: {exc}", file=sys.stderr)
        return 2
    assert config.daemon is not None
    daemon = _daemon_report(config.daemon, probe=probe, timeout=timeout)
    report = {"version": _version(), "settings": config.describe(), "daemon": daemon}
    if as_json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(_render(report))
    return 0


def probe_daemon(address: tuple[str, int], timeout: float) -> tuple[bool, str]:
    """Whether something accepts TCP connections on the daemon's sampling port."""
    started = time.perf_counter()
    try:
        with socket.create_connection(address, timeout=timeout):
            pass
    except TimeoutError:
        return False, f"no answer within {timeout:g}s"
    except OSError as exc:
        return False, exc.strerror or type(exc).__name__
    return True, f"TCP connect in {(time.perf_counter() - started) * 1000:.1f} ms"


def _daemon_report(endpoint: DaemonEndpoint, *, probe: bool, timeout: float) -> dict[str, Any]:
    report: dict[str, Any] = {
        "udp": str(endpoint.udp),
        "tcp": str(endpoint.tcp),
        "udp_resolved": "{}:{}".format(*endpoint.udp_sockaddr),
        "tcp_resolved": "{}:{}".format(*endpoint.tcp_sockaddr),
        "source": endpoint.source_kind,
        "reason": endpoint.reason,
        "tried": list(endpoint.tried),
        "answers": None,
        "probe": "skipped",
    }
    if probe:
        report["answers"], report["probe"] = probe_daemon(endpoint.tcp_sockaddr, timeout)
    return report


def _render(report: dict[str, Any]) -> str:
    lines = [f"k8sxray {report['version']}", "", "settings:"]
    settings: dict[str, dict[str, Any]] = report["settings"]
    width = max(len(name) for name in settings)
    for name, item in settings.items():
        value = item["value"]
        shown = ", ".join(map(str, value)) if isinstance(value, list) else "" if value is None else str(value)
        source = item["source"] + (f" ({item['detail']})" if item["detail"] else "")
        lines.append(f"  {name:<{width}}  {shown or '-'}    <- {source}")
    daemon = report["daemon"]
    lines += [
        "",
        "daemon:",
        f"  udp      {daemon['udp']} -> {daemon['udp_resolved']}",
        f"  tcp      {daemon['tcp']} -> {daemon['tcp_resolved']}",
        f"  found    {daemon['source']}: {daemon['reason']}",
    ]
    lines += [f"  tried    {item}" for item in daemon["tried"]]
    answers = {True: "yes", False: "no", None: "not probed"}[daemon["answers"]]
    lines.append(f"  answers  {answers} ({daemon['probe']})")
    return "\n".join(lines)


def _version() -> str:
    try:
        return version("k8sxray")
    except PackageNotFoundError:
        return "unknown"
