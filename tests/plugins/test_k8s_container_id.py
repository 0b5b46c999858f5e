"""Container id readers pointed at real-shaped /proc/self/cgroup and /proc/self/mountinfo files."""

from __future__ import annotations

from pathlib import Path

import pytest

from k8sxray.plugins._container_id import from_cgroup, from_mountinfo, is_container_id, read_container_id

FIXTURES = Path(__file__).parent / "fixtures"
OWN = "3f1a9c2e8b7d4f60a5e1c9b8d7f6e5a4c3b2a1908f7e6d5c4b3a29180f7e6d5c"
SANDBOX = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"


def _text(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("cgroup-v1-docker.txt", OWN),
        ("cgroup-v1-containerd-systemd.txt", OWN),
        ("cgroup-v1-crio.txt", OWN),
        ("cgroup-v2-host-namespace.txt", OWN),
        ("cgroup-v2-namespaced.txt", None),
        ("cgroup-v2-crio-conmon.txt", None),
    ],
)
def test_cgroup(fixture: str, expected: str | None) -> None:
    assert from_cgroup(_text(fixture)) == expected


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        # containerd mounts hostname/resolv.conf from the sandbox: that id is NOT ours
        ("mountinfo-containerd.txt", None),
        ("mountinfo-containerd-volume.txt", OWN),
        ("mountinfo-containerd-separate-disk.txt", OWN),
        ("mountinfo-containerd-cgroup-root.txt", OWN),
        # CRI-O: hostname/resolv.conf from the sandbox's userdata, .containerenv/secrets from ours
        ("mountinfo-crio.txt", OWN),
        ("mountinfo-crio-sandbox-only.txt", None),
        ("mountinfo-docker.txt", OWN),
    ],
)
def test_mountinfo(fixture: str, expected: str | None) -> None:
    found = from_mountinfo(_text(fixture))
    assert found == expected
    assert found != SANDBOX


def test_mountinfo_sandbox_id_never_returned_even_if_listed_as_own() -> None:
    # A containerd sandbox id seen anywhere disqualifies the same id elsewhere.
    text = _text("mountinfo-containerd.txt") + (
        f"1700 1640 259:1 /var/lib/containerd/io.containerd.grpc.v1.cri/containers/{SANDBOX}/volumes/x"
        " /data rw - ext4 /dev/nvme0n1p1 rw\n"
    )
    assert from_mountinfo(text) is None


def test_mountinfo_two_docker_ids_is_ambiguous() -> None:
    other = "a" * 64
    text = _text("mountinfo-docker.txt").replace(f"containers/{OWN}/hosts", f"containers/{other}/hosts")
    assert from_mountinfo(text) is None


def test_mountinfo_escaped_fields_and_garbage_lines() -> None:
    text = "garbage\n\n1 2 3\n" + (
        f"1 0 8:1 /var/lib/docker/containers/{OWN}/host\\040name /etc/host\\040name rw - ext4 /dev/sda1 rw\n"
    )
    assert from_mountinfo(text) == OWN


def test_read_container_id_prefers_cgroup_then_mountinfo(tmp_path: Path) -> None:
    cgroup_v1 = str(FIXTURES / "cgroup-v1-crio.txt")
    cgroup_v2 = str(FIXTURES / "cgroup-v2-namespaced.txt")
    mountinfo = str(FIXTURES / "mountinfo-crio.txt")
    assert read_container_id(cgroup_v1, str(tmp_path / "missing")) == OWN
    assert read_container_id(cgroup_v2, mountinfo) == OWN
    assert read_container_id(cgroup_v2, str(FIXTURES / "mountinfo-containerd.txt")) is None
    assert read_container_id(str(tmp_path / "none"), str(tmp_path / "none")) is None


def test_is_container_id() -> None:
    assert is_container_id(OWN)
    assert not is_container_id(OWN.upper())
    assert not is_container_id(OWN[:-1])
    assert not is_container_id("")


def test_containerd_sandbox_files_under_the_state_dir_are_still_the_sandbox() -> None:
    # Some containerd versions mount hostname/resolv.conf from /run/containerd/... (the state dir).
    text = _text("mountinfo-containerd-volume.txt").replace(
        "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/",
        "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/",
    )
    assert "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/" in text
    assert from_mountinfo(text) == OWN
    only_sandbox = _text("mountinfo-containerd.txt").replace("/var/lib/containerd/", "/run/containerd/")
    assert from_mountinfo(only_sandbox) is None
