"""The launcher itself: PYTHONPATH, exec, errors, and chaining an existing sitecustomize."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from k8sxray.run import _boot, _launcher
from k8sxray.run.__main__ import main


def test_child_environ_puts_the_bootstrap_first_once() -> None:
    env = _launcher.child_environ({"PYTHONPATH": f"/a{os.pathsep}{_launcher.BOOTSTRAP_DIR}{os.pathsep}/b"})
    assert env["PYTHONPATH"].split(os.pathsep) == [_launcher.BOOTSTRAP_DIR, "/a", "/b"]
    assert _launcher.child_environ({})["PYTHONPATH"] == _launcher.BOOTSTRAP_DIR
    assert (Path(_launcher.BOOTSTRAP_DIR) / "sitecustomize.py").is_file()


def test_usage_and_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: k8sxray-run" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "usage: k8sxray-run" in capsys.readouterr().out
    assert main(["--", "k8sxray-no-such-command-xyz"]) == 127
    assert "k8sxray-no-such-command-xyz: command not found" in capsys.readouterr().err


def test_disabled_integrations_are_validated() -> None:
    assert _boot.disabled_integrations({"K8SXRAY_DISABLED_INTEGRATIONS": " Requests, httpx "}) == {
        "requests",
        "httpx",
    }
    assert _boot.disabled_integrations({"K8SXRAY_DISABLED_INTEGRATIONS": "none"}) == frozenset()
    with pytest.raises(ValueError, match="unknown name"):
        _boot.disabled_integrations({"K8SXRAY_DISABLED_INTEGRATIONS": "requests,nope"})


def test_validate_checks_settings_without_dns() -> None:
    assert _boot.validate({"AWS_XRAY_DAEMON_ADDRESS": "xray.invalid:2000"}) is True  # parsed, not resolved
    assert _boot.validate({"AWS_XRAY_SDK_ENABLED": "FALSE"}) is False
    with pytest.raises(ValueError, match="K8SXRAY_SAMPLING_RATE"):
        _boot.validate({"K8SXRAY_SAMPLING_RATE": "2"})
    with pytest.raises(ValueError, match="AWS_XRAY_DAEMON_ADDRESS"):
        _boot.validate({"AWS_XRAY_DAEMON_ADDRESS": "udp:only"})


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k8sxray.run", "python", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_existing_sitecustomize_still_runs(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text("import os\nos.environ['THEIR_SITECUSTOMIZE'] = 'ran'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY", "K8SXRAY"))}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    code = (
        "import os, sys, sitecustomize\n"
        "print(os.environ.get('THEIR_SITECUSTOMIZE'), sitecustomize.__file__)\n"
        "print('k8sxray.run._boot' in sys.modules, sys.modules['k8sxray.run._boot']._started)\n"
        "import requests\n"
        "from k8sxray.integrations import requests as r\n"
        "print(r.is_instrumented())\n"
    )
    result = _run(code, env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"ran {tmp_path / 'sitecustomize.py'}"
    assert lines[1] == "True True"
    assert lines[2] == "True"  # instrumented when the app imported requests
    assert result.stderr == ""


def test_a_broken_sitecustomize_does_not_stop_tracing(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text("raise RuntimeError('theirs is broken')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY", "K8SXRAY"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    result = _run("import sys; print(sys.modules['k8sxray.run._boot']._started)", env)
    assert result.returncode == 0
    assert result.stdout.strip() == "True"
    assert "theirs is broken" in result.stderr


def test_nothing_is_imported_or_started_before_the_app_needs_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_XRAY", "K8SXRAY"))}
    code = (
        "import sys, threading\n"
        "from k8sxray import _config\n"
        "heavy = [m for m in ('requests', 'httpx', 'botocore', 'flask', 'gunicorn') if m in sys.modules]\n"
        "print(heavy, threading.active_count(), _config.is_configured())\n"
    )
    result = _run(code, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] 1 False"  # no library imported, no thread, not configured
