"""Entry point: ``python -m k8sxray.daemon [flags]``."""

from __future__ import annotations

from k8sxray.daemon.server import main

if __name__ == "__main__":
    raise SystemExit(main())
