"""The console's store: trace assembly as X-Ray does it, persistence, pagination and retention."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from k8sxray.console.assembly import assemble, latest
from k8sxray.console.store import Store, StoreError

TRACE = "1-5f000000-0123456789abcdef01234567"


def seg(doc_id: str, **fields: Any) -> dict[str, Any]:
    return {"trace_id": TRACE, "id": doc_id, "name": "svc", "start_time": 100.0, "end_time": 101.0, **fields}


def sub(doc_id: str, parent: str, **fields: Any) -> dict[str, Any]:
    return {"type": "subsegment", "parent_id": parent, **seg(doc_id, name="call"), **fields}


def raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_subsegments_sent_alone_join_their_parent_wherever_it_sits() -> None:
    root = seg(
        "a" * 16, subsegments=[{"id": "b" * 16, "name": "inner", "start_time": 100.1, "end_time": 100.9}]
    )
    deep = sub("c" * 16, "b" * 16)  # under a subsegment nested in the segment
    deeper = sub("d" * 16, "c" * 16)  # under a subsegment that itself came alone
    for order in ([root, deep, deeper], [deeper, deep, root], [deep, root, deeper]):
        segments, complete = assemble(order)
        assert complete
        assert len(segments) == 1
        inner = segments[0]["subsegments"][0]
        c = inner["subsegments"][0]
        assert c["id"] == "c" * 16
        assert not {"type", "trace_id", "parent_id"} & c.keys()
        assert c["subsegments"][0]["id"] == "d" * 16
    assert deep["type"] == "subsegment"  # inputs untouched


def test_in_progress_is_replaced_by_the_completed_document_in_either_order() -> None:
    started = seg("a" * 16, in_progress=True)
    del started["end_time"]
    done = seg("a" * 16, end_time=105.0)
    for order in ([started, done], [done, started]):
        segments, complete = assemble(order)
        assert complete
        assert segments == [done]
    only, complete = assemble([started])
    assert not complete
    assert only[0]["in_progress"] is True
    assert latest([seg("x" * 16, end_time=1.0), seg("x" * 16, end_time=2.0)])[0]["end_time"] == 2.0


def test_a_subsegment_without_its_parent_stays_a_document_and_marks_the_trace_incomplete() -> None:
    segments, complete = assemble([seg("a" * 16), sub("c" * 16, "f" * 16)])
    assert not complete
    assert [s["id"] for s in segments] == ["a" * 16, "c" * 16]


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "traces.db", settle=0.0, clock=lambda: 200.0)
    yield s
    s.close()


def test_documents_are_kept_byte_for_byte_and_a_late_one_reopens_its_trace(store: Store) -> None:
    first = raw(seg("a" * 16))
    added = store.add([first, b"not json", b"[1]", raw({"id": "x" * 16})])
    assert added.accepted == 1
    assert added.rejected == {"not JSON": 1, "not an object": 1, "no trace_id or id": 1}
    assert store.trace(TRACE) is not None  # held, not yet written: still readable
    assert store.flush() == 1
    late = raw(sub("c" * 16, "a" * 16))
    store.add([late])
    store.flush()
    assert store.documents(TRACE) == [first, late]
    segments, complete = store.trace(TRACE) or ([], False)
    assert complete
    assert segments[0]["subsegments"][0]["id"] == "c" * 16
    assert store.counts() == (1, 2, 0)


def test_a_completed_document_replaces_the_in_progress_one_on_disk(store: Store) -> None:
    started = seg("a" * 16, in_progress=True)
    del started["end_time"]
    store.add([raw(started)])
    store.flush()
    done = raw(seg("a" * 16, end_time=103.0))
    store.add([done])
    store.flush()
    assert store.documents(TRACE) == [done]


def test_facts_page_newest_first_filtered_by_service_and_resumable(tmp_path: Path) -> None:
    def derive(trace_id: str, segments: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
        nodes = [(s["name"], "", s["start_time"], s["end_time"], 1.0, 1.0, 0, 1, 0) for s in segments]
        return {"id": trace_id, "nodes": nodes, "edges": []}

    store = Store(tmp_path / "t.db", settle=0.0, derive=derive, clock=lambda: 200.0)
    docs = []
    for i in range(30):
        trace = f"1-5f000000-{i:024x}"
        name = "a" if i % 3 else "b"
        docs.append(raw({**seg(f"{i:016x}", name=name, start_time=100.0 + i), "trace_id": trace}))
    random.Random(1).shuffle(docs)
    store.add(docs)
    store.flush()
    every = [f["id"] for _, f in store.facts(0, 1e12)]
    assert every == [f"1-5f000000-{i:024x}" for i in reversed(range(30))]
    only_b = [f["id"] for _, f in store.facts(0, 1e12, services=["b"])]
    assert only_b == [f"1-5f000000-{i:024x}" for i in reversed(range(0, 30, 3))]
    window = [f["id"] for _, f in store.facts(105.0, 110.0)]
    assert window == [f"1-5f000000-{i:024x}" for i in (10, 9, 8, 7, 6, 5)]
    page = list(store.facts(0, 1e12))
    resumed = [f["id"] for _, f in store.facts(0, 1e12, token=page[9][0])]
    assert resumed == every[10:]
    with pytest.raises(StoreError, match="NextToken"):
        list(store.facts(0, 1e12, token="garbage!"))
    store.close()


def test_old_traces_leave_by_age(tmp_path: Path) -> None:
    now = [1000.0]
    store = Store(tmp_path / "t.db", settle=0.0, retention=100.0, clock=lambda: now[0])
    store.add([raw({**seg("a" * 16, start_time=850.0), "trace_id": "1-5f000000-" + "1" * 24})])
    store.add([raw({**seg("b" * 16, start_time=950.0), "trace_id": "1-5f000000-" + "2" * 24})])
    store.flush()
    assert store.trace_ids(0, 1e12) == ["1-5f000000-" + "2" * 24]
    now[0] = 1100.0
    store.add([raw({**seg("c" * 16, start_time=1090.0), "trace_id": "1-5f000000-" + "3" * 24})])
    store.flush()
    assert store.trace_ids(0, 1e12) == ["1-5f000000-" + "3" * 24]
    store.close()


def test_the_file_stays_within_its_bound_under_continuous_ingest(tmp_path: Path) -> None:
    bound = 2 * 1024 * 1024
    store = Store(tmp_path / "t.db", settle=0.0, max_bytes=bound, clock=lambda: 1e9)
    rng = random.Random(7)
    sizes = []
    for batch in range(60):
        docs = []
        for i in range(100):
            n = batch * 100 + i
            doc = seg(
                f"{n:016x}", start_time=1e9 - 10_000 + n, metadata={"pad": {"r": rng.randbytes(200).hex()}}
            )
            docs.append(raw({**doc, "trace_id": f"1-5f000000-{n:024x}"}))
        store.add(docs)
        store.flush()
        sizes.append(store.used_bytes())
    assert max(sizes) <= bound
    assert store.evicted > 0
    ids = store.trace_ids(0, 1e12)
    assert ids[-1] == f"1-5f000000-{5999:024x}"  # the newest are kept, the oldest went first
    assert ids == sorted(ids)
    assert store.file_bytes() <= bound * 1.5
    store.close()


def test_close_writes_everything_held_and_reopening_finds_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db", settle=3600.0, clock=lambda: 200.0)
    store.add([raw(seg("a" * 16))])
    assert store.flush() == 0  # not settled yet
    store.close()
    again = Store(tmp_path / "t.db", clock=lambda: 200.0)
    assert again.trace_ids(0, 1e12) == [TRACE]
    again.close()
    conn = sqlite3.connect(tmp_path / "t.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_readers_in_other_threads_see_writes_while_the_flusher_runs(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db", settle=0.0, clock=lambda: 200.0)
    store.start(interval=0.01)
    seen: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(200):
                seen.append(len(store.trace_ids(0, 1e12)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(500):
        store.add([raw({**seg(f"{n:016x}"), "trace_id": f"1-5f000000-{n:024x}"})])
    reader.join()
    store.close()
    assert not errors
    assert seen == sorted(seen)
    again = Store(tmp_path / "t.db", clock=lambda: 200.0)
    assert len(again.trace_ids(0, 1e12)) == 500
    again.close()
