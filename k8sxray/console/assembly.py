"""Assembling a trace from the documents received for it, as X-Ray does.

A trace arrives as documents in any order: segments, and subsegments sent on their own
(``"type": "subsegment"`` with ``trace_id`` and ``parent_id``). ``assemble()`` gives the trace as
X-Ray's BatchGetTraces shows it: one document per segment, each separately sent subsegment nested
inside its parent (a segment or another subsegment, wherever it sits), and an ``in_progress``
document replaced by the completed document with the same id. Pure functions, no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

Document = dict[str, Any]

__all__ = ["Document", "assemble", "latest"]


def _complete(doc: Document) -> bool:
    return not doc.get("in_progress") and "end_time" in doc


def latest(docs: Iterable[Document]) -> list[Document]:
    """One document per id, in arrival order of first sight: a completed document beats an
    ``in_progress`` one whatever the order they came in; otherwise the later one wins."""
    chosen: dict[str, Document] = {}
    for doc in docs:
        key = str(doc.get("id", ""))
        held = chosen.get(key)
        if held is None or _complete(doc) or not _complete(held):
            chosen[key] = doc
    return list(chosen.values())


def assemble(
    docs: Iterable[Document], *, owned: bool = False, unique: bool = False
) -> tuple[list[Document], bool]:
    """The trace's segment documents with separately sent subsegments nested in their parents.

    Returns ``(segments, complete)``. The input documents are not changed, unless ``owned`` says
    the caller hands them over (just parsed, say), which saves copying them; ``unique`` says they
    are already one per id (as :func:`latest` gives them). A subsegment whose parent is not (yet)
    among the documents is returned as a document of its own, and ``complete`` is then false; so
    is it when any document is still in progress.
    """
    tops: list[Document] = []
    loose: list[Document] = []
    for given in docs if unique else latest(docs):
        doc = given if owned else copy.deepcopy(given)
        (loose if doc.get("type") == "subsegment" else tops).append(doc)
    complete = True
    if loose:
        index: dict[str, Document] = {}
        for top in tops:
            _index(top, index)
        pending = loose
        # A loose subsegment may hang under another loose one: attach in rounds until nothing moves.
        while pending:
            left = []
            for sub in pending:
                parent = index.get(str(sub.get("parent_id", "")))
                if parent is None or parent is sub:
                    left.append(sub)
                    continue
                _index(_attach(parent, sub), index)
            if len(left) == len(pending):
                break
            pending = left
        for sub in pending:
            complete = False
            tops.append(sub)
    for doc in tops:
        if doc.get("in_progress") or "end_time" not in doc:  # not _complete(doc)
            complete = False
            break
    return tops, complete


def _index(doc: Document, index: dict[str, Document]) -> None:
    index[str(doc.get("id", ""))] = doc
    for sub in doc.get("subsegments") or ():
        if isinstance(sub, dict):
            _index(sub, index)


def _attach(parent: Document, sub: Document) -> Document:
    """Nest ``sub`` under ``parent`` (without its sending-alone fields); returns what sits there."""
    for key in ("type", "trace_id", "parent_id"):
        sub.pop(key, None)
    children = parent.get("subsegments")
    if not isinstance(children, list):
        children = parent["subsegments"] = []
    for i, child in enumerate(children):
        if isinstance(child, dict) and child.get("id") == sub.get("id"):
            if _complete(sub) or not _complete(child):
                children[i] = sub
                return sub
            return child
    children.append(sub)
    return sub
