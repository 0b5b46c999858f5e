"""The console put together: a store whose facts come from the trace model, and its web face.

``open_store()`` opens (or creates) the SQLite file; ``Web(Console(store), token)`` answers HTTP.
The daemon uses these two and nothing else of the console.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ._worker import WorkerPacker
from .api import Console
from .assembly import Document
from .packing import pack
from .store import Store
from .trace import trace_facts
from .web import Web

log = logging.getLogger(__name__)

__all__ = ["Console", "Store", "Web", "default_store_path", "derive", "open_store"]

DEFAULT_RETENTION = 24 * 3600.0
DEFAULT_MAX_BYTES = 512 * 1024 * 1024


def default_store_path(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/k8sxray/traces.db``, else ``~/.local/share/k8sxray/traces.db``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "k8sxray" / "traces.db"


def derive(trace_id: str, segments: list[Document], complete: bool) -> dict[str, Any]:
    """The facts the store keeps for a trace (see ``console.trace``)."""
    try:
        facts: dict[str, Any] = dict(trace_facts(segments))
    except ValueError:
        # No document with an id and a start time: kept, findable by id, in no graph.
        facts = {"id": trace_id, "nodes": [], "edges": []}
        log.debug("console: trace %s has no usable segment yet", trace_id)
    facts["id"] = trace_id
    return facts


def open_store(
    path: str | Path | None = None,
    *,
    retention: float = DEFAULT_RETENTION,
    max_bytes: int = DEFAULT_MAX_BYTES,
    settle: float = 1.0,
    workers: int = 0,
) -> Store:
    """The console's store at ``path`` (default: ``default_store_path()``), flusher not started.

    With ``workers``, traces are packed in that many worker processes, beside this one's work.
    """
    return Store(
        path or default_store_path(),
        derive=derive,
        retention=retention,
        max_bytes=max_bytes,
        settle=settle,
        packer=WorkerPacker(workers) if workers > 0 else pack,
    )
