"""A forked child (a gunicorn worker) still decides, and its poller restarts with its own ClientID."""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from k8sxray.sampling.central import CentralSampler
from k8sxray.sampling.sampler import RateSampler

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _pollers() -> int:
    return sum(t.name == "k8sxray-sampling" and t.is_alive() for t in threading.enumerate())


def _child(sampler: CentralSampler, idle: CentralSampler, write_fd: int) -> None:
    """Runs in the child; reports what it saw as JSON on the pipe."""
    report: dict[str, Any] = {"pollers_after_fork": _pollers(), "client_id": sampler.client_id}
    decisions = [sampler.decide("h", "GET", "/") for _ in range(5)]
    idle.decide("h", "GET", "/")
    deadline = time.monotonic() + 5
    while _pollers() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    report.update(decisions=decisions, pollers=_pollers(), rules=[r.name for r in sampler.rules])
    # keep deciding so there is something to report, until the parent has seen our report
    for _ in range(100):
        sampler.decide("h", "GET", "/")
        time.sleep(0.01)
    os.write(write_fd, json.dumps(report).encode())


def test_forked_child_restarts_the_poller(xray: Any, make_rule: Callable[..., dict[str, Any]]) -> None:
    xray.pages = {None: {"SamplingRuleRecords": [make_rule("Default", 10000, FixedRate=1.0)]}}
    options: dict[str, Any] = {
        "address": lambda: xray.address,
        "service_name": "shop",
        "rules_interval": 60.0,
        "targets_interval": 0.05,
    }
    before = _pollers()  # a poller of an earlier test may still be finishing
    sampler = CentralSampler(RateSampler(0, 0.0), **options)
    idle = CentralSampler(RateSampler(0, 0.0), **options)  # never used in the parent
    try:
        sampler.decide("h", "GET", "/")
        xray.wait_for(lambda: sampler.rules != ())
        parent_id = sampler.client_id
        read_fd, write_fd = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(read_fd)
                _child(sampler, idle, write_fd)
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        report = json.loads(b"".join(chunks))

        assert report["pollers_after_fork"] == 0  # threads do not survive fork
        assert report["client_id"] != parent_id  # a new client, reported separately
        assert report["decisions"] == [True] * 5  # the inherited rules decide at once (FixedRate 1)
        assert report["pollers"] == 2  # both samplers started their own poller in the child
        assert report["rules"] == ["Default"]
        child_reports = [
            doc
            for body in xray.calls("/SamplingTargets")
            for doc in body["SamplingStatisticsDocuments"]
            if doc["ClientID"] == report["client_id"]
        ]
        assert child_reports, "the child's poller never reported"
        assert sum(doc["RequestCount"] for doc in child_reports) >= 5
        assert sampler.client_id == parent_id
        assert _pollers() == before + 1  # the parent's poller is untouched
    finally:
        sampler.close()
        idle.close()
