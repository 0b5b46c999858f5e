"""The console's embedded store: segment documents kept in SQLite (WAL), assembled into traces.

Documents are held in memory per trace until the trace has been quiet for ``settle`` seconds,
then written in one transaction: the trace's raw documents (compressed, exactly as received, so
``traces export`` can upload them again), its facts (what queries need, derived once by
``derive``), and one row per service for the service index. A document for a trace already written
(a late subsegment, the completed form of an ``in_progress`` segment) reopens that trace.

Retention: traces older than ``retention`` seconds go, and when the file's pages in use pass
``max_bytes`` the oldest traces go until it is back under 90% of it; freed pages are reused, so
the file stays within its bound while traffic flows.

Readers (the API's threads) each get their own connection; the writer is the store's flusher
thread. Everything here is stdlib ``sqlite3`` and ``zlib``.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .assembly import Document, assemble, latest

log = logging.getLogger(__name__)

Facts = dict[str, Any]
Derive = Callable[[str, list[Document], bool], Facts]
"""``derive(trace_id, assembled_segments, complete)``: the facts kept for a trace, anything JSON
can hold; its ``"nodes"`` and ``"edges"`` (rows in ``NODE_COLUMNS`` / ``EDGE_COLUMNS`` order) are
also kept as table rows, for the service index and the service graph."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT NOT NULL UNIQUE,
    start REAL NOT NULL,
    end REAL NOT NULL,
    bytes INTEGER NOT NULL,
    facts BLOB NOT NULL,
    docs BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_start ON traces (start);
CREATE TABLE IF NOT EXISTS nodes (
    trace INTEGER NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL,
    response_time REAL NOT NULL,
    duration REAL NOT NULL,
    flags INTEGER NOT NULL,
    root INTEGER NOT NULL,
    inferred INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS nodes_name ON nodes (name, start);
CREATE INDEX IF NOT EXISTS nodes_trace ON nodes (trace);
CREATE TABLE IF NOT EXISTS edges (
    trace INTEGER NOT NULL,
    src_name TEXT NOT NULL,
    src_type TEXT NOT NULL,
    dst_name TEXT NOT NULL,
    dst_type TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL,
    response_time REAL NOT NULL,
    flags INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS edges_start ON edges (start);
CREATE INDEX IF NOT EXISTS edges_trace ON edges (trace);
"""
NODE_COLUMNS = ("name", "type", "start", "end", "response_time", "duration", "flags", "root", "inferred")
"""A node row, as ``derive`` gives them in ``facts["nodes"]`` and ``node_rows`` gives them back."""
EDGE_COLUMNS = ("src_name", "src_type", "dst_name", "dst_type", "start", "end", "response_time", "flags")
"""An edge row, as ``derive`` gives them in ``facts["edges"]`` and ``edge_rows`` gives them back."""
_NODE_INSERT = f"INSERT INTO nodes (trace, {', '.join(NODE_COLUMNS)}) VALUES ({', '.join('?' * 10)})"
_EDGE_INSERT = f"INSERT INTO edges (trace, {', '.join(EDGE_COLUMNS)}) VALUES ({', '.join('?' * 9)})"


class StoreError(ValueError):
    """A request the store cannot answer (a bad pagination token, say); the message says why."""


@dataclass
class _Pending:
    touched: float
    raw: list[bytes] = field(default_factory=list)
    docs: list[Document] = field(default_factory=list)


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
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one writer at a time
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.evicted = 0

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    # --- writing ------------------------------------------------------------------------------

    def add(self, batch: Iterable[bytes]) -> Added:
        """Hold documents (JSON objects with ``trace_id`` and ``id``) until their trace settles."""
        rejected: dict[str, int] = {}
        accepted = 0
        parsed: list[tuple[str, bytes, Document]] = []
        for raw in batch:
            try:
                doc = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                rejected["not JSON"] = rejected.get("not JSON", 0) + 1
                continue
            if not isinstance(doc, dict):
                rejected["not an object"] = rejected.get("not an object", 0) + 1
                continue
            trace_id, doc_id = doc.get("trace_id"), doc.get("id")
            if not isinstance(trace_id, str) or not trace_id or not isinstance(doc_id, str) or not doc_id:
                rejected["no trace_id or id"] = rejected.get("no trace_id or id", 0) + 1
                continue
            parsed.append((trace_id, raw, doc))
        now = time.monotonic()
        with self._lock:
            for trace_id, raw, doc in parsed:
                held = self._pending.get(trace_id)
                if held is None:
                    held = self._pending[trace_id] = _Pending(now)
                held.touched = now
                # parsed as JSON, so a raw line break can only be whitespace: one document a line
                held.raw.append(bytes(raw).replace(b"\n", b" ").replace(b"\r", b" "))
                held.docs.append(doc)
                accepted += 1
        return Added(accepted, rejected)

    def flush(self, everything: bool = False) -> int:
        """Write the traces that have settled (all held ones with ``everything``); returns how many."""
        cutoff = time.monotonic() - self.settle
        with self._lock:
            ready = [t for t, p in self._pending.items() if everything or p.touched <= cutoff]
            taken = [(t, self._pending.pop(t)) for t in ready]
        if not taken:
            return 0
        with self._write_lock:
            self._write_traces(taken)
            self._enforce_bounds()
        return len(taken)

    def _write_traces(self, taken: list[tuple[str, _Pending]]) -> None:
        conn = self._write
        existing: dict[str, tuple[int, bytes]] = {}
        ids = [t for t, _ in taken]
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for trace_id, rowid, docs in conn.execute(
                f"SELECT trace_id, rowid, docs FROM traces WHERE trace_id IN ({marks})",
                chunk,
            ):
                existing[trace_id] = (rowid, docs)
        conn.execute("BEGIN")
        try:
            for trace_id, held in taken:
                raw, docs = held.raw, held.docs
                if trace_id in existing:
                    rowid, blob = existing[trace_id]
                    old_raw = _unpack(blob)
                    raw = old_raw + raw
                    docs = [json.loads(r) for r in old_raw] + docs
                    _delete(conn, [rowid])
                self._insert(conn, trace_id, raw, docs)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.written += len(taken)

    def _insert(
        self, conn: sqlite3.Connection, trace_id: str, raw: list[bytes], docs: list[Document]
    ) -> None:
        kept = latest(docs)
        keep_ids = {id(d) for d in kept}
        raw = [r for r, d in zip(raw, docs, strict=True) if id(d) in keep_ids]
        segments, complete = assemble(kept, owned=True)
        start, end = _span(kept)
        facts = self.derive(trace_id, segments, complete)
        cur = conn.execute(
            "INSERT INTO traces (trace_id, start, end, bytes, facts, docs) VALUES (?, ?, ?, ?, ?, ?)",
            (
                trace_id,
                start,
                end,
                sum(len(r) for r in raw),
                zlib.compress(json.dumps(facts, separators=(",", ":")).encode(), 1),
                zlib.compress(b"\n".join(raw), 6),
            ),
        )
        rowid = cur.lastrowid
        conn.executemany(_NODE_INSERT, [(rowid, *row) for row in facts.get("nodes", ())])
        conn.executemany(_EDGE_INSERT, [(rowid, *row) for row in facts.get("edges", ())])

    def _enforce_bounds(self) -> None:
        conn = self._write
        horizon = self.clock() - self.retention
        self._evict(conn, "SELECT rowid FROM traces WHERE start < ? LIMIT 5000", (horizon,))
        target = int(self.max_bytes * 0.9)
        while self.used_bytes() > self.max_bytes:
            count = int(conn.execute("SELECT count(*) FROM traces").fetchone()[0])
            if count == 0:
                break
            share = max(1, int(count * (1 - target / max(self.used_bytes(), 1))) + 1)
            if not self._evict(conn, "SELECT rowid FROM traces ORDER BY start LIMIT ?", (share,)):
                break

    def _evict(self, conn: sqlite3.Connection, select: str, params: tuple[Any, ...]) -> int:
        rows = [r[0] for r in conn.execute(select, params)]
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
        row = self._reader().execute("SELECT docs FROM traces WHERE trace_id = ?", (trace_id,)).fetchone()
        return (_unpack(row[0]) if row else []) + extra

    def trace(self, trace_id: str) -> tuple[list[Document], bool] | None:
        """The assembled trace (segments, complete), or None when nothing is known of it."""
        raw = self.documents(trace_id)
        if not raw:
            return None
        return assemble((json.loads(r) for r in raw), owned=True)

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
        sql = "SELECT t.start, t.rowid, t.facts FROM traces t"
        params: list[Any] = []
        if names:
            sql += " WHERE t.rowid IN (SELECT n.trace FROM nodes n WHERE n.name = ? AND n.start >= ?"
            sql += " AND n.start <= ?)"
            params += [names[0], start - _NODE_SLACK, end + _NODE_SLACK]
            for name in names[1:]:
                sql += " AND EXISTS (SELECT 1 FROM nodes x WHERE x.trace = t.rowid AND x.name = ?)"
                params.append(name)
            sql += " AND"
        else:
            sql += " WHERE"
        sql += " t.start >= ? AND t.start <= ?"
        params += [start, end]
        if after is not None:
            sql += " AND (t.start < ? OR (t.start = ? AND t.rowid < ?))"
            params += [after[0], after[0], after[1]]
        sql += " ORDER BY t.start DESC, t.rowid DESC"
        for t_start, rowid, facts in self._reader().execute(sql, params):
            yield _encode_token(t_start, rowid), _facts(facts)

    def all_facts(self, start: float, end: float) -> Iterator[Facts]:
        """Facts of every trace that started in [start, end], oldest first."""
        for (facts,) in self._reader().execute(
            "SELECT facts FROM traces WHERE start >= ? AND start <= ? ORDER BY start", (start, end)
        ):
            yield _facts(facts)

    def node_rows(self, start: float, end: float) -> Iterator[tuple[Any, ...]]:
        """Node rows (``NODE_COLUMNS``) of the traces that started in [start, end]."""
        cols = ", ".join(f"n.{c}" for c in NODE_COLUMNS)
        yield from self._reader().execute(
            f"SELECT {cols} FROM traces t JOIN nodes n ON n.trace = t.rowid"
            " WHERE t.start >= ? AND t.start <= ?",
            (start, end),
        )

    def edge_rows(self, start: float, end: float) -> Iterator[tuple[Any, ...]]:
        """Edge rows (``EDGE_COLUMNS``) of the traces that started in [start, end]."""
        cols = ", ".join(f"e.{c}" for c in EDGE_COLUMNS)
        yield from self._reader().execute(
            f"SELECT {cols} FROM traces t JOIN edges e ON e.trace = t.rowid"
            " WHERE t.start >= ? AND t.start <= ?",
            (start, end),
        )

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


def _span(docs: list[Document]) -> tuple[float, float]:
    starts = [float(d["start_time"]) for d in docs if isinstance(d.get("start_time"), int | float)]
    ends = [float(d["end_time"]) for d in docs if isinstance(d.get("end_time"), int | float)]
    start = min(starts) if starts else time.time()
    return start, max([*ends, start])


_NODE_SLACK = 3600.0
"""A node starts at most this long after its trace does (for the service index's range)."""


def _delete(conn: sqlite3.Connection, rowids: list[int]) -> None:
    params = [(r,) for r in rowids]
    conn.executemany("DELETE FROM nodes WHERE trace = ?", params)
    conn.executemany("DELETE FROM edges WHERE trace = ?", params)
    conn.executemany("DELETE FROM traces WHERE rowid = ?", params)


def _facts(blob: bytes) -> Facts:
    facts: Facts = json.loads(zlib.decompress(blob))
    return facts


def _unpack(blob: bytes) -> list[bytes]:
    return zlib.decompress(blob).split(b"\n")


def _encode_token(start: float, rowid: int) -> str:
    return base64.urlsafe_b64encode(f"{start!r}:{rowid}".encode()).decode()


def _decode_token(token: str) -> tuple[float, int]:
    try:
        start, rowid = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        return float(start), int(rowid)
    except (ValueError, UnicodeDecodeError):
        raise StoreError(f"invalid NextToken {token!r}") from None
