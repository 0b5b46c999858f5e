"""The Dockerfiles: hadolint-clean, a pinned base, a numeric non-root user, no build tools in the
image that runs, and commands the daemon (or the examples' servers) accept. There is no container
engine here, so the images are checked by reading them."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import subprocess
from pathlib import Path

import pytest
from deploy_helpers import ROOT, container, find, needs, render

from k8sxray.daemon import settings as daemon_settings

DOCKERFILES = ("Dockerfile.daemon", "examples/Dockerfile")
_PINNED = re.compile(r"^python:3\.12\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?$")


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(path):
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    needs("hadolint")
    return subprocess.run(
        ["hadolint", "--no-color", "--format", "tty", str(path)], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_finds_nothing(dockerfile: str) -> None:
    done = _hadolint(ROOT / dockerfile)  # its default threshold fails on anything from "info" up
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_hadolint_would_catch_a_careless_dockerfile(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text("FROM python\nRUN apt-get update && apt-get install -y gcc\nCMD python app.py\n")
    done = _hadolint(path)
    assert done.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3015", "DL3025"):  # untagged base, unpinned apt, ..., shell CMD
        assert rule in done.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_the_image_that_runs_holds_no_build_tools_and_no_root(dockerfile: str) -> None:
    stages = _stages(ROOT / dockerfile)
    assert len(stages) == 2, "a build stage and a runtime stage"
    for stage in stages:
        image = stage[0][1].split()[0]
        assert _PINNED.match(image), f"{image}: pin the base to a full Python version"
    build, final = stages
    assert build[0][1].split()[-1] == "build"
    final_text = " ".join(args for _, args in final)
    assert "COPY --from=build" in " ".join(f"{i} {a}" for i, a in final)
    for tool in ("apt-get", "gcc", "build-essential", "pip install"):
        assert tool not in final_text, f"{tool} in the runtime stage"
    users = [args for instruction, args in final if instruction == "USER"]
    assert users, "no USER in the runtime stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "USER must be numeric, so that runAsNonRoot can check it"
    assert int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # the user the manifests run as is the image's
    assert int(uid) == 10001


def _exec_form(final: list[tuple[str, str]], instruction: str) -> list[str]:
    args = [a for i, a in final if i == instruction]
    assert len(args) == 1, f"one {instruction} in the runtime stage"
    value = json.loads(args[0])
    assert isinstance(value, list), f"{instruction} in exec form"
    return [str(v) for v in value]


def test_the_daemon_image_starts_the_daemon_with_arguments_a_manifest_can_replace(tmp_path: Path) -> None:
    final = _stages(ROOT / "Dockerfile.daemon")[-1]
    assert _exec_form(final, "ENTRYPOINT") == ["python", "-m", "k8sxray.daemon"]
    cmd = _exec_form(final, "CMD")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("max")
    s = daemon_settings.parse(cmd, environ={}, cgroup_root=cgroup)
    assert (s.udp, s.tcp, s.http) == (("0.0.0.0", 2000), ("0.0.0.0", 2000), ("0.0.0.0", 2020))
    exposed = " ".join(a for i, a in final if i == "EXPOSE").split()
    assert sorted(exposed) == ["2000/tcp", "2000/udp", "2020/tcp", "4318/tcp"]  # 4318: OTLP (--otlp)


def _served_module(command: list[str]) -> str:
    """The ``module:attribute`` a gunicorn or uvicorn command line serves."""
    targets = [a for a in command if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", a)]
    assert len(targets) == 1, command
    return targets[0]


def test_the_examples_image_serves_both_apps() -> None:
    final = _stages(ROOT / "examples/Dockerfile")[-1]
    default = _exec_form(final, "CMD")
    assert default[0] == "gunicorn"
    service_b = container(find(render("examples/base"), "Deployment", "service-b"))["command"]
    assert service_b[0] == "uvicorn"
    assert "command" not in container(find(render("examples/base"), "Deployment", "service-a"))
    served = {"service-a": _served_module(default), "service-b": _served_module(service_b)}
    assert served == {"service-a": "examples.service_a.app:app", "service-b": "examples.service_b.app:app"}
    for target in served.values():
        module, attribute = target.split(":")
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.exists():
            pytest.skip(f"{path.relative_to(ROOT)} is not in this checkout yet (the demo's apps, issue 17)")
        tree = ast.parse(path.read_text())
        assigned = {
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        assert attribute in assigned, f"{path} defines no module-level {attribute!r}"


def test_the_build_context_keeps_what_the_dockerfiles_copy() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for dockerfile in DOCKERFILES:
        for instruction, args in _instructions(ROOT / dockerfile):
            if instruction != "COPY" or args.startswith("--from"):
                continue
            for source in args.split()[:-1]:
                for pattern in ignored:
                    bare = pattern.removeprefix("**/")
                    assert not fnmatch.fnmatch(source, bare), (
                        f"{dockerfile} copies {source}, ignored by {pattern}"
                    )
    # and leaves out what must never reach an image: local builds of the C module, caches, git
    assert {"**/*.so", "**/__pycache__", ".git"} <= set(ignored)
