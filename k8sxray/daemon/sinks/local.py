"""``--sink local``: segments kept by the daemon itself, in the console's SQLite store.

Documents the store cannot use (not a JSON object, no ``trace_id`` or ``id``) are refused for
good and counted by reason, like X-Ray's own rejections; everything else is held by the store
and written as its traces settle.
"""

from __future__ import annotations

import logging
import sqlite3

from k8sxray.console.store import Store, StoreBusy
from k8sxray.daemon.sinks import OK, SendResult

log = logging.getLogger(__name__)


class LocalSink:
    """Hands batches to a console ``Store``."""

    name = "local"
    local_sampling = True  # no X-Ray behind it: the daemon answers sampling calls itself
    check_documents = False  # the store parses every document and refuses, counted, what it cannot use

    def __init__(self, store: Store) -> None:
        self.store = store

    def send(self, batch: list[bytes]) -> SendResult:
        try:
            added = self.store.add(batch, wait=1.0)
        except StoreBusy as exc:  # writing fell behind: the buffer keeps the batch a little longer
            return SendResult(retry=tuple(range(len(batch))), error="Other", detail=str(exc), throttled=True)
        except (sqlite3.Error, OSError) as exc:
            return SendResult(retry=tuple(range(len(batch))), error="Other", detail=str(exc))
        if added.rejected:
            return SendResult(rejected={_code(r): n for r, n in added.rejected.items()})
        return OK

    def close(self) -> None:
        self.store.close()


def _code(reason: str) -> str:
    return "InvalidDocument: " + reason
