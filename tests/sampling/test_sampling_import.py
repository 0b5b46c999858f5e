"""Importing the sampling package starts nothing and loads nothing heavy."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_import_has_no_side_effects() -> None:
    code = textwrap.dedent(
        """
        import sys, threading
        import k8sxray.sampling
        assert threading.active_count() == 1, threading.enumerate()
        heavy = {"k8sxray.sampling.central", "k8sxray.sampling.api"}
        loaded = heavy & set(sys.modules)
        assert not loaded, loaded
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
