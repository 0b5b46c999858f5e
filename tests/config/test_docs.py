"""The configuration reference documents every variable k8sxray reads."""

from __future__ import annotations

import re
from pathlib import Path

from k8sxray import _env

ROOT = Path(__file__).resolve().parents[2]


def test_every_variable_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    names = [value for key, value in vars(_env).items() if key.startswith(("AWS_XRAY_", "K8SXRAY_"))]
    assert len(names) >= 13
    missing = [name for name in names if f"`{name}`" not in doc]
    assert missing == []


def test_every_k8sxray_variable_is_a_constant_in_env() -> None:
    """Our own variables are named in one module; code elsewhere refers to its constants."""
    defined = {value for key, value in vars(_env).items() if key.startswith("K8SXRAY_")}
    used: set[str] = set()
    for path in (ROOT / "k8sxray").rglob("*.py"):
        used.update(re.findall(r"\bK8SXRAY_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8")))
    assert used, "the scan found no variable names at all"
    assert sorted(used - defined) == []
