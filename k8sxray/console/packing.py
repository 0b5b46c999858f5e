"""Packing settled traces for the store: pure work, done in a worker process when there is one.

``pack(work, derive)`` takes, per trace, the documents received for it (bytes, as received) and the
blob already stored for it (a trace reopened by a late document), and gives back everything the
store writes: the trace's span, its service names, its blob (facts and documents, compressed), and
the change in the per-minute statistics (the new share added, an old share taken away). Documents
that turn out not to be JSON objects with a ``trace_id`` and an ``id`` are counted by reason; a
document whose ``trace_id`` is not the one it was held under comes back to be held again.

The blob: one version byte, then raw deflate (8 KB window, a preset dictionary of what segment
documents and facts share) of the facts as JSON, a line break, and the documents one per line.
Version 2 (written now) keeps facts made by :func:`~k8sxray.console.trace.trace_facts` in the
smaller form of :mod:`~k8sxray.console.compact`, and other facts as they are; version 1 (read
still) kept them all as they are, with another dictionary.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import graph
from .assembly import Document, assemble, latest
from .compact import compact, expand

Facts = dict[str, Any]
Derive = Callable[[str, list[Document], bool], Facts]
"""``derive(trace_id, assembled_segments, complete)``: the facts kept for a trace, anything JSON
can hold; its ``"nodes"`` and ``"edges"`` (rows in the trace model's ``NODE_COLUMNS`` and
``EDGE_COLUMNS`` order) feed the service index and the per-minute statistics."""

ROLLUP_PERIOD = 60
"""Seconds of one rollup slot: the service graph and the time series are exact to the minute."""

_WBITS = 13
"""Raw deflate with an 8 KB window: a trace's blob is a few KB, and a small window costs a tenth of
the default's set-up (measured: 15 µs a trace instead of 40-60)."""
_MEMLEVEL = 5
"""Deflate's hash tables sized for a few KB (the default, 8, takes a sixth more work for the same
output)."""
_LEVEL = 3
"""Deflate's fast matching: a third less work than the default level (6), for blobs 8% larger."""

_SEGMENT_WORDS = (
    b'"type":"subsegment","namespace":"remote","namespace":"aws","in_progress":true,"error":true,'
    b'"fault":true,"throttle":true,"cause":{"working_directory":"/app","exceptions":[{"id":"",'
    b'"message":"","type":"","remote":true,"stack":[{"path":"","line":,"label":""}]}]},'
    b'"annotations":{"metadata":{"default":{"k8s":{"namespace":"default","workload":"deployment/",'
    b'"labels":{"app.kubernetes.io/name":"","aws":{"operation":"","region":"us-east-1",'
    b'"request_id":"","table_name":"","queue_url":"https://sqs.","bucket_name":"","retries":0},'
    b'"origin":"AWS::EKS::Container","aws":{"eks":{"pod":"","cluster_name":"","container_id":""},'
    b'"xray":{"sdk":"k8sxray","sdk_version":"0.1.0"}},"http":{"request":{"method":"GET",'
    b'"method":"POST","url":"http://","user_agent":"python-requests/","client_ip":"10.",'
    b'"x_forwarded_for":true,"traced":true},"response":{"status":200,"content_length":}},'
    b'"subsegments":[{"name":"","id":"","start_time":1,"end_time":1,"parent_id":"",'
)
_SEGMENT_START = b'{"name":"","id":"","trace_id":"1-","start_time":1,"end_time":1,'
_BLOB_V1 = b"\x01"
_ZDICT_V1 = (
    _SEGMENT_WORDS + b'{"v":1,"id":"1-","start":1,"end":1,"duration":0.0,"response_time":0.0,"flags":0,'
    b'"partial":false,"http":["http://","GET",200,null,null],"services":[["","AWS::EKS::Container"]],'
    b'"entry":0,"annotations":{},"users":[],"arns":[],"instance_ids":[],"azs":[],'
    b'"fault_root_causes":[],"error_root_causes":[],"revision":1,"nodes":[["","",1,1,0.0,0.0,0,1,0]],'
    b'"node_info":[{"h":["http://","GET",200,null,null]},{}],"edges":[["","client","","",1,1,0.0,0]]}\n'
    + _SEGMENT_START
)
"""Version 1's preset dictionary: facts as a plain record (read, never written any more)."""
_BLOB_V2 = b"\x02"
_ZDICT_V2 = (
    _SEGMENT_WORDS
    + b'{"c":1,"id":"1-","r":1,"s":[["","AWS::EKS::Container"],["","AWS::DynamoDB::Table"],["","remote"]],'
    b'"n":[[0,0,1,0],[1,0,0,0],[2,0,0,1]],"e":[[-1,0],[0,1,0],[1,2]],"t":"","i":[{"h":['
    b'"http://","GET",200,null,null],"a":{"":""}},{"h":["http://","GET",200,null,null]},{}],"a":{"":[["",[0]]]}}\n'
    + _SEGMENT_START
)
"""A preset dictionary of what segment documents and facts (in :mod:`~k8sxray.console.compact`'s
stored form) have in common: a trace of a few small documents compresses to a third of what plain
deflate makes of it. Part of the blob format: never change it without a new blob version."""
_ZDICTS = {_BLOB_V1: _ZDICT_V1, _BLOB_V2: _ZDICT_V2}


class Packed(NamedTuple):
    """One trace, ready to be written."""

    trace_id: str
    start: float
    end: float
    size: int
    documents: int
    services: tuple[str, ...]
    blob: bytes


@dataclass
class Result:
    """What ``pack`` gives back for a batch of traces."""

    traces: list[Packed] = field(default_factory=list)
    rollup: graph.Rollup = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    misplaced: list[bytes] = field(default_factory=list)


Work = Sequence[tuple[str, Sequence[bytes], bytes | None]]
"""Per trace: its id, the documents received for it, and the blob already stored for it."""


def pack(work: Work, derive: Derive) -> Result:
    """Pack every trace of ``work``; see the module's docstring."""
    result = Result()
    # The statistics are summed trace by trace: a batch's facts are not all kept alive till the end
    # (thousands of containers the garbage collector would walk again and again).
    added: graph.Rollup = {}
    taken_away: graph.Rollup = {}
    rejected = result.rejected
    for trace_id, raws, old_blob in work:
        kept_raws: list[bytes] = []
        docs: list[Document] = []
        if old_blob is not None:
            old_facts, old_raws = unpack(old_blob)
            graph.rollup(old_facts.get("nodes", ()), old_facts.get("edges", ()), ROLLUP_PERIOD, taken_away)
            kept_raws += old_raws
            docs += [json.loads(r) for r in old_raws]
        for raw in raws:
            doc = _parse(raw, rejected)
            if doc is None:
                continue
            if doc["trace_id"] != trace_id:
                result.misplaced.append(raw)
                continue
            kept_raws.append(raw)
            docs.append(doc)
        if not docs:
            continue
        kept = latest(docs)
        if len(kept) != len(docs):  # a document replaced another: keep the raw documents of those kept
            keep = {id(d) for d in kept}
            kept_raws = [r for r, d in zip(kept_raws, docs, strict=True) if id(d) in keep]
        start, end = span(kept)
        segments, complete = assemble(kept, owned=True, unique=True)
        facts = derive(trace_id, segments, complete)
        graph.rollup(facts.get("nodes", ()), facts.get("edges", ()), ROLLUP_PERIOD, added)
        names = tuple(sorted({str(row[0]) for row in facts.get("nodes", ())}))
        blob = _compress(facts, kept_raws)
        result.traces.append(
            Packed(trace_id, start, end, sum(map(len, kept_raws)), len(kept_raws), names, blob)
        )
    result.rollup = added
    for key, stats in taken_away.items():
        graph.merge(result.rollup.setdefault(key, graph.blank()), stats, -1)
    return result


_DECODER = json.JSONDecoder()


def _parse(raw: bytes, rejected: dict[str, int]) -> Document | None:
    """The document, or None (counted in ``rejected`` by reason) when it is not a JSON object with a
    ``trace_id`` and an ``id``. JSON nested too deep to parse is not JSON either (it used to stop
    the whole batch)."""
    try:
        # json.loads, without its detours for a document that is plainly a UTF-8 JSON object
        if raw[:1] == b"{" and raw[1:2] != b"\x00":  # what json.loads would decode as UTF-8
            try:
                text = raw.decode("utf-8", "surrogatepass")
                doc, end = _DECODER.raw_decode(text)
                if end != len(text):
                    raise ValueError("extra data")
            except ValueError:
                doc = json.loads(raw)  # trailing white space, or to fail as it does
        else:
            doc = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        rejected["not JSON"] = rejected.get("not JSON", 0) + 1
        return None
    if not isinstance(doc, dict):
        rejected["not an object"] = rejected.get("not an object", 0) + 1
        return None
    trace_id = doc.get("trace_id")
    if not isinstance(trace_id, str) or not trace_id or not isinstance(doc.get("id"), str):
        rejected["no trace_id or id"] = rejected.get("no trace_id or id", 0) + 1
        return None
    return doc


def span(docs: list[Document]) -> tuple[float, float]:
    """The earliest start and the latest end (at least the start) of documents; now without a start."""
    start: float | None = None
    end: float | None = None
    for doc in docs:  # as min() and max() compare, in order
        value = doc.get("start_time")
        if isinstance(value, (int, float)):
            value = float(value)
            if start is None or value < start:
                start = value
        value = doc.get("end_time")
        if isinstance(value, (int, float)):
            value = float(value)
            if end is None or value > end:
                end = value
    if start is None:
        start = time.time()
    return start, (start if end is None or start > end else end)


_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def _compress(facts: Facts, raws: list[bytes]) -> bytes:
    stored = compact(facts)
    body = _ENCODER.encode(facts if stored is None else stored).encode() + b"\n" + b"\n".join(raws)
    deflate = zlib.compressobj(_LEVEL, zlib.DEFLATED, -_WBITS, _MEMLEVEL, zlib.Z_DEFAULT_STRATEGY, _ZDICT_V2)
    return _BLOB_V2 + deflate.compress(body) + deflate.flush()


def _inflate(blob: bytes) -> bytes:
    zdict = _ZDICTS.get(blob[:1])
    if zdict is None:
        raise ValueError(f"unknown trace blob version {blob[:1]!r}")
    inflate = zlib.decompressobj(-_WBITS, zdict)
    return inflate.decompress(blob[1:]) + inflate.flush()


def unpack(blob: bytes) -> tuple[Facts, list[bytes]]:
    facts, _, docs = _inflate(blob).partition(b"\n")
    return expand(json.loads(facts)), docs.split(b"\n") if docs else []


def unpack_facts(blob: bytes) -> Facts:
    return expand(json.loads(_inflate(blob).partition(b"\n")[0]))
