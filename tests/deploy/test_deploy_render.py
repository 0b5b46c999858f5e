"""Every kustomization renders, and every rendered manifest passes ``kubernetes-validate --strict``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from deploy_helpers import EXPECTED, KUBE, KUSTOMIZATIONS, VERSIONS, find, render, rendered_text


def _validate(path: Path, version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", version, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_every_kustomization_is_tested() -> None:
    found = {str(p.parent.relative_to(KUBE)) for p in KUBE.rglob("kustomization.yaml")}
    assert found == set(KUSTOMIZATIONS) == set(EXPECTED)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_the_expected_objects(kustomization: str) -> None:
    docs = render(kustomization)
    kinds = {(d["kind"], d["metadata"]["name"].removesuffix(_hash(d))) for d in docs}
    assert kinds == EXPECTED[kustomization]
    # one namespace for all, so that short Service names and RoleBinding subjects line up
    assert {d["metadata"].get("namespace") for d in docs} == {"default"}


def _hash(doc: dict[str, object]) -> str:
    """The hash suffix kustomize gives a generated ConfigMap's name."""
    name = str(doc["metadata"]["name"])  # type: ignore[index]
    return name[len("xray-daemon-config") :] if name.startswith("xray-daemon-config-") else ""


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_rendered_manifest_is_valid(kustomization: str, version: str, tmp_path: Path) -> None:
    path = tmp_path / "rendered.yaml"
    path.write_text(rendered_text(kustomization))
    done = _validate(path, version)
    assert done.returncode == 0, f"{kustomization} against {version}:\n{done.stdout}{done.stderr}"


def test_the_validator_refuses_an_unknown_field(tmp_path: Path) -> None:
    """The check above can fail: a misspelt field in the DaemonSet is refused in strict mode."""
    daemonset = find(render("base"), "DaemonSet", "xray-daemon")
    daemonset["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {"privileged": False}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(daemonset))
    done = _validate(path, VERSIONS[-1])
    assert done.returncode != 0
    assert "securityContxt" in done.stdout + done.stderr
