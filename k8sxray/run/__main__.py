"""``k8sxray-run <command...>`` / ``python -m k8sxray.run <command...>``."""

from __future__ import annotations

import sys

from ._launcher import launch


def main(argv: list[str] | None = None) -> int:
    """Run *argv* (default: the command line) traced; returns only when it cannot start."""
    return launch(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
