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

import re

from ._downward import read_text

CGROUP_PATH = "/proc/self/cgroup"
MOUNTINFO_PATH = "/proc/self/mountinfo"

_ID = r"[0-9a-f]{64}"
_ID_RE = re.compile(rf"^{_ID}$")
# A cgroup path's last component: "<id>", "<runtime>-<id>.scope" or "<runtime>-<id>".
_CGROUP_LEAF = re.compile(rf"^(?:(?:cri-containerd|containerd|crio|docker|libpod)-)?({_ID})(?:\.scope)?$")

_CONTAINERD_OWN = re.compile(rf"/io\.containerd\.grpc\.v1\.cri/containers/({_ID})(?:/|$)")
_CONTAINERD_SANDBOX = re.compile(rf"/io\.containerd\.grpc\.v1\.cri/sandboxes/({_ID})(?:/|$)")
_CRIO = re.compile(rf"/overlay-containers/({_ID})/userdata(?:/|$)")
_DOCKER = re.compile(rf"/docker/containers/({_ID})(?:/|$)")

# Mount points that CRI runtimes fill from the sandbox, shared by every container of the Pod.
_SANDBOX_SHARED = frozenset({"/etc/hostname", "/etc/resolv.conf", "/etc/hosts", "/dev/shm"})


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
    leaf = path.rstrip("/").rsplit("/", 1)[-1]
    if "conmon" in leaf:  # CRI-O's monitor process has its own scope; never ours
        return None
    match = _CGROUP_LEAF.match(leaf)
    return match.group(1) if match else None


def _unescape_mount_field(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \040, \011, \012, \134.
    if "\\" not in field:
        return field
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _classify(root: str, mount_point: str, fstype: str) -> tuple[str, str] | None:
    """``("own" | "sandbox" | "docker", id)`` for a mount that names a container, else ``None``."""
    if fstype in ("cgroup", "cgroup2"):
        found = _id_in_cgroup_path(root)
        return ("own", found) if found else None
    match = _CONTAINERD_SANDBOX.search(root)
    if match:
        return "sandbox", match.group(1)
    match = _CONTAINERD_OWN.search(root)
    if match:
        return "own", match.group(1)
    match = _CRIO.search(root)
    if match:
        return ("sandbox" if mount_point in _SANDBOX_SHARED else "own"), match.group(1)
    match = _DOCKER.search(root)
    return ("docker", match.group(1)) if match else None


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


def is_container_id(value: str) -> bool:
    """``True`` for a 64-character lowercase hex id."""
    return bool(_ID_RE.match(value))
