"""``python -m k8sxray traces``: the console in the terminal.

``traces`` lists recent traces (``--filter EXPR`` in X-Ray's grammar, ``--since 15m``), ``traces show
ID`` draws one trace's timeline as text, ``traces export`` writes segment documents as JSON lines
(one document a line, ready for ``traces upload`` or X-Ray's PutTraceSegments). Everything goes
through the console's X-Ray API (``--endpoint``, default ``http://127.0.0.1:2020``), so it works
against any k8sxray daemon the user can reach; ``--json`` prints the API's answers for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, TextIO

from .. import _env

__all__ = ["add_parser", "run"]

DEFAULT_ENDPOINT = "http://127.0.0.1:2020"
_SINCE = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)\Z")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_BAR = 40


class CliError(Exception):
    """Something the user can fix; printed without a traceback."""


def add_parser(commands: Any) -> None:
    """Add ``traces`` to the ``k8sxray`` command's subcommands."""
    p = commands.add_parser("traces", help="list, show and export traces kept by a k8sxray daemon's console")
    p.add_argument("action", nargs="?", default="list", choices=("list", "show", "export", "upload"))
    p.add_argument("target", nargs="?", help="trace id for 'show'; file of JSON lines for 'upload'")
    p.add_argument("--endpoint", default=None, help=f"the console's address (default {DEFAULT_ENDPOINT})")
    p.add_argument("--token", default=None, help="the console's token when it asks for one")
    p.add_argument("--filter", default=None, metavar="EXPR", help="an X-Ray filter expression")
    p.add_argument("--since", default="15m", help="how far back: 30s, 15m, 2h, 1d (default 15m)")
    p.add_argument("--limit", type=int, default=20, help="traces to list (default 20)")
    p.add_argument("--json", action="store_true", help="print the API's answers as JSON")


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    endpoint = (args.endpoint or os.environ.get(_env.K8SXRAY_CONSOLE) or DEFAULT_ENDPOINT).rstrip("/")
    client = _Client(endpoint, args.token or os.environ.get(_env.K8SXRAY_CONSOLE_TOKEN))
    try:
        if args.action == "show":
            if not args.target:
                raise CliError("traces show needs a trace id")
            return _show(client, args.target, args.json, out)
        if args.action == "upload":
            if not args.target:
                raise CliError("traces upload needs a file of JSON lines (or - for standard input)")
            return _upload(client, args.target, out)
        since = _seconds(args.since)
        if args.action == "export":
            return _export(client, since, args.filter, out)
        return _list(client, since, args.filter, args.limit, as_json=args.json, out=out)
    except CliError as exc:
        print(f"k8sxray traces: {exc}", file=sys.stderr)
        return 2


class _Client:
    def __init__(self, endpoint: str, token: str | None) -> None:
        self.endpoint = endpoint
        self.token = token

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.endpoint + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        if self.token:
            request.add_header("X-K8sxray-Token", self.token)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("message", "")
            except ValueError:
                message = ""
            raise CliError(f"{self.endpoint} answered {exc.code}: {message or exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(
                f"cannot reach the console at {self.endpoint} ({reason}); is the daemon running "
                "(python -m k8sxray.daemon --sink local)?"
            ) from None

    def summaries(self, since: float, expression: str | None) -> Iterator[dict[str, Any]]:
        end = time.time()
        body: dict[str, Any] = {"StartTime": end - since, "EndTime": end}
        if expression:
            body["FilterExpression"] = expression
        while True:
            page = self.call("/TraceSummaries", body)
            yield from page.get("TraceSummaries", [])
            token = page.get("NextToken")
            if not token:
                return
            body["NextToken"] = token


def _seconds(text: str) -> float:
    match = _SINCE.match(text.strip())
    if not match:
        raise CliError(f"--since {text!r}: expected a number with s, m, h or d (e.g. 15m)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _list(
    client: _Client, since: float, expression: str | None, limit: int, *, as_json: bool, out: TextIO
) -> int:
    found = []
    for summary in client.summaries(since, expression):
        found.append(summary)
        if len(found) >= limit:
            break
    if as_json:
        print(json.dumps(found, indent=2), file=out)
        return 0
    if not found:
        print("no traces (try a longer --since, or send some traffic)", file=out)
        return 0
    for s in found:
        http = s.get("Http", {})
        started = time.strftime("%H:%M:%S", time.localtime(_trace_epoch(s.get("Id", ""))))
        status = http.get("HttpStatus", "")
        flags = " ".join(
            f
            for f, key in (("fault", "HasFault"), ("error", "HasError"), ("throttle", "HasThrottle"))
            if s.get(key)
        )
        services = ",".join(sorted({str(i.get("Name")) for i in s.get("ServiceIds", []) if i.get("Name")}))
        line = (
            f"{started}  {s.get('Id')}  {1000 * float(s.get('Duration') or 0):8.1f} ms  {status!s:>3}  "
            f"{http.get('HttpMethod', '')} {http.get('HttpURL', '')}  [{services}] {flags}"
        )
        print(line.rstrip(), file=out)
    return 0


def _trace_epoch(trace_id: str) -> float:
    try:
        return float(int(trace_id.split("-")[1], 16))
    except (IndexError, ValueError):
        return 0.0


def _show(client: _Client, trace_id: str, as_json: bool, out: TextIO) -> int:
    answer = client.call("/Traces", {"TraceIds": [trace_id]})
    traces = answer.get("Traces", [])
    if not traces:
        raise CliError(f"no trace {trace_id} in the console")
    segments = [json.loads(s["Document"]) for s in traces[0].get("Segments", [])]
    if as_json:
        print(json.dumps(segments, indent=2), file=out)
        return 0
    for line in timeline(segments):
        print(line, file=out)
    return 0


def timeline(segments: list[dict[str, Any]]) -> list[str]:
    """The trace as text: one line per segment and subsegment, indented under its parent, with a
    bar placed on the trace's time axis and its status."""
    starts = [float(s["start_time"]) for s in segments if "start_time" in s]
    if not starts:
        return []
    origin = min(starts)
    end = max(float(s.get("end_time", s.get("start_time", origin))) for s in segments)
    span = max(end - origin, 1e-6)
    by_id = {s.get("id"): s for s in segments}
    children: dict[Any, list[dict[str, Any]]] = {}
    roots = []
    for s in sorted(segments, key=lambda d: float(d.get("start_time", 0))):
        parent = s.get("parent_id")
        if parent in by_id or any(_contains(o, parent) for o in segments):
            children.setdefault(parent, []).append(s)
        else:
            roots.append(s)
    lines: list[str] = []

    def emit(entity: dict[str, Any], depth: int) -> None:
        start = float(entity.get("start_time", origin))
        stop = float(entity.get("end_time", start))
        left = int((start - origin) / span * _BAR)
        width = max(1, round((stop - start) / span * _BAR))
        bar = " " * left + "█" * min(width, _BAR - left)
        status = entity.get("http", {}).get("response", {}).get("status", "")
        flags = [f for f in ("fault", "error", "throttle") if entity.get(f)]
        if entity.get("in_progress"):
            flags.append("in progress")
        name = ("  " * depth + str(entity.get("name", "?")))[:36]
        label = f"{name:<36} |{bar:<{_BAR}}| {1000 * (stop - start):8.1f} ms {status!s:>3} {' '.join(flags)}"
        lines.append(label.rstrip())
        for sub in sorted(entity.get("subsegments") or [], key=lambda d: float(d.get("start_time", 0))):
            emit(sub, depth + 1)
        for later in children.get(entity.get("id"), []):
            emit(later, depth + 1)

    for root in roots:
        emit(root, 0)
    return lines


def _contains(entity: dict[str, Any], wanted: Any) -> bool:
    return any(s.get("id") == wanted or _contains(s, wanted) for s in entity.get("subsegments") or [])


def _export(client: _Client, since: float, expression: str | None, out: TextIO) -> int:
    ids = [s["Id"] for s in client.summaries(since, expression)]
    count = 0
    for i in range(0, len(ids), 5):
        answer = client.call("/Traces", {"TraceIds": ids[i : i + 5]})
        for trace in answer.get("Traces", []):
            for segment in trace.get("Segments", []):
                document = json.loads(segment["Document"])
                document.setdefault("trace_id", trace["Id"])
                print(json.dumps(document, separators=(",", ":")), file=out)
                count += 1
    print(f"exported {count} segment documents from {len(ids)} traces", file=sys.stderr)
    return 0


def _upload(client: _Client, path: str, out: TextIO) -> int:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    sent = refused = 0
    with stream:
        lines = [line.strip() for line in stream if line.strip()]
    for i in range(0, len(lines), 50):
        answer = client.call("/TraceSegments", {"TraceSegmentDocuments": lines[i : i + 50]})
        unprocessed = answer.get("UnprocessedTraceSegments", [])
        refused += len(unprocessed)
        sent += len(lines[i : i + 50]) - len(unprocessed)
        for item in unprocessed:
            print(f"refused {item.get('Id') or '?'}: {item.get('Message')}", file=sys.stderr)
    print(f"uploaded {sent} segment documents, {refused} refused", file=out)
    return 1 if refused else 0
