"""X-Ray's own query API over the store, operation by operation, in X-Ray's shapes.

Each operation takes the decoded JSON body of X-Ray's REST call and returns the decoded JSON
answer, so that ``boto3.client("xray", endpoint_url=...)`` and the AWS CLI work unchanged.
botocore's bundled X-Ray model is the authority on every shape. A request the console cannot
answer correctly raises ``ApiError`` (an HTTP status, X-Ray's error type and a message): a filter
expression it cannot evaluate is a 400, never a wrong answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import filters, graph, trace
from .packing import ROLLUP_PERIOD
from .store import Store, StoreError

__all__ = ["OPERATIONS", "ApiError", "Console"]

PAGE_SIZE = 100
"""Trace summaries in one GetTraceSummaries page."""
SCAN_BUDGET = 0.15
"""Seconds one GetTraceSummaries page may spend scanning before it answers with a NextToken."""
MAX_BATCH_TRACES = 5
"""BatchGetTraces and GetTraceGraph take at most this many ids, as X-Ray does."""


class ApiError(Exception):
    """An error answer: HTTP ``status``, X-Ray's error ``kind`` and a message for the caller."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def invalid(message: str) -> ApiError:
    return ApiError(400, "InvalidRequestException", message)


@dataclass
class Console:
    """The operations, answered from ``store``."""

    store: Store
    clock: Callable[[], float] = time.time

    def get_trace_summaries(self, body: Mapping[str, Any]) -> dict[str, Any]:
        start, end = _time_range(body)
        expression = body.get("FilterExpression")
        if expression is not None and not isinstance(expression, str):
            raise invalid("FilterExpression must be a string")
        try:
            compiled = filters.compile_filter(expression) if expression and expression.strip() else None
        except filters.FilterError as exc:
            raise invalid(f"FilterExpression: {exc}") from None
        match = compiled.matches if compiled is not None else None
        services = compiled.services if compiled is not None else None
        token = _optional_str(body, "NextToken")
        found: list[dict[str, Any]] = []
        scanned = 0
        next_token: str | None = None
        deadline = time.monotonic() + SCAN_BUDGET
        try:
            for resume, facts in self.store.facts(start, end, services=services, token=token):
                scanned += 1
                if match is None or match(facts):
                    found.append(trace.trace_summary(facts))
                if len(found) >= PAGE_SIZE or (scanned % 256 == 0 and time.monotonic() > deadline):
                    next_token = resume
                    break
        except StoreError as exc:
            raise invalid(str(exc)) from None
        answer: dict[str, Any] = {
            "TraceSummaries": found,
            "ApproximateTime": self.clock(),
            "TracesProcessedCount": scanned,
        }
        if next_token is not None:
            answer["NextToken"] = next_token
        return answer

    def batch_get_traces(self, body: Mapping[str, Any]) -> dict[str, Any]:
        traces: list[dict[str, Any]] = []
        missing: list[str] = []
        for trace_id in _trace_ids(body):
            assembled = self.store.trace(trace_id)
            if assembled is None:
                missing.append(trace_id)
                continue
            segments, _complete = assembled
            starts = [s["start_time"] for s in segments if _number(s.get("start_time"))]
            ends = [s["end_time"] for s in segments if _number(s.get("end_time"))]
            entry: dict[str, Any] = {
                "Id": trace_id,
                "LimitExceeded": False,
                "Segments": [
                    {"Id": str(s.get("id", "")), "Document": json.dumps(s, separators=(",", ":"))}
                    for s in segments
                ],
            }
            if starts and ends:
                entry["Duration"] = max(0.0, max(ends) - min(starts))
            traces.append(entry)
        return {"Traces": traces, "UnprocessedTraceIds": missing}

    def get_service_graph(self, body: Mapping[str, Any]) -> dict[str, Any]:
        start, end = _time_range(body)
        nodes, edges = graph.from_rollups(
            (kind, key, stats) for _, kind, key, stats in self.store.rollups(start, end)
        )
        services = graph.render_services(nodes, edges)
        return {"StartTime": start, "EndTime": end, "Services": services, "ContainsOldGroupVersions": False}

    def get_trace_graph(self, body: Mapping[str, Any]) -> dict[str, Any]:
        facts = []
        for trace_id in _trace_ids(body):
            assembled = self.store.trace(trace_id)
            if assembled is not None:
                facts.append(trace.trace_facts(assembled[0]))
        return {"Services": graph.trace_graph(facts)}

    def get_time_series_service_statistics(self, body: Mapping[str, Any]) -> dict[str, Any]:
        start, end = _time_range(body)
        period = body.get("Period", 60)
        if not isinstance(period, int) or isinstance(period, bool) or period < 60 or period % 60:
            raise invalid("Period must be a multiple of 60 seconds")
        selector = body.get("EntitySelectorExpression")
        if selector is not None and not isinstance(selector, str):
            raise invalid("EntitySelectorExpression must be a string")
        try:
            series = graph.time_series_from_rollups(
                self.store.rollups(start, end),
                rollup_period=ROLLUP_PERIOD,
                period=period,
                entity=selector or None,
            )
        except ValueError as exc:  # FilterError is one
            raise invalid(f"EntitySelectorExpression: {exc}") from None
        return {"TimeSeriesServiceStatistics": series, "ContainsOldGroupVersions": False}

    def put_trace_segments(self, body: Mapping[str, Any]) -> dict[str, Any]:
        documents = body.get("TraceSegmentDocuments")
        if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
            raise invalid("TraceSegmentDocuments must be a list of strings")
        unprocessed: list[dict[str, str]] = []
        accepted: list[bytes] = []
        for text in documents:
            problem, doc_id = _check_document(text)
            if problem:
                unprocessed.append({"Id": doc_id, "ErrorCode": "InvalidDocument", "Message": problem})
            else:
                accepted.append(text.encode("utf-8"))
        self.store.add(accepted)
        return {"UnprocessedTraceSegments": unprocessed}


OPERATIONS: dict[str, Callable[[Console, Mapping[str, Any]], dict[str, Any]]] = {
    "/TraceSummaries": Console.get_trace_summaries,
    "/Traces": Console.batch_get_traces,
    "/ServiceGraph": Console.get_service_graph,
    "/TraceGraph": Console.get_trace_graph,
    "/TimeSeriesServiceStatistics": Console.get_time_series_service_statistics,
    "/TraceSegments": Console.put_trace_segments,
}
"""X-Ray's REST paths (all POST) and the operation answering each."""


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _time_range(body: Mapping[str, Any]) -> tuple[float, float]:
    start, end = body.get("StartTime"), body.get("EndTime")
    if (
        not isinstance(start, int | float)
        or not isinstance(end, int | float)
        or not _number(start)
        or not _number(end)
    ):
        raise invalid("StartTime and EndTime are required, as epoch seconds")
    if end < start:
        raise invalid("EndTime is before StartTime")
    return float(start), float(end)


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid(f"{key} must be a string")
    return value or None


def _trace_ids(body: Mapping[str, Any]) -> list[str]:
    ids = body.get("TraceIds")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise invalid("TraceIds must be a non-empty list of trace ids")
    if len(ids) > MAX_BATCH_TRACES:
        raise invalid(f"at most {MAX_BATCH_TRACES} TraceIds per call, got {len(ids)}")
    return list(dict.fromkeys(ids))


def _check_document(text: str) -> tuple[str, str]:
    """(problem or "", the document's id or "") for one PutTraceSegments document."""
    try:
        doc = json.loads(text)
    except ValueError:
        return "not valid JSON", ""
    if not isinstance(doc, dict):
        return "not a JSON object", ""
    doc_id = doc.get("id") if isinstance(doc.get("id"), str) else ""
    for key in ("trace_id", "id", "name"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            return f"missing {key}", str(doc_id)
    if not _number(doc.get("start_time")):
        return "missing start_time", str(doc_id)
    if not _number(doc.get("end_time")) and doc.get("in_progress") is not True:
        return "needs end_time or in_progress", str(doc_id)
    return "", str(doc_id)
