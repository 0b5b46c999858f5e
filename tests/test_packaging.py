"""The release path the docs show: ``python -m build`` makes an sdist and a wheel that ``twine check``
accepts, and the wheel holds what an installed k8sxray needs (the viewer, the demo, the type marker).

The build runs on a copy of the source tree, so that it leaves nothing in the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_LEFT_OUT = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", "*.so", ".*_cache", ".hypothesis", ".venv"
)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source") / "k8sxray"
    shutil.copytree(ROOT, source, ignore=_LEFT_OUT)
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_twine_accepts_the_sdist_and_the_wheel(dist: Path) -> None:
    files = sorted(p.name for p in dist.iterdir())
    assert sorted(name.rsplit(".", 1)[-1] for name in files) == ["gz", "whl"], files
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2


def test_the_wheel_holds_the_viewer_the_demo_and_the_type_marker(dist: Path) -> None:
    [wheel] = dist.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "k8sxray/py.typed",
        "k8sxray/console/static/index.html",
        "k8sxray/demo/service_a.py",
        "k8sxray/demo/service_b.py",
        "k8sxray/demo/runner.py",
        "k8sxray/run/_bootstrap/sitecustomize.py",
    ):
        assert needed in names, needed
    assert not any(name.startswith(("tests/", "examples/", "benchmarks/")) for name in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Provides-Extra: demo" in text
    assert "python -m k8sxray demo" in text  # the README is the project's description on PyPI


def test_the_c_modules_sources_go_in_the_sdist_their_builds_and_stubs_in_the_wheel(dist: Path) -> None:
    """Both optional C modules: ``k8sxray._native`` and ``k8sxray.otlp._fast``."""
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    names = set(zipfile.ZipFile(wheel).namelist())
    with tarfile.open(sdist) as archive:
        sources = {name.split("/", 1)[-1] for name in archive.getnames()}
    for module in ("k8sxray/_native", "k8sxray/otlp/_fast"):
        assert f"{module}.c" in sources, module
        assert f"{module}.pyi" in names, module
        assert f"{module}.c" not in names, module
        if shutil.which("cc") or shutil.which("gcc"):  # built where a C compiler is (optional=True)
            assert any(n.startswith(module + ".") and n.endswith(".so") for n in names), (module, names)


def test_the_wheel_installs_and_runs(dist: Path, tmp_path: Path) -> None:
    """``pip install dist/k8sxray-*.whl`` in a fresh environment (its dependencies taken from this one)."""
    [wheel] = dist.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    code = (
        "import k8sxray, k8sxray.console.web as web, pathlib; "
        "print(k8sxray.__file__); print(k8sxray.__version__); "
        "print((pathlib.Path(web.__file__).parent / 'static' / 'index.html').is_file())"
    )
    done = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    where, version, viewer = done.stdout.split()
    assert Path(where).is_relative_to(venv), where  # the wheel's copy, not this checkout's
    assert version == wheel.name.split("-")[1]
    assert viewer == "True"
    usage = subprocess.run(
        [str(venv / "bin" / "k8sxray"), "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert usage.returncode == 0, usage.stderr
    assert "--duration" in usage.stdout
