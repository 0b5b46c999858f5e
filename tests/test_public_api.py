"""The public API: one screen, sorted, complete, and importing it does nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import k8sxray
import k8sxray.testing


def test_all_is_sorted_and_complete() -> None:
    assert list(k8sxray.__all__) == sorted(k8sxray.__all__)
    assert set(k8sxray.__all__) == set(k8sxray._HOMES)  # every public name has a home to load from
    public = {
        n for n in dir(k8sxray) if not n.startswith("_") and not isinstance(getattr(k8sxray, n), type(sys))
    }
    public -= {"annotations"}  # from __future__ import annotations
    assert public == set(k8sxray.__all__)
    for name in k8sxray.__all__:
        assert getattr(k8sxray, name).__doc__, name


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'instrumnet'"):
        k8sxray.instrumnet  # type: ignore[attr-defined]  # noqa: B018  # the typo is the test


def test_testing_module_exports() -> None:
    assert sorted(k8sxray.testing.__all__) == ["InMemoryEmitter", "capture_segments"]


def test_import_has_no_side_effects() -> None:
    code = textwrap.dedent(
        """
        import os, socket, threading
        opened = []
        real_socket = socket.socket
        class Spy(real_socket):
            def __init__(self, *a, **k):
                opened.append(a)
                super().__init__(*a, **k)
        socket.socket = Spy
        import k8sxray, k8sxray.testing, k8sxray.integrations.wsgi, k8sxray.integrations.asgi
        import k8sxray.integrations.xray_sdk
        assert threading.active_count() == 1, threading.enumerate()
        assert opened == [], opened
        assert not k8sxray._config.is_configured()
        print("clean")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "clean", done.stderr


def test_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    assert k8sxray.__version__ == version("k8sxray")
    assert "__version__" not in k8sxray.__all__  # a dunder, beside the API rather than in it
    assert "__version__" in dir(k8sxray)


def test_version_is_read_only_when_asked_for() -> None:
    code = "import k8sxray; print('__version__' in vars(k8sxray), k8sxray.__version__ != '')"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.split() == ["False", "True"], done.stderr
