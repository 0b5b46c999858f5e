"""The running container's id (64 hex characters), from /proc/self/cgroup or /proc/self/mountinfo.

cgroup v1 (and v2 without a cgroup namespace) names the container in the cgroup path:
``.../kubepods/burstable/pod<uid>/<id>``, or under systemd ``cri-containerd-<id>.scope``,
``crio-<id>.scope``, ``docker-<id>.scope``. With cgroup v2 and a cgroup namespace the file is
just ``0::/`` and the id has to be recovered from the sources of bind mounts in mountinfo.

The trap: several of those mounts belong to the Pod's *sandbox* (the pause container), not to
us. containerd mounts ``/etc/hostname``, ``/etc/resolv.conf`` and ``/dev/shm`` from
``.../io.containerd.grpc.v1.cri/sandboxes/<sandbox id>/``; CRI-O bind-mounts the same files
from the sandbox's ``overlay-containers/<sandbox id>/userdata/``. Only
``.../io.containerd.grpc.v1.cri/containers/<id>/`` (containerd), CRI-O's per-container files
(``/run/.containerenv``, ``/run/secrets``) and a cgroup mount's root name our own container.
When in doubt this module answers ``None``: no id is better than the pause container's.
"""

from __future__ import annotations

from ._downward import read_text

CGROUP_PATH = "/proc/self/cgroup"
MOUNTINFO_PATH = "/proc/self/mountinfo"

_HEX = frozenset("0123456789abcdef")
_ID_LEN = 64
_RUNTIME_PREFIXES = ("cri-containerd-", "containerd-", "crio-", "docker-", "libpod-")

# Markers in a mount's root that are followed by a container id and "/".
_CONTAINERD_SANDBOX = "/io.containerd.grpc.v1.cri/sandboxes/"
_CONTAINERD_OWN = "/io.containerd.grpc.v1.cri/containers/"
_CRIO = "/overlay-containers/"  # .../overlay-containers/<id>/userdata/...
_DOCKER = "/containers/"  # /var/lib/docker/containers/<id>/... (or /containers/<id>/ on its own disk)

# Mount points that CRI runtimes fill from the sandbox, shared by every container of the Pod.
_SANDBOX_SHARED = frozenset({"/etc/hostname", "/etc/resolv.conf", "/etc/hosts", "/dev/shm"})


def is_container_id(value: str) -> bool:
    """``True`` for a 64-character lowercase hex id."""
    return len(value) == _ID_LEN and not set(value) - _HEX


def from_cgroup(text: str) -> str | None:
    """The container id named by a ``/proc/self/cgroup`` text, or ``None`` (``0::/`` gives none)."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        found = _id_in_cgroup_path(parts[2])
        if found:
            return found
    return None


def _id_in_cgroup_path(path: str) -> str | None:
    """The id in a cgroup path's last part: ``<id>``, ``<runtime>-<id>.scope`` or ``<runtime>-<id>``."""
    leaf = path.rstrip("/").rsplit("/", 1)[-1]
    if "conmon" in leaf:  # CRI-O's monitor process has its own scope; never ours
        return None
    leaf = leaf.removesuffix(".scope")
    for prefix in _RUNTIME_PREFIXES:
        if leaf.startswith(prefix):
            leaf = leaf[len(prefix) :]
            break
    return leaf if is_container_id(leaf) else None


def _id_after(root: str, marker: str) -> str | None:
    """The container id that follows *marker* in *root* (and ends at ``/`` or the end)."""
    at = root.find(marker)
    if at < 0:
        return None
    start = at + len(marker)
    candidate = root[start : start + _ID_LEN]
    rest = root[start + _ID_LEN : start + _ID_LEN + 1]
    return candidate if is_container_id(candidate) and rest in ("", "/") else None


def _unescape_mount_field(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\040``, ``\\011``, ``\\012``, ``\\134``."""
    if "\\" not in field:
        return field
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _classify(root: str, mount_point: str, fstype: str) -> tuple[str, str] | None:
    """``("own" | "sandbox" | "docker", id)`` for a mount that names a container, else ``None``."""
    if fstype in ("cgroup", "cgroup2"):
        found = _id_in_cgroup_path(root)
        return ("own", found) if found else None
    found = _id_after(root, _CONTAINERD_SANDBOX)
    if found:
        return "sandbox", found
    found = _id_after(root, _CONTAINERD_OWN)
    if found:
        return "own", found
    found = _id_after(root, _CRIO)
    if found and root.startswith("/userdata", root.find(found) + _ID_LEN):
        return ("sandbox" if mount_point in _SANDBOX_SHARED else "own"), found
    found = _id_after(root, _DOCKER)
    return ("docker", found) if found else None


def from_mountinfo(text: str) -> str | None:
    """Our container's id from a ``/proc/self/mountinfo`` text, never the sandbox's; else ``None``."""
    found: dict[str, list[str]] = {"own": [], "sandbox": [], "docker": []}
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 10 or "-" not in fields:
            continue
        fstype = fields[fields.index("-") + 1]
        kind_id = _classify(_unescape_mount_field(fields[3]), _unescape_mount_field(fields[4]), fstype)
        if kind_id:
            found[kind_id[0]].append(kind_id[1])
    sandbox = set(found["sandbox"])
    for candidate in found["own"]:
        if candidate not in sandbox:
            return candidate
    # Plain Docker mounts hostname/hosts/resolv.conf from the container's own directory; under
    # Kubernetes (dockershim) they come from the sandbox's. Trust them only when unambiguous.
    docker = set(found["docker"]) - sandbox
    return docker.pop() if len(docker) == 1 else None


def read_container_id(cgroup_path: str = CGROUP_PATH, mountinfo_path: str = MOUNTINFO_PATH) -> str | None:
    """Our container id: cgroup first (cheap, definitive on v1), then mountinfo."""
    text = read_text(cgroup_path, 64 * 1024)
    found = from_cgroup(text) if text else None
    if found:
        return found
    text = read_text(mountinfo_path, 1024 * 1024)
    return from_mountinfo(text) if text else None
