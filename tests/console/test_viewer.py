"""The viewer in a real headless browser (Debian's chromium driven by Playwright) against the real daemon.

The daemon runs as a subprocess with ``--sink local``; segment documents of a small shop (client →
service-a on EKS → service-b → DynamoDB, with faults, errors, throttles and hostile content) go to its
UDP port, and the browser reads the console the daemon serves: the map, the list and its filter, a
trace's own URL with its timeline and Resources. Hostile strings must show as text; every request the
page makes must go to the daemon's own origin.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._daemon import LocalDaemon

CHROMIUM = "/usr/bin/chromium"
STATIC = Path(__file__).resolve().parents[2] / "k8sxray" / "console" / "static"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console.png"
HOSTILE_IMG = "<img src=x onerror=alert(1)>"
HOSTILE_SCRIPT = "<script>alert(2)</script>"
HOSTILE_QUOTE = '"><b>bold</b>'


def _missing() -> str:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (Debian's chromium package)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright; no browser download needed)"
    return ""


MISSING = _missing()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(bool(MISSING), reason=MISSING)]
ELEMENTS_WITH_HANDLERS = (
    "() => [...document.querySelectorAll('*')]"
    ".filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length"
)
HIDE_TAB = """() => {
    Object.defineProperty(document, "hidden", {value: true, configurable: true});
    document.dispatchEvent(new Event("visibilitychange"));
}"""
SHOW_TAB = """() => {
    Object.defineProperty(document, "hidden", {value: false, configurable: true});
    document.dispatchEvent(new Event("visibilitychange"));
}"""
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _ids(n: int, salt: int) -> str:
    return f"{salt:04x}{n:012x}"


def shop_traffic(
    now: float, count: int = 24, hostile: bool = True
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Segment documents of ``count`` requests through the shop, one older trace, and a hostile one.

    Returns the documents (subsegments of service-b's DynamoDB call sent on their own, as a streaming
    SDK does) and named trace ids: ``fault`` (service-b answered 500), ``ok``, ``hostile``.
    """
    docs: list[dict[str, Any]] = []
    named: dict[str, str] = {}
    for i in range(count):
        start = now - 60 + i * 2
        trace_id = f"1-{int(start):08x}-{i:024x}"
        fault = i % 4 == 1
        throttle = i % 8 == 3
        not_found = i % 6 == 5
        a_id, call_b, b_id, call_db = _ids(i, 0xA), _ids(i, 0xAB), _ids(i, 0xB), _ids(i, 0xDB)
        db = 0.012 + (i % 7) * 0.009 + (0.15 if i % 11 == 10 else 0.0)  # the DynamoDB call's time
        b_status = 500 if fault else 429 if throttle else 200
        a_status = 502 if fault else 404 if not_found else 200
        b_call: dict[str, Any] = {
            "id": call_b,
            "name": "service-b",
            "namespace": "remote",
            "start_time": start + 0.002,
            "end_time": start + 0.018 + db,
            "http": {
                "request": {"method": "POST", "url": "http://service-b.shop.svc:8080/price", "traced": True},
                "response": {"status": b_status},
            },
        }
        if fault:
            b_call["fault"] = True
        if throttle:
            b_call.update(error=True, throttle=True)
        seg_a: dict[str, Any] = {
            "name": "service-a",
            "id": a_id,
            "trace_id": trace_id,
            "start_time": start,
            "end_time": start + 0.025 + db,
            "origin": "AWS::EKS::Container",
            "http": {
                "request": {
                    "method": "GET",
                    "url": f"http://service-a.shop.svc/orders/{i}",
                    "client_ip": "10.0.0.7",
                    "user_agent": "curl/8.5",
                },
                "response": {"status": a_status, "content_length": 17},
            },
            "aws": {
                "eks": {
                    "pod": "service-a-6d4f9c7b8-x7k2p",
                    "cluster_name": "shop-cluster",
                    "container_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
                },
                "xray": {"sdk": "k8sxray", "sdk_version": "0.1.0"},
            },
            "metadata": {"k8s": {"namespace": "shop", "node": "ip-10-0-1-23", "deployment": "service-a"}},
            "annotations": {"order": i, "customer": f"c{i % 3}"},
            "subsegments": [b_call],
        }
        if fault:
            seg_a["fault"] = True
        if not_found:
            seg_a["error"] = True
        seg_b: dict[str, Any] = {
            "name": "service-b",
            "id": b_id,
            "trace_id": trace_id,
            "parent_id": call_b,
            "start_time": start + 0.005,
            "end_time": start + 0.015 + db,
            "origin": "AWS::EKS::Container",
            "http": {
                "request": {"method": "POST", "url": "http://service-b.shop.svc:8080/price"},
                "response": {"status": b_status},
            },
            "aws": {"eks": {"pod": "service-b-5c8d7f6e9-q2w3e", "cluster_name": "shop-cluster"}},
        }
        if fault:
            seg_b["fault"] = True
            seg_b["cause"] = {
                "working_directory": "/srv/service-b",
                "exceptions": [
                    {
                        "id": _ids(i, 0xEE),
                        "type": "PriceUnavailable",
                        "message": "no price for item 42",
                        "stack": [
                            {"path": "/srv/service-b/prices.py", "line": 88, "label": "lookup_price"},
                            {"path": "/srv/service-b/app.py", "line": 31, "label": "price"},
                        ],
                    }
                ],
            }
        if throttle:
            seg_b.update(error=True, throttle=True)
        db_call = {
            "type": "subsegment",
            "trace_id": trace_id,
            "parent_id": b_id,
            "id": call_db,
            "name": "DynamoDB",
            "namespace": "aws",
            "start_time": start + 0.008,
            "end_time": start + 0.008 + db,
            "http": {"response": {"status": 200}},
            "aws": {
                "operation": "GetItem",
                "region": "us-east-1",
                "table_name": "prices",
                "request_id": "R1",
            },
        }
        docs += [seg_a, seg_b, db_call]
        if fault and "fault" not in named:
            named["fault"] = trace_id
        if not (fault or throttle or not_found) and "ok" not in named:
            named["ok"] = trace_id
    old_id = f"1-{int(now - 1800):08x}-{'d' * 24}"
    named["old"] = old_id
    docs.append(
        {
            "name": "service-a",
            "id": "d" * 16,
            "trace_id": old_id,
            "start_time": now - 1800,
            "end_time": now - 1799.9,
            "origin": "AWS::EKS::Container",
            "http": {
                "request": {"method": "GET", "url": "http://service-a.shop.svc/old"},
                "response": {"status": 200},
            },
        }
    )
    pending_id = f"1-{int(now - 8):08x}-{'c' * 24}"
    named["pending"] = pending_id
    docs.append(
        {
            "name": "service-a",
            "id": "c" * 16,
            "trace_id": pending_id,
            "start_time": now - 8,
            "in_progress": True,
            "origin": "AWS::EKS::Container",
            "http": {"request": {"method": "POST", "url": "http://service-a.shop.svc/slow"}},
            "subsegments": [
                {"id": "b" * 16, "name": "prepare", "start_time": now - 7.9, "end_time": now - 7.5}
            ],
        }
    )
    if not hostile:
        return docs, named
    hostile_id = f"1-{int(now - 5):08x}-{'f' * 24}"
    named["hostile"] = hostile_id
    docs.append(
        {
            "name": HOSTILE_IMG,
            "id": "f" * 16,
            "trace_id": hostile_id,
            "start_time": now - 5,
            "end_time": now - 4.9,
            "http": {
                "request": {
                    "method": "GET",
                    "url": f"http://evil.example/{HOSTILE_SCRIPT}?q={HOSTILE_QUOTE}",
                },
                "response": {"status": 200},
            },
            "annotations": {"note": HOSTILE_IMG, "quote": HOSTILE_QUOTE},
            "metadata": {"debug": {"html": HOSTILE_SCRIPT}},
            "subsegments": [
                {
                    "id": "e" * 16,
                    "name": HOSTILE_QUOTE,
                    "namespace": "remote",
                    "start_time": now - 4.99,
                    "end_time": now - 4.95,
                    "http": {"request": {"method": "GET", "url": f"http://x/{HOSTILE_IMG}"}},
                }
            ],
        }
    )
    return docs, named


# ---- the daemon, fed over UDP -------------------------------------------------------------------


def post(base: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One call to the console's API (status, decoded answer)."""
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def summaries(base: str, expression: str = "", seconds: float = 3600) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"StartTime": time.time() - seconds, "EndTime": time.time() + 60}
    if expression:
        body["FilterExpression"] = expression
    status, answer = post(base, "/TraceSummaries", body)
    assert status == 200, answer
    return list(answer["TraceSummaries"])


def wait_for_traces(base: str, ids: set[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        seen = {s["Id"] for s in summaries(base, seconds=7200)}
        if ids <= seen:
            return
        assert time.monotonic() < deadline, f"traces not in the console: {sorted(ids - seen)}"
        time.sleep(0.1)


class Console:
    """The daemon with its local store and console on free loopback ports."""

    def __init__(self, store: Path, *extra: str) -> None:
        self.daemon = LocalDaemon(store.parent, "--sink", "local", "--store", str(store), *extra)
        self.http_port = self.daemon.http_port
        self.base = self.daemon.endpoint

    def send(self, docs: list[dict[str, Any]]) -> None:
        for n, doc in enumerate(docs, 1):
            self.daemon.send(doc)
            if n % 200 == 0:
                time.sleep(0.002)  # stay far below the kernel's receive buffer

    def stop(self) -> None:
        self.daemon.stop()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Console, dict[str, str], int]]:
    console = Console(tmp_path_factory.mktemp("viewer") / "traces.db")
    try:
        docs, named = shop_traffic(time.time())
        console.send(docs)
        trace_ids = {d["trace_id"] for d in docs}
        wait_for_traces(console.base, trace_ids)
        yield console, named, len(trace_ids)
    finally:
        console.stop()


# ---- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            args=BROWSER_ARGS,
            viewport={"width": 1280, "height": 800},
            service_workers="block",
        )
        try:
            yield context
        finally:
            context.close()


class Watched:
    """A page whose requests, dialogs and script errors are recorded."""

    def __init__(self, context: Any, base: str) -> None:
        self.page = context.new_page()
        self.base = base
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: str) -> Any:
        self.page.goto(self.base + path)
        return self.page

    def check(self) -> None:
        """Nothing left the daemon's origin, no dialog opened, no script failed."""
        assert self.requests, "the page made no request at all"
        outside = [u for u in self.requests if not (u.startswith(self.base + "/") or u.startswith("data:"))]
        assert not outside, f"requests outside the daemon: {outside}"
        assert not self.dialogs, f"dialogs fired: {self.dialogs}"
        assert not self.errors, f"script errors: {self.errors}"


@pytest.fixture
def watched(browser: Any, shop: tuple[Console, dict[str, str], int]) -> Iterator[Watched]:
    w = Watched(browser, shop[0].base)
    yield w
    w.page.close()


def node(page: Any, name: str) -> Any:
    return page.locator("svg.map g.node").filter(
        has=page.locator("text.node-name", has_text=re.compile(f"^{re.escape(name)}$"))
    )


# ---- the tests ----------------------------------------------------------------------------------


def test_the_map_draws_services_and_edges_coloured_by_outcome(watched: Watched) -> None:
    from playwright.sync_api import expect

    page = watched.open("/")
    for name in ("service-a", "service-b", "prices"):
        expect(node(page, name)).to_have_count(1)
    expect(page.locator("svg.map text.node-type", has_text="AWS::DynamoDB::Table")).to_have_count(1)
    service_b = node(page, "service-b")
    # service-b answered 500 and 429 to some calls: its ring has red and purple shares beside green
    for state in ("ok", "fault", "throttle"):
        expect(service_b.locator(f"circle.ring.{state}")).to_have_count(1)
    expect(service_b).to_have_attribute("aria-label", re.compile(r"ms average, [0-9.]+ calls per minute"))
    expect(node(page, "prices").locator("circle.ring.fault")).to_have_count(0)
    labels = [
        page.locator("svg.map g.edge").nth(i).get_attribute("aria-label")
        for i in range(page.locator("svg.map g.edge").count())
    ]
    assert any("service-a → service-b" in (label or "") for label in labels), labels
    assert any("service-b → prices" in (label or "") for label in labels), labels
    expect(page.locator("svg.map text.edge-label").first).to_have_text(re.compile(r"ms · [0-9.]+/min"))
    watched.check()


def test_a_click_on_a_node_or_an_edge_lists_its_traces_with_a_histogram(
    watched: Watched, shop: tuple[Console, dict[str, str], int]
) -> None:
    from playwright.sync_api import expect

    _, named, total = shop
    page = watched.open("/")
    rows = page.locator("#trace-rows tr")
    expect(rows).to_have_count(total - 1)  # the old trace is outside the last 15 minutes
    node(page, "service-b").click()
    expect(page.locator("#filter")).to_have_value('service("service-b")')
    assert "filter=service" in page.url
    expect(rows).to_have_count(len(summaries(watched.base, 'service("service-b")', 900)))
    expect(page.locator(f'#trace-rows a[href="/traces/{named["hostile"]}"]')).to_have_count(0)
    expect(page.locator("#selection h2")).to_have_text("service-b")
    assert page.locator("#selection svg.histogram rect.bar").count() >= 1

    edge = page.locator("svg.map g.edge").filter(has=page.locator("title", has_text="service-a → service-b"))
    edge.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#filter")).to_have_value('edge("service-a", "service-b")')
    expect(page.locator("#selection h2")).to_have_text("service-a → service-b")
    assert page.locator("#selection svg.histogram rect.bar").count() >= 1

    page.reload()  # the selection lives in the URL
    expect(page.locator("#selection h2")).to_have_text("service-a → service-b")
    watched.check()


def test_a_filter_narrows_the_list_and_a_bad_one_shows_the_apis_message(
    watched: Watched, shop: tuple[Console, dict[str, str], int]
) -> None:
    from playwright.sync_api import expect

    _, named, total = shop
    page = watched.open("/")
    rows = page.locator("#trace-rows tr")
    expect(rows).to_have_count(total - 1)
    page.fill("#filter", "fault")
    page.get_by_role("button", name="Apply").click()
    faults = summaries(watched.base, "fault", 900)
    assert 0 < len(faults) < total - 1
    expect(rows).to_have_count(len(faults))
    expect(page.locator("#trace-rows tr.fault")).to_have_count(len(faults))
    expect(page.locator(f'#trace-rows a[href="/traces/{named["fault"]}"]')).to_have_count(1)

    bad = 'service("service-a") AND'
    status, answer = post(
        watched.base, "/TraceSummaries", {"StartTime": 0, "EndTime": 1, "FilterExpression": bad}
    )
    assert status == 400
    page.fill("#filter", bad)
    page.keyboard.press("Enter")
    expect(page.locator("#filter-error")).to_be_visible()
    expect(page.locator("#filter-error")).to_have_text(answer["message"])
    expect(rows).to_have_count(0)

    page.get_by_role("button", name="Clear").click()
    expect(rows).to_have_count(total - 1)
    expect(page.locator("#filter-error")).to_be_hidden()
    watched.check()


def test_the_time_range_selects_which_traces_are_listed(
    watched: Watched, shop: tuple[Console, dict[str, str], int]
) -> None:
    from playwright.sync_api import expect

    _, named, total = shop
    page = watched.open("/")
    old = page.locator(f'#trace-rows a[href="/traces/{named["old"]}"]')
    expect(page.locator("#trace-rows tr")).to_have_count(total - 1)
    expect(old).to_have_count(0)
    page.select_option("#range", "1h")
    expect(old).to_have_count(1)
    assert "range=1h" in page.url
    page.select_option("#range", "5m")
    expect(old).to_have_count(0)


def test_a_trace_opens_at_its_url_with_its_timeline_details_and_resources(
    watched: Watched, shop: tuple[Console, dict[str, str], int], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    _, named, _ = shop
    page = watched.open(f"/traces/{named['fault']}")
    expect(page.locator("#trace-id")).to_have_text(named["fault"])
    entities = page.locator("ol.waterfall button.entity-row")
    expect(entities).to_have_count(4)
    names = [entities.nth(i).locator(".name").inner_text().strip(" ◆") for i in range(4)]
    assert names == ["service-a", "service-b", "service-b", "DynamoDB"]
    assert [entities.nth(i).get_attribute("class").split()[1] for i in range(4)] == [
        "fault",
        "fault",
        "fault",
        "ok",
    ]

    details = page.locator("#details")
    expect(details.locator("h2")).to_have_text("service-a")  # the root segment is shown first
    resources = details.locator("section", has=page.locator("h3", has_text="Resources"))
    for text in ("AWS::EKS::Container", "service-a-6d4f9c7b8-x7k2p", "shop-cluster", "0f1e2d3c4b5a6978"):
        expect(resources).to_contain_text(text)
    expect(resources.locator("h4", has_text="k8s")).to_have_count(1)
    expect(resources).to_contain_text("namespace")
    expect(details.locator("section", has=page.locator("h3", has_text="HTTP"))).to_contain_text("/orders/1")
    expect(details.locator("section", has=page.locator("h3", has_text="Annotations"))).to_contain_text(
        "customer"
    )

    entities.nth(2).click()  # service-b's own segment: the exception and its stack
    expect(details.locator("h2")).to_have_text("service-b")
    assert "entity=" in page.url
    exception = details.locator(".exception")
    expect(exception).to_contain_text("PriceUnavailable: no price for item 42")
    expect(exception.locator("ol.stack li").first).to_have_text("/srv/service-b/prices.py:88 lookup_price")

    entities.nth(3).click()  # the DynamoDB call: its AWS fields
    aws = details.locator("section", has=page.locator("h3", has_text="AWS"))
    expect(aws).to_contain_text("GetItem")
    expect(aws).to_contain_text("prices")
    page.screenshot(path=str(tmp_path / "trace.png"))

    page.reload()  # the chosen entity is in the URL
    expect(details.locator("h2")).to_have_text("DynamoDB")
    page.get_by_role("link", name="Service map and traces").click()
    expect(node(page, "service-a")).to_have_count(1)
    watched.check()


def test_a_segment_in_progress_is_marked(watched: Watched, shop: tuple[Console, dict[str, str], int]) -> None:
    from playwright.sync_api import expect

    _, named, _ = shop
    page = watched.open(f"/traces/{named['pending']}")
    entities = page.locator("ol.waterfall button.entity-row")
    expect(entities).to_have_count(2)
    expect(entities.first.locator(".bar.in-progress")).to_have_count(1)
    expect(entities.first.locator(".duration")).to_contain_text("in progress")
    expect(entities.nth(1).locator(".bar.in-progress")).to_have_count(0)
    overview = page.locator("#details section", has=page.locator("h3", has_text="Overview"))
    expect(overview).to_contain_text("In progress")
    watched.check()


def test_hostile_segment_content_shows_as_text_and_stays_inert(
    watched: Watched, shop: tuple[Console, dict[str, str], int]
) -> None:
    from playwright.sync_api import expect

    _, named, _ = shop
    page = watched.open("/")
    expect(page.locator("svg.map text.node-name", has_text="<img src=x")).to_have_count(1)
    row = page.locator("#trace-rows tr", has=page.locator(f'a[href="/traces/{named["hostile"]}"]'))
    expect(row).to_contain_text(HOSTILE_SCRIPT)
    row.locator("a").click()

    expect(page.locator("#details h2")).to_have_text(HOSTILE_IMG)
    details = page.locator("#details")
    for text in (HOSTILE_IMG, HOSTILE_QUOTE, HOSTILE_SCRIPT):
        expect(details).to_contain_text(text)
    expect(page.locator("ol.waterfall .name", has_text=HOSTILE_QUOTE)).to_have_count(1)
    page.locator("details.raw summary").click()
    expect(page.locator("details.raw pre")).to_contain_text("onerror=alert(1)")
    time.sleep(0.5)  # a handler, had one been injected, would have run by now
    assert page.locator("img").count() == 0
    assert page.locator("b").count() == 0
    assert page.locator("script").count() == 1  # the viewer's own module
    assert page.evaluate(ELEMENTS_WITH_HANDLERS) == 0
    watched.check()


def test_the_list_and_map_follow_new_traffic_until_paused(
    watched: Watched, shop: tuple[Console, dict[str, str], int]
) -> None:
    from playwright.sync_api import expect

    console, _, _ = shop
    page = watched.open("/")
    expect(page.locator("#status")).to_contain_text("Live")

    def one(n: int) -> str:
        trace_id = f"1-{int(time.time()):08x}-{n:024x}"
        start = time.time() - 0.5
        console.send(
            [
                {
                    "name": "service-c",
                    "id": f"{n:016x}",
                    "trace_id": trace_id,
                    "start_time": start,
                    "end_time": start + 0.01,
                }
            ]
        )
        return trace_id

    fresh = one(0xC0FFEE)
    expect(page.locator(f'#trace-rows a[href="/traces/{fresh}"]')).to_have_count(1, timeout=20_000)
    expect(node(page, "service-c")).to_have_count(1)

    page.get_by_role("button", name="Pause updates").click()
    expect(page.locator("#status")).to_have_text("Updates paused")
    later = one(0xC0FFEF)
    wait_for_traces(console.base, {later})
    time.sleep(2.5)  # longer than one polling period
    expect(page.locator(f'#trace-rows a[href="/traces/{later}"]')).to_have_count(0)
    page.get_by_role("button", name="Resume updates").click()
    expect(page.locator(f'#trace-rows a[href="/traces/{later}"]')).to_have_count(1)

    page.evaluate(HIDE_TAB)
    expect(page.locator("#status")).to_have_text("Updates paused while the tab is hidden")
    time.sleep(0.5)  # a call already on its way may still land
    before = len(watched.requests)
    time.sleep(2.5)
    assert len(watched.requests) == before, watched.requests[before:]
    page.evaluate(SHOW_TAB)
    expect(page.locator("#status")).to_contain_text("Live")
    watched.check()


def test_an_unreachable_console_is_said_so(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    console = Console(tmp_path / "traces.db")
    try:
        watched = Watched(browser, console.base)
        page = watched.open("/")
        expect(page.locator("#status")).to_contain_text("Live")
        expect(page.locator("#banner")).to_be_hidden()
    finally:
        console.stop()
    expect(page.locator("#banner")).to_contain_text("unreachable")
    expect(page.locator("#status")).to_have_text("Offline")
    page.close()


def test_a_console_with_a_token_is_opened_once_with_it_then_says_when_it_is_missing(
    browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    console = Console(tmp_path / "traces.db", "--console-token", "s3cret-token")
    try:
        status, answer = post(console.base, "/ServiceGraph", {"StartTime": 0, "EndTime": 1})
        assert status == 401, answer
        watched = Watched(browser, console.base)
        page = watched.open("/?token=s3cret-token")
        expect(page.locator("#status")).to_contain_text("Live")
        assert "token" not in page.url  # kept out of history, bookmarks and screenshots
        browser.clear_cookies()
        expect(page.locator("#banner")).to_contain_text("needs its token")
        expect(page.locator("#status")).to_have_text("Not signed in")
        watched.check()
        page.close()
    finally:
        browser.clear_cookies()
        console.stop()


def test_screenshot_of_the_console(browser: Any, tmp_path: Path) -> None:
    """The picture in docs/console.md (written when missing; K8SXRAY_UPDATE_SCREENSHOT=1 rewrites it)."""
    from playwright.sync_api import expect

    console = Console(tmp_path / "traces.db")
    try:
        docs, _ = shop_traffic(time.time(), hostile=False)
        console.send(docs)
        wait_for_traces(console.base, {d["trace_id"] for d in docs})
        watched = Watched(browser, console.base)
        page = watched.open("/")
        node(page, "service-b").click()
        expect(page.locator("#trace-rows tr")).to_have_count(24)
        expect(page.locator("#selection svg.histogram")).to_be_visible()
        page.mouse.move(0, 0)
        shot = tmp_path / "console.png"
        page.screenshot(path=str(shot))
        watched.check()
        page.close()
    finally:
        console.stop()
    assert shot.stat().st_size < 200_000
    if os.environ.get("K8SXRAY_UPDATE_SCREENSHOT") == "1" or not DOCS_SCREENSHOT.exists():
        shutil.copyfile(shot, DOCS_SCREENSHOT)
    assert DOCS_SCREENSHOT.stat().st_size < 200_000
