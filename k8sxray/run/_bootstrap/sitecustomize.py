"""k8sxray-run's bootstrap, imported by ``site`` at the start of every Python process.

It first runs the ``sitecustomize`` this one shadows (if any), then turns tracing on.
It never stops the app from starting: on failure it writes one line and the app runs
untraced. ``AWS_XRAY_SDK_ENABLED=false`` makes it do nothing.
"""

from __future__ import annotations


def _chain() -> None:
    """Run the next ``sitecustomize`` on ``sys.path``, as if this one did not exist."""
    import importlib.machinery
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.stderr.write(f"Error in sitecustomize ({spec.origin}): {exc!r}\n")


def _start() -> None:
    import os
    import sys

    if os.environ.get("AWS_XRAY_SDK_ENABLED", "").strip().lower() in {"0", "false", "no", "off"}:
        return
    try:
        from k8sxray.run import _boot
    except Exception as exc:
        sys.stderr.write(f"k8sxray-run: tracing is off: cannot import k8sxray ({exc!r})\n")
        return
    _boot.start()


try:
    _chain()
finally:
    _start()
