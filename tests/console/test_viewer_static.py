"""The viewer's files, read as text: escape by construction, nothing from outside, no inline code."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "k8sxray" / "console" / "static"
SCRIPTS = sorted(STATIC.glob("*.js"))
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # a name for createElementNS, never fetched


def test_the_viewer_is_a_few_small_files_in_the_package() -> None:
    names = {p.name for p in STATIC.iterdir()}
    assert {"index.html", "app.js", "map.js", "traces.js", "timeline.js", "style.css"} <= names
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", name) for name in names)  # what web.py serves
    assert all(p.stat().st_size < 40_000 for p in STATIC.iterdir())


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_scripts_never_parse_strings_as_markup_or_code(path: Path) -> None:
    source = path.read_text()
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        'setTimeout("',
        "createContextualFragment",
        "DOMParser",
        "srcdoc",
    ):
        assert sink not in source, f"{path.name} uses {sink}"


@pytest.mark.parametrize("path", sorted(STATIC.iterdir()), ids=lambda p: p.name)
def test_nothing_is_fetched_from_outside_the_daemon(path: Path) -> None:
    source = path.read_text().replace(SVG_NAMESPACE, "")
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", source, re.IGNORECASE), path.name
    assert "@import" not in source
    assert "url(" not in source.replace("url(#", "")  # only in-document references


def test_modules_import_only_files_that_are_there() -> None:
    for path in SCRIPTS:
        for target in re.findall(r"""^import .* from "([^"]+)";$""", path.read_text(), re.MULTILINE):
            assert target.startswith("./"), f"{path.name} imports {target}"
            assert (STATIC / target[2:]).is_file(), f"{path.name} imports a missing {target}"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.assets: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in found:
            if name.startswith("on") or name == "style":
                self.problems.append(f"<{tag} {name}=...>")
        if tag == "style":
            self.problems.append("<style>")
        if tag == "script":
            self._in_script = True
            if not found.get("src") or found.get("type") != "module":
                self.problems.append("a script that is not an external module")
        for name in ("src", "href"):
            value = found.get(name)
            if value and tag in ("script", "link") and not value.startswith("data:"):
                self.assets.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script")


def test_the_page_has_no_inline_script_or_style_and_its_assets_exist() -> None:
    page = _Page()
    page.feed((STATIC / "index.html").read_text())
    assert not page.problems
    assert sorted(page.assets) == ["/static/app.js", "/static/style.css"]
    for asset in page.assets:
        assert (STATIC / asset.removeprefix("/static/")).is_file()
