"""The console's embedded store: segment documents kept in SQLite (WAL), assembled into traces.

Documents are held in memory per trace, as received (bytes), until the trace has been quiet for
``settle`` seconds; then each trace is parsed, assembled, reduced to its facts (``derive``) and
written in one transaction with the others that settled: one row per trace holding its facts and
its raw documents in one compressed blob (so ``traces export`` can upload them again byte for byte),
one index row per service of the trace, and the trace's share of the per-minute statistics of every
service and edge (the rollups the service graph and the time series are read from). A document for
a trace already written (a late subsegment, the completed form of an ``in_progress`` segment)
reopens that trace: its old share of the statistics is taken away and the new one added.

Retention: traces older than ``retention`` seconds go, and when the file's pages in use pass
``max_bytes`` the oldest traces go until it is back under 90% of it; freed pages are reused, so
the file stays within its bound while traffic flows.

Readers (the API's threads) each get their own connection; the writer is the store's flusher
thread. Everything here is stdlib ``sqlite3`` and ``zlib``.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import re
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import graph
from .assembly import Document, assemble, latest

log = logging.getLogger(__name__)

Facts = dict[str, Any]
Derive = Callable[[str, list[Document], bool], Facts]
"""``derive(trace_id, assembled_segments, complete)``: the facts kept for a trace, anything JSON
can hold; its ``"nodes"`` and ``"edges"`` (rows in the trace model's ``NODE_COLUMNS`` and
``EDGE_COLUMNS`` order) feed the service index and the per-minute statistics."""

ROLLUP_PERIOD = 60
"""Seconds of one rollup slot: the service graph and the time series are exact to the minute."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT NOT NULL UNIQUE,
    start REAL NOT NULL,
    end REAL NOT NULL,
    bytes INTEGER NOT NULL,
    services TEXT NOT NULL,
    blob BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_start ON traces (start);
CREATE TABLE IF NOT EXISTS trace_services (
    name TEXT NOT NULL,
    start REAL NOT NULL,
    trace INTEGER NOT NULL,
    PRIMARY KEY (name, start, trace)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollups (
    slot INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    key TEXT NOT NULL,
    stats TEXT NOT NULL,
    PRIMARY KEY (slot, kind, key)
) WITHOUT ROWID;
"""

_TRACE_ID = re.compile(rb'"trace_id"\s*:\s*"([^"\\]{1,64})"')
"""The trace id of a document, found without parsing it (checked when the document is parsed)."""

_BLOB_V1 = b"\x01"
_WBITS = 13
"""Raw deflate with an 8 KB window: a trace's blob is a few KB, and a small window costs a tenth of
the default's set-up (measured: 15 µs a trace instead of 40-60)."""
_ZDICT = (
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
    b'{"v":1,"id":"1-","start":1,"end":1,"duration":0.0,"response_time":0.0,"flags":0,'
    b'"partial":false,"http":["http://","GET",200,null,null],"services":[["","AWS::EKS::Container"]],'
    b'"entry":0,"annotations":{},"users":[],"arns":[],"instance_ids":[],"azs":[],'
    b'"fault_root_causes":[],"error_root_causes":[],"revision":1,"nodes":[["","",1,1,0.0,0.0,0,1,0]],'
    b'"node_info":[{"h":["http://","GET",200,null,null]},{}],"edges":[["","client","","",1,1,0.0,0]]}\n'
    b'{"name":"","id":"","trace_id":"1-","start_time":1,"end_time":1,'
)
"""A preset dictionary of what segment documents and facts have in common: a trace of a few small
documents compresses to a third of what plain deflate makes of it. Part of the blob format: never
change it without a new blob version."""


class StoreError(ValueError):
    """A request the store cannot answer (a bad pagination token, say); the message says why."""


@dataclass
class _Pending:
    touched: float
    raw: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class Added:
    """What ``Store.add`` did with a batch: documents accepted, and rejected by reason."""

    accepted: int
    rejected: dict[str, int]


def _default_derive(trace_id: str, segments: list[Document], complete: bool) -> Facts:
    start, end = _span(segments)
    nodes = [
        (str(s.get("name", "")), str(s.get("origin", "")), start, end, end - start, end - start, 0, 1, 0)
        for s in segments
    ]
    return {"id": trace_id, "complete": complete, "nodes": nodes, "edges": []}


class Store:
    """A SQLite file of traces. ``start()`` runs the flusher; ``close()`` writes what is held."""

    def __init__(
        self,
        path: str | Path,
        *,
        derive: Derive = _default_derive,
        retention: float = 24 * 3600.0,
        max_bytes: int = 512 * 1024 * 1024,
        settle: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.derive = derive
        self.retention = retention
        self.max_bytes = max_bytes
        self.settle = settle
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._wal_limit = max(64 * 1024, min(16 * 1024 * 1024, max_bytes // 8))
        self._write = self._connect()
        self._write.execute(f"PRAGMA journal_size_limit={self._wal_limit}")
        with self._write:
            self._write.executescript(_SCHEMA)
        self._page_size = int(self._write.execute("PRAGMA page_size").fetchone()[0])
        self._write.execute(f"PRAGMA wal_autocheckpoint={max(16, self._wal_limit // self._page_size)}")
        (last,) = self._write.execute("SELECT max(rowid) FROM traces").fetchone()
        self._next_rowid = int(last or 0) + 1
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()  # guards _pending and the counters
        self._write_lock = threading.Lock()  # one writer at a time
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.evicted = 0
        self.rejected: dict[str, int] = {}
        """Documents refused when their trace was written (they looked right until parsed)."""

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    # --- writing ------------------------------------------------------------------------------

    def add(self, batch: Iterable[bytes]) -> Added:
        """Hold documents (JSON objects with ``trace_id`` and ``id``) until their trace settles."""
        rejected: dict[str, int] = {}
        found: list[tuple[str, bytes]] = []
        for document in batch:
            match = _TRACE_ID.search(document)
            if match is None:
                reason = _problem(document)
                rejected[reason] = rejected.get(reason, 0) + 1
                continue
            # a raw line break in a document can only be JSON whitespace: one document a line
            line = bytes(document)
            if b"\n" in line or b"\r" in line:
                line = line.replace(b"\n", b" ").replace(b"\r", b" ")
            found.append((match.group(1).decode("ascii", "replace"), line))
        now = time.monotonic()
        with self._lock:
            for trace_id, raw in found:
                held = self._pending.get(trace_id)
                if held is None:
                    held = self._pending[trace_id] = _Pending(now)
                held.touched = now
                held.raw.append(raw)
        return Added(len(found), rejected)

    def flush(self, everything: bool = False) -> int:
        """Write the traces that have settled (all held ones with ``everything``); returns how many."""
        cutoff = time.monotonic() - self.settle
        with self._lock:
            ready = [t for t, p in self._pending.items() if everything or p.touched <= cutoff]
            taken = [(t, self._pending.pop(t)) for t in ready]
        if not taken:
            return 0
        with self._write_lock:
            written = self._write_traces(taken)
            self._enforce_bounds()
        return written

    def _parse(self, taken: list[tuple[str, _Pending]]) -> dict[str, list[tuple[bytes, Document]]]:
        groups: dict[str, list[tuple[bytes, Document]]] = {}
        late: dict[str, int] = {}
        for _trace_id, held in taken:
            for raw in held.raw:
                try:
                    doc = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    late["not JSON"] = late.get("not JSON", 0) + 1
                    continue
                trace_id = doc.get("trace_id") if isinstance(doc, dict) else None
                if not isinstance(trace_id, str) or not trace_id or not isinstance(doc.get("id"), str):
                    late["no trace_id or id"] = late.get("no trace_id or id", 0) + 1
                    continue
                groups.setdefault(trace_id, []).append((raw, doc))
        if late:
            log.debug("console store: refused %s", late)
            with self._lock:
                for reason, count in late.items():
                    self.rejected[reason] = self.rejected.get(reason, 0) + count
        return groups

    def _write_traces(self, taken: list[tuple[str, _Pending]]) -> int:
        conn = self._write
        groups = self._parse(taken)
        existing: dict[str, tuple[int, float, str, bytes]] = {}
        ids = list(groups)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT trace_id, rowid, start, services, blob FROM traces WHERE trace_id IN ({marks})"
            for trace_id, rowid, start, services, blob in conn.execute(sql, chunk):
                existing[trace_id] = (rowid, start, services, blob)
        added: list[Facts] = []
        taken_away: list[Facts] = []
        traces: list[tuple[Any, ...]] = []
        services_rows: list[tuple[str, float, int]] = []
        gone: list[tuple[int, float, str]] = []
        for trace_id, fresh in groups.items():
            pairs = fresh
            if trace_id in existing:
                rowid, old_start, old_services, blob = existing[trace_id]
                old_facts, old_raw = _unpack(blob)
                taken_away.append(old_facts)
                gone.append((rowid, old_start, old_services))
                pairs = [(r, json.loads(r)) for r in old_raw] + pairs
            raws = [r for r, _ in pairs]
            docs = [d for _, d in pairs]
            kept = latest(docs)
            keep_ids = {id(d) for d in kept}
            raws = [r for r, d in zip(raws, docs, strict=True) if id(d) in keep_ids]
            start, end = _span(kept)
            segments, complete = assemble(kept, owned=True)
            facts = self.derive(trace_id, segments, complete)
            added.append(facts)
            names = sorted({str(row[0]) for row in facts.get("nodes", ())})
            rowid = self._next_rowid
            self._next_rowid += 1
            joined = "\x1f".join(names)
            traces.append((rowid, trace_id, start, end, sum(map(len, raws)), joined, _pack(facts, raws)))
            services_rows += [(name, start, rowid) for name in names]
        delta = _rollup(added)
        for key, stats in _rollup(taken_away).items():
            graph.merge(delta.setdefault(key, graph.blank()), stats, -1)
        conn.execute("BEGIN")
        try:
            _delete(conn, gone)
            conn.executemany(
                "INSERT INTO traces (rowid, trace_id, start, end, bytes, services, blob)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                traces,
            )
            conn.executemany(
                "INSERT OR IGNORE INTO trace_services (name, start, trace) VALUES (?, ?, ?)", services_rows
            )
            _merge_rollups(conn, delta)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.written += len(traces)
        return len(traces)

    def _enforce_bounds(self) -> None:
        conn = self._write
        horizon = self.clock() - self.retention
        evicted = self._evict(
            conn, "SELECT rowid, start, services FROM traces WHERE start < ? LIMIT 5000", (horizon,)
        )
        target = int(self.max_bytes * 0.9)
        while self.used_bytes() > self.max_bytes:
            count = int(conn.execute("SELECT count(*) FROM traces").fetchone()[0])
            if count == 0:
                break
            share = max(1, int(count * (1 - target / max(self.used_bytes(), 1))) + 1)
            select = "SELECT rowid, start, services FROM traces ORDER BY start LIMIT ?"
            if not self._evict(conn, select, (share,)):
                break
            evicted += 1
        if evicted:
            (oldest,) = conn.execute("SELECT min(start) FROM traces").fetchone()
            floor = max(horizon, oldest if oldest is not None else self.clock())
            conn.execute("DELETE FROM rollups WHERE slot < ?", (int(floor // ROLLUP_PERIOD),))

    def _evict(self, conn: sqlite3.Connection, select: str, params: tuple[Any, ...]) -> int:
        rows = conn.execute(select, params).fetchall()
        if not rows:
            return 0
        conn.execute("BEGIN")
        try:
            _delete(conn, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.evicted += len(rows)
        return len(rows)

    # --- reading ------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            conn.execute("PRAGMA query_only=1")
            with self._lock:
                self._readers.append(conn)
        return conn

    def used_bytes(self) -> int:
        """Bytes of the file's pages in use (free pages are reused before the file grows)."""
        conn = self._write
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self._page_size

    def file_bytes(self) -> int:
        """The database file's size on disk, its write-ahead log included."""
        total = 0
        for suffix in ("", "-wal"):
            p = Path(f"{self.path}{suffix}")
            if p.exists():
                total += p.stat().st_size
        return total

    def documents(self, trace_id: str) -> list[bytes]:
        """The raw documents kept for a trace (written and held), as received; [] when unknown."""
        with self._lock:
            held = self._pending.get(trace_id)
            extra = list(held.raw) if held else []
        row = self._reader().execute("SELECT blob FROM traces WHERE trace_id = ?", (trace_id,)).fetchone()
        return (_unpack(row[0])[1] if row else []) + extra

    def trace(self, trace_id: str) -> tuple[list[Document], bool] | None:
        """The assembled trace (segments, complete), or None when nothing is known of it."""
        docs = []
        for raw in self.documents(trace_id):
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            if isinstance(doc, dict):
                docs.append(doc)
        if not docs:
            return None
        return assemble(docs, owned=True)

    def facts(
        self,
        start: float,
        end: float,
        *,
        services: Iterable[str] | None = None,
        token: str | None = None,
    ) -> Iterator[tuple[str, Facts]]:
        """Facts of the traces that started in [start, end], newest first, resumable by ``token``.

        With ``services``, only traces that include every one of them. Each item comes with the
        token that resumes after it.
        """
        after = _decode_token(token) if token else None
        names = sorted(set(services or ()))
        sql = "SELECT t.start, t.rowid, t.blob FROM traces t WHERE t.start >= ? AND t.start <= ?"
        params: list[Any] = [start, end]
        for name in names:
            sql += " AND t.rowid IN (SELECT trace FROM trace_services"
            sql += " WHERE name = ? AND start >= ? AND start <= ?)"
            params += [name, start, end]
        if after is not None:
            sql += " AND (t.start < ? OR (t.start = ? AND t.rowid < ?))"
            params += [after[0], after[0], after[1]]
        sql += " ORDER BY t.start DESC, t.rowid DESC"
        for t_start, rowid, blob in self._reader().execute(sql, params):
            yield _encode_token(t_start, rowid), _unpack_facts(blob)

    def rollups(self, start: float, end: float) -> Iterator[tuple[int, int, tuple[str, ...], list[Any]]]:
        """``(slot, kind, key, statistics)`` of every service and edge, per minute, over [start, end]."""
        rows = self._reader().execute(
            "SELECT slot, kind, key, stats FROM rollups WHERE slot >= ? AND slot <= ?",
            (int(start // ROLLUP_PERIOD), int(end // ROLLUP_PERIOD)),
        )
        for slot, kind, key, stats in rows:
            yield slot, kind, tuple(json.loads(key)), graph.decode(stats)

    def trace_ids(self, start: float, end: float) -> list[str]:
        """Ids of the traces that started in [start, end], oldest first."""
        rows = self._reader().execute(
            "SELECT trace_id FROM traces WHERE start >= ? AND start <= ? ORDER BY start", (start, end)
        )
        return [r[0] for r in rows]

    def counts(self) -> tuple[int, int]:
        """(traces written, documents held in memory)."""
        (count,) = self._reader().execute("SELECT count(*) FROM traces").fetchone()
        with self._lock:
            held = sum(len(p.raw) for p in self._pending.values())
        return int(count), held

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, interval: float = 0.25) -> None:
        """Flush settled traces every ``interval`` seconds in a daemon thread."""
        if self._thread is not None:
            return

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.flush()
                except Exception:
                    log.exception("console store: writing traces failed; they are kept for the next try")

        self._thread = threading.Thread(target=run, name="k8sxray-store", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the flusher, write everything held, close the connections."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None
        try:
            self.flush(everything=True)
        finally:
            with self._lock:
                readers, self._readers = self._readers, []
            for conn in readers:
                conn.close()
            self._write.close()


def _problem(raw: bytes) -> str:
    """Why a document the store cannot use is refused."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "not JSON"
    if not isinstance(doc, dict):
        return "not an object"
    return "no trace_id or id"


def _rollup(facts: list[Facts]) -> graph.Rollup:
    """The traces' share of the per-minute statistics."""
    nodes = itertools.chain.from_iterable(f.get("nodes", ()) for f in facts)
    edges = itertools.chain.from_iterable(f.get("edges", ()) for f in facts)
    return graph.rollup(nodes, edges, ROLLUP_PERIOD)


def _merge_rollups(conn: sqlite3.Connection, delta: graph.Rollup) -> None:
    for (slot, kind, key), change in delta.items():
        text_key = json.dumps(key, separators=(",", ":"))
        row = conn.execute(
            "SELECT stats FROM rollups WHERE slot = ? AND kind = ? AND key = ?", (slot, kind, text_key)
        ).fetchone()
        stats = change
        if row is not None:
            stats = graph.decode(row[0])
            graph.merge(stats, change)
        if graph.empty(stats):
            conn.execute(
                "DELETE FROM rollups WHERE slot = ? AND kind = ? AND key = ?", (slot, kind, text_key)
            )
        else:
            conn.execute(
                "INSERT OR REPLACE INTO rollups (slot, kind, key, stats) VALUES (?, ?, ?, ?)",
                (slot, kind, text_key, graph.encode(stats)),
            )


def _delete(conn: sqlite3.Connection, rows: Iterable[tuple[int, float, str]]) -> None:
    rows = list(rows)
    conn.executemany(
        "DELETE FROM trace_services WHERE name = ? AND start = ? AND trace = ?",
        [(name, start, rowid) for rowid, start, services in rows for name in services.split("\x1f") if name],
    )
    conn.executemany("DELETE FROM traces WHERE rowid = ?", [(rowid,) for rowid, _, _ in rows])


def _span(docs: list[Document]) -> tuple[float, float]:
    starts = [float(d["start_time"]) for d in docs if isinstance(d.get("start_time"), int | float)]
    ends = [float(d["end_time"]) for d in docs if isinstance(d.get("end_time"), int | float)]
    start = min(starts) if starts else time.time()
    return start, max([*ends, start])


def _pack(facts: Facts, raws: list[bytes]) -> bytes:
    body = json.dumps(facts, separators=(",", ":")).encode() + b"\n" + b"\n".join(raws)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -_WBITS, 8, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
    return _BLOB_V1 + deflate.compress(body) + deflate.flush()


def _inflate(blob: bytes) -> bytes:
    if blob[:1] != _BLOB_V1:
        raise StoreError(f"unknown trace blob version {blob[:1]!r}")
    inflate = zlib.decompressobj(-_WBITS, _ZDICT)
    return inflate.decompress(blob[1:]) + inflate.flush()


def _unpack(blob: bytes) -> tuple[Facts, list[bytes]]:
    facts, _, docs = _inflate(blob).partition(b"\n")
    return json.loads(facts), docs.split(b"\n") if docs else []


def _unpack_facts(blob: bytes) -> Facts:
    facts: Facts = json.loads(_inflate(blob).partition(b"\n")[0])
    return facts


def _encode_token(start: float, rowid: int) -> str:
    return base64.urlsafe_b64encode(f"{start!r}:{rowid}".encode()).decode()


def _decode_token(token: str) -> tuple[float, int]:
    try:
        start, rowid = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        return float(start), int(rowid)
    except (ValueError, UnicodeDecodeError):
        raise StoreError(f"invalid NextToken {token!r}") from None
