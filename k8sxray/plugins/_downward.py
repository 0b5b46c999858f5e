"""What the Pod tells about itself without the API: Downward API env and files, hostname.

Each reader takes its input (an env mapping, a path) so tests can point it at fixtures,
and returns empty (``None`` or ``{}``) when the source is missing or unreadable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .. import _env as names

_MAX_FILE = 256 * 1024  # a Downward API labels/annotations file is far smaller
_MAX_VALUE = 256


@dataclass(frozen=True)
class PodEnv:
    """The Downward API values found in the environment (``None`` when not set)."""

    pod_name: str | None = None
    namespace: str | None = None
    pod_uid: str | None = None
    pod_ip: str | None = None
    node_name: str | None = None
    container_name: str | None = None
    cluster_name: str | None = None


def clean(value: str | None) -> str | None:
    """Strip *value*; ``None`` for empty or absurdly long values."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_VALUE:
        return None
    return value


def from_env(environ: Mapping[str, str]) -> PodEnv:
    """Read the Downward API variables documented in docs/kubernetes.md."""
    return PodEnv(
        pod_name=clean(environ.get(names.POD_NAME)),
        namespace=clean(environ.get(names.POD_NAMESPACE)),
        pod_uid=clean(environ.get(names.POD_UID)),
        pod_ip=clean(environ.get(names.POD_IP)),
        node_name=clean(environ.get(names.NODE_NAME)),
        container_name=clean(environ.get(names.CONTAINER_NAME)),
        cluster_name=clean(environ.get(names.K8SXRAY_CLUSTER_NAME)),
    )


def read_text(path: str, limit: int = _MAX_FILE) -> str | None:
    """The text of a small file, or ``None`` if it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(limit)
    except OSError:
        return None


def namespace_from_file(service_account_dir: str) -> str | None:
    """The Pod's namespace from the service-account ``namespace`` file."""
    return clean(read_text(os.path.join(service_account_dir, "namespace"), 1024))


def hostname() -> str | None:
    """The hostname: the Pod's name unless the Pod spec sets ``hostname``."""
    try:
        return clean(os.uname().nodename)
    except OSError:  # pragma: no cover - uname does not fail on Linux
        return None


def read_labels(directory: str) -> dict[str, str]:
    """Pod labels from a Downward API volume's ``labels`` file (``{}`` if absent)."""
    text = read_text(os.path.join(directory, "labels"))
    return parse_key_values(text) if text else {}


def read_podinfo(directory: str) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and annotations from a Downward API volume (``labels``/``annotations`` files)."""
    labels = read_text(os.path.join(directory, "labels"))
    annotations = read_text(os.path.join(directory, "annotations"))
    return (
        parse_key_values(labels) if labels else {},
        parse_key_values(annotations) if annotations else {},
    )


def parse_key_values(text: str) -> dict[str, str]:
    """Parse the kubelet's ``key="value"`` lines (values quoted as Go's ``%q`` does).

    Malformed lines are skipped, never raised.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, quoted = line.partition("=")
        key = key.strip()
        quoted = quoted.strip()
        if not sep or not key or len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
            continue
        value = unquote_go(quoted[1:-1])
        if value is not None:
            out[key] = value
    return out


_SIMPLE_ESCAPES = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
    '"': b'"',
    "'": b"'",
}
_HEX_LENGTHS = {"x": 2, "u": 4, "U": 8}


def unquote_go(body: str) -> str | None:
    """Undo Go's double-quoted string escapes in *body* (without the quotes); ``None`` if malformed.

    ``\\xNN`` and octal escapes are raw bytes (Go uses them for invalid UTF-8), so the result is
    assembled as bytes and decoded once, replacing what is still invalid.
    """
    if "\\" not in body:
        return None if '"' in body else body
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch == '"':
            return None  # an unescaped quote inside: not the kubelet's format
        if ch != "\\":
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
            continue
        decoded = _escape(body, i)
        if decoded is None:
            return None
        chunk, i = decoded
        out += chunk
    return out.decode("utf-8", errors="replace")


def _escape(body: str, i: int) -> tuple[bytes, int] | None:
    """Decode the escape starting at ``body[i]`` (a backslash): its bytes and the next index."""
    esc = body[i + 1 : i + 2]
    if esc in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[esc], i + 2
    if esc in _HEX_LENGTHS:
        return _hex_escape(body, i, esc)
    digits = body[i + 1 : i + 4]
    if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) <= 255:
        return bytes([int(digits, 8)]), i + 4
    return None


def _hex_escape(body: str, i: int, esc: str) -> tuple[bytes, int] | None:
    """``\\xNN`` (a raw byte), ``\\uNNNN`` or ``\\UNNNNNNNN`` (a code point)."""
    width = _HEX_LENGTHS[esc]
    digits = body[i + 2 : i + 2 + width]
    if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
        return None
    code = int(digits, 16)
    if esc == "x":
        return bytes([code]), i + 2 + width
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code).encode("utf-8"), i + 2 + width
