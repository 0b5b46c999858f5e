"""``python -m k8sxray``: see :mod:`k8sxray._cli`."""

from __future__ import annotations

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
