"""The daemon in local mode, for real: UDP in, the console's API, the terminal commands, the token."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._daemon import LocalDaemon, clean_env


def trace_documents(n: int, now: float) -> tuple[str, list[dict[str, Any]]]:
    """Service-A calls Service-B (which fails); B's DynamoDB call is sent on its own, and A first
    arrives in progress, then complete."""
    trace_id = f"1-{int(now):08x}-{n:024x}"
    a_id, call, b_id = f"a{n:015x}", f"c{n:015x}", f"b{n:015x}"
    started = {"name": "Service-A", "id": a_id, "trace_id": trace_id, "start_time": now, "in_progress": True}
    a = {
        **started,
        "in_progress": False,
        "end_time": now + 0.3,
        "http": {"request": {"method": "GET", "url": "http://a/orders"}, "response": {"status": 500}},
        "fault": True,
        "annotations": {"order": n},
        "subsegments": [
            {
                "name": "Service-B",
                "id": call,
                "start_time": now + 0.01,
                "end_time": now + 0.29,
                "namespace": "remote",
            }
        ],
    }
    del a["in_progress"]
    b = {
        "name": "Service-B",
        "id": b_id,
        "trace_id": trace_id,
        "parent_id": call,
        "start_time": now + 0.02,
        "end_time": now + 0.28,
        "fault": True,
        "http": {"response": {"status": 500}},
    }
    dynamo = {
        "type": "subsegment",
        "trace_id": trace_id,
        "parent_id": b_id,
        "name": "DynamoDB",
        "id": f"d{n:015x}",
        "namespace": "aws",
        "start_time": now + 0.03,
        "end_time": now + 0.05,
        "aws": {"operation": "GetItem", "table_name": "orders"},
    }
    return trace_id, [started, dynamo, b, a]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[LocalDaemon]:
    running = LocalDaemon(tmp_path)
    yield running
    running.stop()


def test_with_no_aws_it_runs_locally_and_says_where_to_look(daemon: LocalDaemon) -> None:
    assert "running locally" in daemon.log
    assert daemon.url == f"http://127.0.0.1:{daemon.http_port}/"
    now = time.time()
    trace_id, docs = trace_documents(1, now)
    daemon.send(*docs)
    daemon.wait_for({trace_id})
    (trace,) = daemon.client().batch_get_traces(TraceIds=[trace_id])["Traces"]
    segments = {s["Id"]: json.loads(s["Document"]) for s in trace["Segments"]}
    assert set(segments) == {f"a{1:015x}", f"b{1:015x}"}
    a, b = segments[f"a{1:015x}"], segments[f"b{1:015x}"]
    assert "in_progress" not in a  # the completed document replaced the first one
    assert a["end_time"] == pytest.approx(now + 0.3)
    assert b["subsegments"][0]["name"] == "DynamoDB"  # sent alone, nested in its parent
    graph = daemon.client().get_service_graph(StartTime=now - 60, EndTime=now + 60)["Services"]
    names = {(s["Name"], s.get("Type")) for s in graph}
    assert {("Service-A", None), ("Service-B", None), ("orders", "AWS::DynamoDB::Table")} <= names
    faulty = daemon.client().get_trace_summaries(
        StartTime=now - 60, EndTime=now + 60, FilterExpression='service("Service-B") { fault }'
    )
    assert [s["Id"] for s in faulty["TraceSummaries"]] == [trace_id]


def test_the_sampling_port_and_the_console_answer_from_local_rules(daemon: LocalDaemon) -> None:
    for endpoint in (f"http://127.0.0.1:{daemon.tcp}", daemon.endpoint):
        rules = daemon.client(endpoint).get_sampling_rules()["SamplingRuleRecords"]
        assert [r["SamplingRule"]["RuleName"] for r in rules] == ["Default"]
        targets = daemon.client(endpoint).get_sampling_targets(
            SamplingStatisticsDocuments=[
                {
                    "RuleName": "Default",
                    "ClientID": "a" * 24,
                    "Timestamp": time.time(),
                    "RequestCount": 3,
                    "SampledCount": 1,
                    "BorrowCount": 0,
                }
            ]
        )
        assert targets["SamplingTargetDocuments"][0]["RuleName"] == "Default"


def run_cli(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k8sxray", "traces", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        env=clean_env(home),
        check=False,
    )


def test_the_terminal_lists_shows_exports_and_uploads(daemon: LocalDaemon, tmp_path: Path) -> None:
    now = time.time()
    ids = set()
    for n in range(3):
        trace_id, docs = trace_documents(n, now - n)
        ids.add(trace_id)
        daemon.send(*docs)
    daemon.wait_for(ids)
    listed = run_cli("--endpoint", daemon.endpoint, home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert {line.split()[1] for line in listed.stdout.splitlines()} == ids
    assert "GET http://a/orders" in listed.stdout
    as_json = json.loads(run_cli("--endpoint", daemon.endpoint, "--json", home=tmp_path).stdout)
    assert {s["Id"] for s in as_json} == ids
    filtered = run_cli("--endpoint", daemon.endpoint, "--filter", "annotation.order = 2", home=tmp_path)
    assert len(filtered.stdout.splitlines()) == 1
    bad = run_cli("--endpoint", daemon.endpoint, "--filter", "annotation.order = ", home=tmp_path)
    assert bad.returncode == 2
    assert "400" in bad.stderr
    assert "FilterExpression" in bad.stderr

    one = sorted(ids)[0]
    shown = run_cli("--endpoint", daemon.endpoint, "show", one, home=tmp_path)
    lines = shown.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["Service-A", "Service-B", "Service-B", "DynamoDB"]
    assert "fault" in lines[0]
    assert "500" in lines[0]

    exported = run_cli("--endpoint", daemon.endpoint, "export", "--since", "1h", home=tmp_path)
    documents = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(documents) == 6
    assert {d["trace_id"] for d in documents} == ids

    other = LocalDaemon(tmp_path / "other")
    try:
        uploaded = run_cli("--endpoint", other.endpoint, "upload", "-", home=tmp_path, stdin=exported.stdout)
        assert uploaded.returncode == 0, uploaded.stderr
        assert "uploaded 6 segment documents, 0 refused" in uploaded.stdout
        other.wait_for(ids)
    finally:
        other.stop()

    missing = run_cli("--endpoint", "http://127.0.0.1:9", home=tmp_path)
    assert missing.returncode == 2
    assert "cannot reach the console" in missing.stderr


def test_shutdown_writes_what_was_held_and_a_restart_finds_it(tmp_path: Path) -> None:
    store = tmp_path / "kept.db"
    first = LocalDaemon(tmp_path, "--sink", "local", "--store", str(store))
    trace_id, docs = trace_documents(7, time.time())
    first.send(*docs)
    time.sleep(0.3)  # received, not yet settled
    assert first.stop() == 0
    second = LocalDaemon(tmp_path, "--sink", "local", "--store", str(store))
    try:
        second.wait_for({trace_id}, timeout=5)
    finally:
        second.stop()


def test_bound_beyond_loopback_the_console_asks_for_its_token(tmp_path: Path) -> None:
    running = LocalDaemon(tmp_path, http="0.0.0.0:0")
    try:
        assert "?token=" in running.url
        port = int(running.url.split(":")[2].split("/")[0])
        token = running.url.split("?token=")[1]
        base = f"http://127.0.0.1:{port}"
        body = json.dumps({"StartTime": 0, "EndTime": 1}).encode()
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(urllib.request.Request(base + "/TraceSummaries", data=body), timeout=5)
        assert denied.value.code == 401
        denied.value.close()
        request = urllib.request.Request(
            base + "/TraceSummaries", data=body, headers={"X-K8sxray-Token": token}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert json.loads(answer.read())["TraceSummaries"] == []
        with urllib.request.urlopen(base + "/healthz", timeout=5) as health:
            assert health.status == 200
    finally:
        running.stop()


def test_ingest_loses_nothing_while_the_console_is_queried(daemon: LocalDaemon) -> None:
    """Segments sent at a steady pace while graph and trace-list queries run all end up kept."""
    import threading

    stop = threading.Event()
    answered: list[int] = []

    def query() -> None:
        client = daemon.client()
        while not stop.is_set():
            now = time.time()
            client.get_service_graph(StartTime=now - 600, EndTime=now + 60)
            answered.append(
                len(client.get_trace_summaries(StartTime=now - 600, EndTime=now + 60)["TraceSummaries"])
            )

    poller = threading.Thread(target=query)
    poller.start()
    now = time.time()
    ids = set()
    try:
        for n in range(1500):  # 6,000 documents, about 3,000 a second
            trace_id, docs = trace_documents(n, now - 300 + n * 0.1)
            ids.add(trace_id)
            daemon.send(*docs)
            if n % 50 == 49:
                time.sleep(0.05)
        daemon.wait_for(ids, timeout=30)
    finally:
        stop.set()
        poller.join()
    assert answered  # the queries ran meanwhile
    assert daemon.stop() == 0
    assert "dropped 0" in daemon.log
    assert "received 6000, sent 6000" in daemon.log
