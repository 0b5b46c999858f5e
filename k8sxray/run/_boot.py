"""What the bootstrap does in every process: integrations on, app hooks installed.

The configuration is only validated here (a bad setting turns tracing off with one line);
nothing is configured, no thread started, no socket opened and no DNS asked: each process
(each gunicorn/uvicorn worker) configures itself when the server loads the app or on its
first traced call, so preforking servers emit from every worker.
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


def validate(environ: Mapping[str, str]) -> bool:
    """Check every setting as ``configure()`` will (``ValueError`` if bad); ``False`` when disabled.

    The daemon address is only parsed: looking its host up (DNS) is left to each process.
    """
    from .._addresses import parse_daemon_address
    from .._config import build

    address = environ.get(_env.AWS_XRAY_DAEMON_ADDRESS, "").strip()
    if address:
        try:
            parse_daemon_address(address)
        except ValueError as exc:
            raise ValueError(f"{_env.AWS_XRAY_DAEMON_ADDRESS}={address!r}: {exc}") from None
    literal = {**environ, _env.AWS_XRAY_DAEMON_ADDRESS: "127.0.0.1:2000"}  # no discovery, no DNS
    return build(environ=literal).enabled


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
        from . import _apps, _uwsgi

        disabled = disabled_integrations(env)
        if not validate(env):
            return False
        _autoinstrument.instrument_when_imported(disabled)
        _apps.install()
        _uwsgi.install()
    except Exception as exc:
        # one line, through logging's last-resort handler unless the app configures logging
        log.warning("k8sxray-run: tracing is off, the bootstrap failed: %s", exc)
        return False
    _started = True
    return True
