"""The store's packing in a worker process, so that it runs on another core than the daemon's
receiving and shipping (CPython runs one thread at a time per process).

``WorkerPacker`` is a ``Packer`` for ``Store``: it shares each batch of settled traces among its
``python -m k8sxray.console._worker`` processes, over pipes (length-prefixed pickles; the child is our own
program, started by us, so pickle is safe here) and waits for the result. If the worker cannot be
started or dies, the batch is packed in this process instead and a new worker is tried for the next
one, so nothing is lost. Run as a program, this module is that worker.
"""

from __future__ import annotations

import logging
import pickle
import struct
import subprocess
import sys
import threading
from typing import IO, Any

from . import graph
from .packing import Derive, Result, Work, pack

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!Q")


def _write(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the other end closed the pipe")
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the other end closed the pipe mid-message")
    return pickle.loads(data)  # our own child process, over our own pipe


class WorkerPacker:
    """Packs in ``workers`` child processes, a share of each batch to each; falls back to this
    process for a share whose worker is not there."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * self.workers
        self._lock = threading.Lock()
        self._failures = 0

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "k8sxray.console._worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def __call__(self, work: Work, derive: Derive) -> Result:
        items = list(work)
        shares = [items[i :: self.workers] for i in range(self.workers)]
        with self._lock:
            sent: list[tuple[int, list[Any]]] = []
            done: list[Result] = []
            for index, share in enumerate(shares):
                if not share:
                    continue
                try:
                    _write(self._pipes(index)[0], (share, derive))
                    sent.append((index, share))
                except (OSError, pickle.PickleError) as exc:
                    self._failed(index, exc)
                    done.append(pack(share, derive))
            for index, share in sent:
                try:
                    answer = _read(self._pipes(index)[1])
                except (OSError, EOFError, pickle.PickleError, AttributeError) as exc:
                    self._failed(index, exc)
                    answer = pack(share, derive)
                if isinstance(answer, BaseException):
                    raise answer
                done.append(answer)
        return _combine(done)

    def _pipes(self, index: int) -> tuple[IO[bytes], IO[bytes]]:
        proc = self._procs[index]
        if proc is None or proc.poll() is not None:
            proc = self._procs[index] = self._start()
        if proc.stdin is None or proc.stdout is None:
            raise OSError("the worker has no pipes")
        return proc.stdin, proc.stdout

    def _failed(self, index: int, exc: BaseException) -> None:
        self._failures += 1
        log_at = log.error if self._failures <= 3 else log.debug
        log_at("console store: a packing worker failed (%s); packing here instead", exc)
        self._stop(index)

    def _stop(self, index: int) -> None:
        proc, self._procs[index] = self._procs[index], None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop the workers (each exits when its input closes)."""
        with self._lock:
            for index in range(self.workers):
                self._stop(index)

    @property
    def pids(self) -> list[int]:
        """The workers' process ids, of those running."""
        return [p.pid for p in self._procs if p is not None and p.poll() is None]


def _combine(results: list[Result]) -> Result:
    if len(results) == 1:
        return results[0]
    out = Result()
    for result in results:
        out.traces += result.traces
        out.misplaced += result.misplaced
        for reason, count in result.rejected.items():
            out.rejected[reason] = out.rejected.get(reason, 0) + count
        for key, stats in result.rollup.items():
            held = out.rollup.get(key)
            if held is None:
                out.rollup[key] = stats
            else:
                graph.merge(held, stats)
    return out


def main() -> int:
    """The worker: read ``(work, derive)`` pickles from standard input, answer each with a Result
    (or the exception it raised) on standard output, until the input closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            work, derive = _read(stdin)
        except EOFError:
            return 0
        try:
            answer: Any = pack(work, derive)
        except Exception as exc:  # handed back, raised in the daemon, logged there
            answer = RuntimeError(f"packing failed: {exc!r}")
        _write(stdout, answer)


if __name__ == "__main__":
    raise SystemExit(main())
