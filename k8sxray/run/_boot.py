"""What the bootstrap does in every process: integrations on, app hooks installed.

Nothing is configured, no thread started, no socket opened and no DNS asked here: each
process (each gunicorn/uvicorn worker) configures itself from the environment on its
first traced request, so preforking servers emit from every worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from .. import _env
from ..integrations import INTEGRATIONS

log = logging.getLogger(__name__)

_started = False


def disabled_integrations(environ: Mapping[str, str]) -> frozenset[str]:
    """``K8SXRAY_DISABLED_INTEGRATIONS`` as names; ``ValueError`` naming any unknown one."""
    raw = environ.get(_env.K8SXRAY_DISABLED_INTEGRATIONS, "")
    names = {name.strip().lower() for name in raw.split(",")} - {"", "none"}
    unknown = sorted(names - set(INTEGRATIONS))
    if unknown:
        raise ValueError(
            f"{_env.K8SXRAY_DISABLED_INTEGRATIONS}={raw!r}: unknown name(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(INTEGRATIONS))}"
        )
    return frozenset(names)


def start(environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on for this process; never raises. ``False`` when tracing stays off."""
    global _started
    if _started:
        return True
    env = os.environ if environ is None else environ
    try:
        if env.get(_env.AWS_XRAY_SDK_ENABLED, "").strip().lower() in {"0", "false", "no", "off"}:
            return False
        from .. import _autoinstrument
        from . import _apps

        _autoinstrument.instrument_when_imported(disabled_integrations(env))
        _apps.install()
    except Exception as exc:
        # one line, through logging's last-resort handler unless the app configures logging
        log.warning("k8sxray-run: tracing is off, the bootstrap failed: %s", exc)
        return False
    _started = True
    return True
