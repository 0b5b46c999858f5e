"""Make a document too large for one UDP datagram fit: split out its subsegments, then trim.

Only documents larger than the limit (``_protocol.MAX_DOCUMENT``) come here; the usual
document never does. Such a document is parsed and taken apart:

1. Its subsegments go out on their own, in X-Ray's streaming form (``"type": "subsegment"``,
   the ``trace_id``, and their parent's id as ``parent_id``). A child that fits keeps its own
   children nested; one that does not is taken apart the same way.
2. An entity still too large on its own is trimmed until it fits, in this order:

   a. metadata values, largest first: a string keeps its beginning and ends with
      ``...[trimmed by k8sxray: N chars]``; any other value becomes the string
      ``[trimmed by k8sxray: N bytes of JSON]``;
   b. exception stacks (the outermost frames go; the exception's ``truncated`` counts them),
      then long strings anywhere else (annotations, URLs, messages, ``aws`` values),
      largest first, each cut as in a;
   c. as a last resort, whole optional fields (``annotations``, ``aws``, ``cause``,
      ``http``...), largest first.

   The entity's name, ids, times, ``type``, ``namespace``, ``origin`` and flags are never
   trimmed (a name or namespace over X-Ray's 200 characters may be cut to that). What was
   trimmed is listed in the entity's metadata under ``k8sxray``: ``trimmed`` (the first ten
   places, as paths such as ``metadata.default.blob``) and ``trimmed_count``.

So every entity arrives, and every subsegment's parent with it. A document that is not a JSON
object, or an entity whose identity alone exceeds the limit, is dropped and logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from . import _guard

log = logging.getLogger(__name__)

_KEEP = frozenset({
    "name", "id", "trace_id", "parent_id", "start_time", "end_time", "in_progress", "type",
    "namespace", "origin", "fault", "error", "throttle",
})  # fmt: skip
"""An entity's identity, links and flags: never trimmed."""
_NAMESPACE = "k8sxray"
_LISTED = 10
"""Trimmed places listed by path (``trimmed_count`` counts them all)."""
_RESERVE = 2500
"""Room kept for the ``k8sxray`` metadata saying what was trimmed (ten paths of at most ~200 bytes)."""
_SHORT = 64
"""Strings shorter than this (as JSON) are never cut: cutting them would not be worth the marker."""
_MAX_NAME = 200
_MAX_DEPTH = 32


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def fit(document: str | bytes, limit: int) -> tuple[list[str], int]:
    """Documents of at most *limit* characters (ASCII: as many bytes) for *document*, and how many
    entities had to be dropped. Never raises."""
    try:
        if isinstance(document, str) and len(document) <= limit and document.isascii():
            return [document], 0
        entity = json.loads(document)
        if not isinstance(entity, dict):
            raise ValueError("not a JSON object")  # handled below, with the others
    except (ValueError, RecursionError) as exc:
        _guard.warn_once(
            "fit.unreadable",
            "k8sxray: a document larger than one datagram (%d bytes) is not a JSON object (%s); "
            "dropped (logged once)",
            len(document),
            exc,
        )
        return [], 1
    out: list[str] = []
    try:
        dropped = _place(entity, entity.get("trace_id"), limit, out)
    except Exception:
        _guard.internal_error("fit")
        return out, 1
    return out, dropped


def _place(entity: dict[str, Any], trace_id: Any, limit: int, out: list[str]) -> int:
    """Append *entity*'s documents to *out*: its children first when it is too large with them."""
    doc = _dumps(entity)
    dropped = 0
    if len(doc) > limit and isinstance(trace_id, str) and isinstance(entity.get("subsegments"), list):
        parent_id = entity.get("id")
        for child in entity.pop("subsegments"):
            if isinstance(child, dict):
                child.update(type="subsegment", trace_id=trace_id, parent_id=parent_id)
                dropped += _place(child, trace_id, limit, out)
        doc = _dumps(entity)
    if len(doc) > limit:
        original = len(doc)
        trimmed: list[str] = []
        made = _trim(entity, limit, trimmed)
        if made is None:
            _guard.warn_once(
                "fit.dropped",
                "k8sxray: %s %s (%r) of trace %s does not fit in one datagram even trimmed (%d bytes); "
                "dropped (logged once)",
                *_who(entity),
                original,
            )
            return dropped + 1
        _guard.warn_once(
            "fit.trimmed",
            "k8sxray: %s %s (%r) of trace %s was larger than one datagram (%d bytes); trimmed %s "
            "(listed in its metadata, k8sxray.trimmed; logged once)",
            *_who(entity),
            original,
            ", ".join(trimmed[:_LISTED])
            + (f" and {len(trimmed) - _LISTED} more" if len(trimmed) > _LISTED else ""),
        )
        doc = made
    out.append(doc)
    return dropped


def _who(entity: dict[str, Any]) -> tuple[str, Any, str, Any]:
    kind = "subsegment" if entity.get("type") == "subsegment" else "segment"
    name = entity.get("name")
    return kind, entity.get("id"), str(name)[:_MAX_NAME], entity.get("trace_id")


def _trim(entity: dict[str, Any], limit: int, trimmed: list[str]) -> str | None:
    """*entity*'s document trimmed to at most *limit* characters (*trimmed* says where), or ``None``."""
    budget = limit - _RESERVE
    size = len(_dumps(entity))
    for places in (_metadata_places, _stack_places, _string_places, _field_places):
        if size <= budget:
            break
        for path, cut in places(entity):
            size -= cut(size - budget)
            trimmed.append(path)
            if size <= budget:
                break
    _record(entity, trimmed)
    doc = _dumps(entity)
    if len(doc) <= limit:
        return doc
    # the estimate missed (a tiny limit): keep only the identity, cut to X-Ray's lengths
    for key in [k for k in entity if k not in _KEEP]:
        del entity[key]
        trimmed.append(key)
    for key in ("name", "namespace"):
        if isinstance(entity.get(key), str) and len(entity[key]) > _MAX_NAME:
            entity[key] = entity[key][:_MAX_NAME]
            trimmed.append(key)
    _record(entity, trimmed)
    doc = _dumps(entity)
    if len(doc) <= limit:
        return doc
    entity.pop("metadata", None)
    doc = _dumps(entity)
    return doc if len(doc) <= limit else None


def _record(entity: dict[str, Any], trimmed: list[str]) -> None:
    """List what was trimmed in *entity*'s metadata, ``k8sxray.trimmed``."""
    metadata = entity.get("metadata")
    if not isinstance(metadata, dict):
        metadata = entity["metadata"] = {}
    own = metadata.get(_NAMESPACE)
    if not isinstance(own, dict):
        own = metadata[_NAMESPACE] = {}
    own["trimmed"] = [_printable(path) for path in trimmed[:_LISTED]]
    own["trimmed_count"] = len(trimmed)


def _printable(path: str) -> str:
    return path.encode("ascii", "backslashreplace").decode("ascii")[:100]


# --- what can be trimmed, largest first; each ``cut(needed)`` returns the characters it saved ----
Cut = Callable[[int], int]


def _metadata_places(entity: dict[str, Any]) -> Iterator[tuple[str, Cut]]:
    metadata = entity.get("metadata")
    if not isinstance(metadata, dict):
        return
    places = [
        (len(_dumps(value)), f"metadata.{ns}.{key}", values, key)
        for ns, values in metadata.items()
        if isinstance(values, dict)
        for key, value in values.items()
    ]
    places.sort(key=lambda place: place[0], reverse=True)
    for size, path, container, key in places:
        if size > _SHORT:
            yield path, _cutter(container, key)


def _stack_places(entity: dict[str, Any]) -> Iterator[tuple[str, Cut]]:
    cause = entity.get("cause")
    exceptions = cause.get("exceptions") if isinstance(cause, dict) else None
    if not isinstance(exceptions, list):
        return
    places = [
        (len(_dumps(exc["stack"])), f"cause.exceptions[{i}].stack", exc)
        for i, exc in enumerate(exceptions)
        if isinstance(exc, dict) and isinstance(exc.get("stack"), list) and exc["stack"]
    ]
    places.sort(key=lambda place: place[0], reverse=True)
    for _, path, exc in places:
        yield path, _stack_cutter(exc)


def _string_places(entity: dict[str, Any]) -> Iterator[tuple[str, Cut]]:
    places: list[tuple[int, str, Any, Any]] = []
    for key, value in entity.items():
        if key not in _KEEP and key not in {"metadata", "subsegments"}:
            _strings(value, key, places, _MAX_DEPTH)
    places.sort(key=lambda place: place[0], reverse=True)
    for _, path, container, key in places:
        yield path, _cutter(container, key)


def _strings(value: Any, path: str, places: list[tuple[int, str, Any, Any]], depth: int) -> None:
    """Collect the long strings inside *value* (at *path*) as ``(size, path, container, key)``."""
    if depth <= 0:
        return
    items: Any = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, item in items:
        where = f"{path}[{key}]" if isinstance(value, list) else f"{path}.{key}"
        if isinstance(item, str):
            size = len(_dumps(item))
            if size > _SHORT:
                places.append((size, where, value, key))
        else:
            _strings(item, where, places, depth - 1)


def _field_places(entity: dict[str, Any]) -> Iterator[tuple[str, Cut]]:
    places = [(len(_dumps(value)), key) for key, value in entity.items() if key not in _KEEP]
    places.sort(reverse=True)
    for size, key in places:

        def drop(needed: int, key: str = key, size: int = size) -> int:
            del entity[key]
            return size + len(_dumps(key)) + 2  # the key, its colon and a comma

        yield key, drop


def _cutter(container: Any, key: Any) -> Cut:
    """Cut the value at ``container[key]`` by at least *needed* characters (when it can)."""

    def cut(needed: int) -> int:
        value = container[key]
        before = len(_dumps(value))
        made = _shortened(value, before - needed) if isinstance(value, str) else _marker(before)
        after = len(_dumps(made))
        if after >= before:  # nothing to gain (a short value)
            return 0
        container[key] = made
        return before - after

    return cut


def _marker(size: int) -> str:
    return f"[trimmed by k8sxray: {size} bytes of JSON]"


def _shortened(text: str, room: int) -> str:
    """*text*'s beginning, marked, in at most *room* characters of JSON (or just the marker)."""
    for wanted in (room - 48, (room - 48) // 12):  # 48: the marker and quotes; 12: the widest escape
        keep = min(wanted, len(text) - 1)
        if keep <= 0:
            break
        made = text[:keep] + f"...[trimmed by k8sxray: {len(text) - keep} chars]"
        if len(_dumps(made)) <= room:
            return made
    return f"[trimmed by k8sxray: {len(text)} chars]"


def _stack_cutter(exc: dict[str, Any]) -> Cut:
    def cut(needed: int) -> int:
        before = len(_dumps(exc))
        stack: list[Any] = exc["stack"]
        saved = 0
        dropped = 0
        while stack and saved < needed:
            saved += len(_dumps(stack.pop())) + 1
            dropped += 1
        previous = exc.get("truncated")
        exc["truncated"] = (previous if isinstance(previous, int) else 0) + dropped
        return before - len(_dumps(exc))

    return cut
