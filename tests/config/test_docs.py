"""The configuration reference documents every variable k8sxray reads."""

from __future__ import annotations

from pathlib import Path

from k8sxray import _env

ROOT = Path(__file__).resolve().parents[2]


def test_every_variable_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    names = [value for key, value in vars(_env).items() if key.startswith(("AWS_XRAY_", "K8SXRAY_"))]
    assert len(names) >= 13
    missing = [name for name in names if f"`{name}`" not in doc]
    assert missing == []
