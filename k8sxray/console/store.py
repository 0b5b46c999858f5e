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
import json
import logging
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import graph
from .assembly import Document, assemble
from .packing import ROLLUP_PERIOD, Derive, Facts, Result, Work, pack, span, unpack, unpack_facts

log = logging.getLogger(__name__)

Packer = Callable[[Work, Derive], Result]
"""Runs ``packing.pack`` (in this process, or in a worker process: see ``console._worker``)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT NOT NULL UNIQUE,
    start REAL NOT NULL,
    end REAL NOT NULL,
    bytes INTEGER NOT NULL,
    documents INTEGER NOT NULL,
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


class StoreError(ValueError):
    """A request the store cannot answer (a bad pagination token, say); the message says why."""


class StoreBusy(RuntimeError):
    """Writing fell behind and the memory for held documents is full: try the batch again later."""


@dataclass
class _Pending:
    touched: float
    raw: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class _Batch:
    """A chunk of settled traces, packed, waiting to be written."""

    chunk: list[tuple[str, _Pending]]
    existing: dict[str, tuple[int, float, str, bytes]]
    result: Result


CHUNK = 500
"""Traces packed in one go: bounds the memory a burst takes while it is packed."""


@dataclass(frozen=True)
class Added:
    """What ``Store.add`` did with a batch: documents accepted, and rejected by reason."""

    accepted: int
    rejected: dict[str, int]


def _default_derive(trace_id: str, segments: list[Document], complete: bool) -> Facts:
    start, end = span(segments)
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
        packer: Packer = pack,
        max_held_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.path = Path(path)
        self.derive = derive
        self.packer = packer
        self.max_held_bytes = max_held_bytes
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
        self._lock = threading.Lock()  # guards _pending, _held_bytes and the counters
        self._room = threading.Condition(self._lock)  # notified when written traces free memory
        self._held_bytes = 0
        self._in_flight: set[str] = set()  # taken to be packed and written, not yet written
        self._queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=2)
        self._writer: threading.Thread | None = None
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

    def add(self, batch: Iterable[bytes], wait: float = 0.0) -> Added:
        """Hold documents (JSON objects with ``trace_id`` and ``id``) until their trace settles.

        When more than ``max_held_bytes`` are held (writing fell behind), waits up to ``wait``
        seconds for room, then raises ``StoreBusy``: the caller keeps the batch and tries later.
        """
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
        size = sum(len(raw) for _, raw in found)
        with self._lock:
            if self._held_bytes + size > self.max_held_bytes and self._held_bytes > 0:
                deadline = time.monotonic() + wait
                while self._held_bytes + size > self.max_held_bytes and self._held_bytes > 0:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise StoreBusy(f"{self._held_bytes} bytes wait to be written")
                    self._room.wait(left)
            self._hold_locked(found, size)
        return Added(len(found), rejected)

    def _hold(self, found: list[tuple[str, bytes]]) -> None:
        with self._lock:
            self._hold_locked(found, sum(len(raw) for _, raw in found))

    def _hold_locked(self, found: list[tuple[str, bytes]], size: int) -> None:
        now = time.monotonic()
        for trace_id, raw in found:
            held = self._pending.get(trace_id)
            if held is None:
                held = self._pending[trace_id] = _Pending(now)
            held.touched = now
            held.raw.append(raw)
        self._held_bytes += size

    def flush(self, everything: bool = False) -> int:
        """Pack and write the traces that have settled (every held one with ``everything``).

        Returns how many traces were taken. While ``start()``'s threads run, packing happens here
        and writing in the writer thread, so the next batch is packed while this one is written;
        otherwise both happen here, and the traces are written when this returns.
        """
        cutoff = time.monotonic() - self.settle
        with self._lock:
            ready = [
                t
                for t, p in self._pending.items()
                if (everything or p.touched <= cutoff) and t not in self._in_flight
            ]
            taken = [(t, self._pending.pop(t)) for t in ready]
            self._in_flight.update(ready)
        for i in range(0, len(taken), CHUNK):
            chunk = taken[i : i + CHUNK]
            try:
                packed = self._pack(chunk)
            except BaseException:
                self._hold_again(chunk)
                raise
            if self._writer is not None and self._writer.is_alive():
                self._queue.put(packed)
            else:
                self._write_packed(packed)
        return len(taken)

    def _pack(self, chunk: list[tuple[str, _Pending]]) -> _Batch:
        existing: dict[str, tuple[int, float, str, bytes]] = {}
        ids = [trace_id for trace_id, _ in chunk]
        reader = self._reader()
        for i in range(0, len(ids), 500):
            some = ids[i : i + 500]
            marks = ",".join("?" * len(some))
            sql = f"SELECT trace_id, rowid, start, services, blob FROM traces WHERE trace_id IN ({marks})"
            for trace_id, rowid, start, services, blob in reader.execute(sql, some):
                existing[trace_id] = (rowid, start, services, blob)
        work = [(t, held.raw, existing[t][3] if t in existing else None) for t, held in chunk]
        return _Batch(chunk, existing, self.packer(work, self.derive))

    def _hold_again(self, chunk: list[tuple[str, _Pending]]) -> None:
        """After a failure: the chunk's documents are held again, for the next try."""
        with self._lock:
            for trace_id, held in chunk:
                again = self._pending.setdefault(trace_id, _Pending(held.touched))
                again.raw[:0] = held.raw
                self._in_flight.discard(trace_id)

    def _write_packed(self, batch: _Batch) -> None:
        try:
            with self._write_lock:
                self._write_traces(batch)
                self._enforce_bounds()
        except BaseException:
            self._hold_again(batch.chunk)
            raise
        size = sum(len(raw) for _, held in batch.chunk for raw in held.raw)
        with self._lock:
            for trace_id, _ in batch.chunk:
                self._in_flight.discard(trace_id)
            self._held_bytes -= size
            self._room.notify_all()

    def _write_traces(self, batch: _Batch) -> int:
        conn = self._write
        result, existing = batch.result, batch.existing
        if result.rejected:
            log.debug("console store: refused %s", result.rejected)
            with self._lock:
                for reason, count in result.rejected.items():
                    self.rejected[reason] = self.rejected.get(reason, 0) + count
        if result.misplaced:
            self._hold([(_trace_id_of(raw), raw) for raw in result.misplaced])
        gone = [existing[t][:3] for t, _ in batch.chunk if t in existing]
        traces: list[tuple[Any, ...]] = []
        services_rows: list[tuple[str, float, int]] = []
        for packed in result.traces:
            rowid = self._next_rowid
            self._next_rowid += 1
            traces.append(
                (
                    rowid,
                    packed.trace_id,
                    packed.start,
                    packed.end,
                    packed.size,
                    packed.documents,
                    "\x1f".join(packed.services),
                    packed.blob,
                )
            )
            services_rows += [(name, packed.start, rowid) for name in packed.services]
        conn.execute("BEGIN")
        try:
            _delete(conn, gone)
            conn.executemany(
                "INSERT INTO traces (rowid, trace_id, start, end, bytes, documents, services, blob)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                traces,
            )
            conn.executemany(
                "INSERT OR IGNORE INTO trace_services (name, start, trace) VALUES (?, ?, ?)", services_rows
            )
            _merge_rollups(conn, result.rollup)
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
        return (unpack(row[0])[1] if row else []) + extra

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
            yield _encode_token(t_start, rowid), unpack_facts(blob)

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

    def counts(self) -> tuple[int, int, int]:
        """(traces written, their documents, documents held in memory)."""
        count, documents = self._reader().execute("SELECT count(*), total(documents) FROM traces").fetchone()
        with self._lock:
            held = sum(len(p.raw) for p in self._pending.values())
        return int(count), int(documents), held

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, interval: float = 0.25) -> None:
        """Pack settled traces every ``interval`` seconds in one thread, write them in another."""
        if self._thread is not None:
            return

        def pack_loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.flush()
                except Exception:
                    log.exception("console store: packing traces failed; they are kept for the next try")

        def write_loop() -> None:
            while (batch := self._queue.get()) is not None:
                try:
                    self._write_packed(batch)
                except Exception:
                    log.exception("console store: writing traces failed; they are kept for the next try")

        self._writer = threading.Thread(target=write_loop, name="k8sxray-store-writer", daemon=True)
        self._writer.start()
        self._thread = threading.Thread(target=pack_loop, name="k8sxray-store", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop packing, write everything held, close the connections and the packing workers."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
            self._thread = None
        try:
            self.flush(everything=True)
        finally:
            if self._writer is not None:
                self._queue.put(None)
                self._writer.join(timeout=60.0)
                self._writer = None
            with self._lock:
                readers, self._readers = self._readers, []
            for conn in readers:
                conn.close()
            self._write.close()
            close_packer = getattr(self.packer, "close", None)
            if close_packer is not None:
                close_packer()


def _trace_id_of(raw: bytes) -> str:
    match = _TRACE_ID.search(raw)
    return match.group(1).decode("ascii", "replace") if match else ""


def _problem(raw: bytes) -> str:
    """Why a document the store cannot use is refused."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "not JSON"
    if not isinstance(doc, dict):
        return "not an object"
    return "no trace_id or id"


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


def _encode_token(start: float, rowid: int) -> str:
    return base64.urlsafe_b64encode(f"{start!r}:{rowid}".encode()).decode()


def _decode_token(token: str) -> tuple[float, int]:
    try:
        start, rowid = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        return float(start), int(rowid)
    except (ValueError, UnicodeDecodeError):
        raise StoreError(f"invalid NextToken {token!r}") from None
