"""The default buffer size, from the container's cgroup memory limit (never the host's RAM)."""

from __future__ import annotations

from pathlib import Path

MIB = 1024 * 1024
MIN_BUFFER = 3 * MIB
"""The official daemon's minimum for ``-m``."""
DEFAULT_BUFFER = 16 * MIB
"""Buffer when no container limit is found: small enough for any Pod, about 35,000 segments."""
MAX_DEFAULT_BUFFER = 64 * MIB
_UNLIMITED = 1 << 60


def cgroup_memory_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The memory limit of this process's cgroup (v2 ``memory.max`` or v1), or None if unlimited."""
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            value = int(text)
        except ValueError:
            continue
        return value if 0 < value < _UNLIMITED else None
    return None


def default_buffer_bytes(limit: int | None) -> int:
    """A quarter of the container's limit (the rest is the interpreter, sockets and headroom)."""
    if limit is None:
        return DEFAULT_BUFFER
    return max(MIN_BUFFER, min(MAX_DEFAULT_BUFFER, limit // 4))
