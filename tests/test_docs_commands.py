"""Every command the docs show is run by a test, so the docs cannot rot.

The rule, for README.md, docs/*.md and examples/README.md:

- A command is a line of a fenced block whose info string is ``console``, ``sh``, ``bash`` or
  ``shell`` (``text``, ``python`` and ``yaml`` blocks are not commands). In a block where some lines
  start with ``$ ``, only those lines are commands and the others are their output.
- A line ending in ``\\`` goes on on the next line; `` # comment`` to the end of a line and a trailing
  ``&`` (run in the background) are dropped; ``a && b`` is two commands, each needing its proof.
- Each command needs one proof:
  1. ``RUN_HERE``: this test runs it (``python`` is this interpreter; a temporary HOME, no AWS or
     k8sxray settings, a timeout) and checks its exit code and a piece of its output;
  2. ``.ci/run`` holds the whole line verbatim (CI runs that file: the README's test command);
  3. ``PROVEN_BY``: the first regular expression that matches the whole command names the test that
     runs it, ``tests/<file>.py::<test>`` (or a whole file); the file and the test must exist.
     Commands that need a cluster (``kubectl ...``) are proven by the tests that render what they apply.
- ``pip install`` of this checkout may name only extras that pyproject.toml defines.

A documented command with no proof fails the test, which names the file and the command: run it in a
test, or map it here to the test that does.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "README.md"]
SHELLS = {"console", "sh", "bash", "shell"}
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
_COMMENT = re.compile(r"\s+#\s.*$")

DEMO = "tests/test_demo.py::test_the_demo_shows_the_blogs_map_and_ctrl_c_leaves_nothing_running"
EXAMPLES = "tests/test_examples.py::test_service_a_calls_service_b_in_one_trace"
WHEEL = "tests/test_packaging.py::test_the_wheel_installs_and_runs"
BUILD = "tests/test_packaging.py::test_twine_accepts_the_sdist_and_the_wheel"
RENDERED = "tests/deploy/test_deploy_render.py::test_every_rendered_manifest_is_valid"
_ENV = r"(?:[A-Z_0-9]+=\S+ )*"

RUN_HERE: dict[str, tuple[int, str]] = {
    # command: (exit code, a piece of its standard output)
    "python -m k8sxray config": (0, "settings:"),
    "python -m k8sxray --help": (0, "demo"),
    "python -m k8sxray demo --help": (0, "--duration"),
    "python -m k8sxray traces --help": (0, "--filter"),
    "python -m k8sxray.daemon -h": (0, "--sink"),
}

PROVEN_BY: list[tuple[str, str]] = [
    # the demo, and the terminal against it
    (r"python -m k8sxray demo(?: .*)?", DEMO),
    (r"python -m k8sxray traces --endpoint \S+(?: --filter .*)?", DEMO),
    # installs and the release path
    (r"pip install (?:-e )?'?\.(?:\[[a-z,]+\])?'?", WHEEL),
    (r"pip install dist/k8sxray-\*\.whl", WHEEL),
    (r"python -m build", BUILD),
    (r"twine check dist/\*", BUILD),
    # the daemon
    (
        r"python -m k8sxray\.daemon --sink local",
        "tests/console/test_local_daemon.py::test_with_no_aws_it_runs_locally_and_says_where_to_look",
    ),
    (
        r"python -m k8sxray\.daemon --sink stdout(?: \| jq \.name)?",
        "tests/daemon/test_stdout_pipe.py::"
        "test_a_bad_body_among_good_ones_does_not_break_a_json_lines_reader",
    ),
    (
        r"python -m k8sxray\.daemon -n us-east-1",
        "tests/daemon/test_e2e_moto.py::test_official_sdk_segments_arrive_byte_identical",
    ),
    (
        r"python -m k8sxray\.daemon -c \S+",
        "tests/daemon/test_cli.py::test_unknown_yaml_key_exits_2_with_the_key_named",
    ),
    # zero code (docs/zero-code.md)
    (r"k8sxray-run gunicorn .*", "tests/run/test_servers.py::test_gunicorn_two_workers"),
    (r"k8sxray-run uvicorn .*", "tests/run/test_servers.py::test_uvicorn_two_workers"),
    (r"k8sxray-run uwsgi .*", "tests/run/test_uwsgi.py::test_every_worker_emits_promptly"),
    (r"k8sxray-run flask run", "tests/run/test_servers.py::test_flask_run"),
    (r"k8sxray-run python app\.py", "tests/run/test_servers.py::test_plain_script"),
    # the demo's services by hand (examples/README.md)
    (
        _ENV + r"(?:k8sxray-run )?uvicorn (?:examples\.service_b\.app|k8sxray\.demo\.service_b):app .*",
        EXAMPLES,
    ),
    (
        _ENV + r"(?:k8sxray-run )?gunicorn (?:examples\.service_a\.app|k8sxray\.demo\.service_a):app .*",
        EXAMPLES,
    ),
    (r"curl localhost:8080/orders/7", EXAMPLES),
    # a cluster, AWS, a Docker engine: none is here, so what they would use is checked instead
    (r"kubectl .*", RENDERED),
    (r"cd deploy/kubernetes/\S+", RENDERED),
    (r"kustomize edit set image .*", "tests/deploy/test_deploy_render.py::test_renders_the_expected_objects"),
    (
        r"docker build -f \S*Dockerfile\S* .*",
        "tests/deploy/test_deploy_images.py::test_hadolint_finds_nothing",
    ),
    (
        r"aws (?:iam|eks) .*",
        "tests/deploy/test_deploy_iam.py::test_the_policy_allows_exactly_the_daemons_actions_on_every_resource",
    ),
]


def shell_lines(text: str) -> list[str]:
    """The command lines of ``text``'s shell blocks, by the rule above, before splitting at ``&&``."""
    found: list[str] = []
    for match in _FENCE.finditer(text):
        if match.group(1) not in SHELLS:
            continue
        lines = match.group(2).splitlines()
        prompted = any(line.startswith("$ ") for line in lines)
        pending = ""
        for raw in lines:
            if prompted and not pending and not raw.startswith("$ "):
                continue  # output
            pending += raw.removeprefix("$ ").rstrip() if not pending else raw.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            line = re.sub(r"\s*&$", "", _COMMENT.sub("", pending).strip())
            pending = ""
            if line and not line.startswith("#"):
                found.append(" ".join(line.split()))
    return found


def shell_commands(text: str) -> list[str]:
    """Every command of ``text``: its shell lines, split at ``&&``."""
    return [part.strip() for line in shell_lines(text) for part in line.split(" && ")]


def _ci_lines() -> set[str]:
    return {" ".join(line.split()) for line in (ROOT / ".ci" / "run").read_text().splitlines()}


def _proof(command: str, ci: set[str], whole: list[str]) -> str | None:
    if command in RUN_HERE:
        return "run here"
    if any(command in line.split(" && ") and line in ci for line in whole):
        return ".ci/run"
    for pattern, test in PROVEN_BY:
        if re.fullmatch(pattern, command):
            return test
    return None


def test_the_rule_reads_commands_as_documented() -> None:
    text = (
        "```console\n$ python -m k8sxray config   # add --json\nsettings:\n  x  1\n```\n"
        "```sh\nfoo --a \\\n  --b &\n# a comment\nbar && baz\n```\n"
        "```python\nimport os\n```\n"
    )
    assert shell_commands(text) == ["python -m k8sxray config", "foo --a --b", "bar", "baz"]


def test_every_documented_command_is_run_by_a_test() -> None:
    ci = _ci_lines()
    unproven = []
    checked = 0
    for path in DOCS:
        whole = shell_lines(path.read_text(encoding="utf-8"))
        for command in shell_commands(path.read_text(encoding="utf-8")):
            checked += 1
            proof = _proof(command, ci, whole)
            if proof is None:
                unproven.append(f"{path.relative_to(ROOT)}: {command}")
    assert checked >= 20, "the scan found too few commands: has the rule stopped matching the docs?"
    assert unproven == [], "documented commands no test runs (see this file's docstring):\n" + "\n".join(
        unproven
    )


def test_every_proof_names_a_test_that_exists() -> None:
    ci = _ci_lines()
    missing = []
    for path in DOCS:
        whole = shell_lines(path.read_text(encoding="utf-8"))
        for command in shell_commands(path.read_text(encoding="utf-8")):
            proof = _proof(command, ci, whole)
            if proof in (None, "run here", ".ci/run"):
                continue
            assert proof is not None
            file, _, name = proof.partition("::")
            source = ROOT / file
            if not source.is_file() or (
                name and not re.search(rf"^def {re.escape(name)}\(", source.read_text(), re.M)
            ):
                missing.append(f"{path.relative_to(ROOT)}: {command} -> {proof}")
    assert missing == []


def test_pip_installs_name_extras_that_exist() -> None:
    tomllib = pytest.importorskip("tomllib")
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = set()
    for path in DOCS:
        for command in shell_commands(path.read_text(encoding="utf-8")):
            for group in re.findall(r"pip install (?:-e )?'?\.\[([a-z,]+)\]", command):
                named |= set(group.split(","))
    assert "demo" in named
    assert named <= extras


@pytest.mark.parametrize("command", sorted(RUN_HERE))
def test_commands_run_here(command: str, tmp_path: Path) -> None:
    code, expected = RUN_HERE[command]
    argv = shlex.split(command)
    argv[0] = sys.executable if argv[0] == "python" else str(BIN / argv[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "K8SXRAY_"))}
    env.update(HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"), AWS_EC2_METADATA_DISABLED="true")
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path, check=False
    )
    assert done.returncode == code, done.stderr
    assert expected in done.stdout


def test_the_architecture_diagram_names_modules_that_exist() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    diagram = text.split("## A segment's path", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    named = set(re.findall(r"[\w/]+\.py", diagram))
    assert len(named) >= 10
    modules = {str(p.relative_to(ROOT / "k8sxray")) for p in (ROOT / "k8sxray").rglob("*.py")}
    missing = sorted(n for n in named if not any(m == n or m.endswith("/" + n) for m in modules))
    assert missing == []
