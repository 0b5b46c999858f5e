"""The default service name: what names this service when nothing sets one.

In order: on Kubernetes, the workload of the Pod named by ``POD_NAME``
(``checkout-7d9f8b6c5-x2k4p`` is ``checkout``); the program's name (``python checkout.py``,
a console script ``checkout``, ``python -m checkout``); under a server or launcher that says
nothing about the service, the app it serves, by its top-level package (``gunicorn
checkout.wsgi:app``, ``uvicorn checkout.main:app``, ``flask --app checkout run``, uWSGI's
``--module``/``--wsgi-file``, Django's ``DJANGO_SETTINGS_MODULE`` under ``manage.py``);
else ``python-service``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import NamedTuple

from . import _env
from .plugins._workload import from_pod_name

FALLBACK = "python-service"


class DefaultName(NamedTuple):
    """A default service name, why it was chosen, and whether Kubernetes told it."""

    name: str
    detail: str
    from_pod: bool = False


_SERVERS = frozenset({"gunicorn", "uvicorn", "hypercorn", "granian", "daphne"})
"""Servers whose command line names the app as ``module:attribute``."""
_DJANGO = frozenset({"manage", "django-admin"})
_OTHER_LAUNCHERS = frozenset({"", "-c", "-m", "__main__", "pytest", "uwsgi", "flask", "k8sxray-run"})
_PYTHON = re.compile(r"python[\d.]*[dmt]?")
_APP_SPEC = re.compile(r"([A-Za-z_]\w*)(?:\.[A-Za-z_]\w*)*:[A-Za-z_]")
"""``package.module:attribute`` (``0.0.0.0:8000`` and ``unix:/run/app.sock`` are not)."""
_NAME = re.compile(r"[\w.-]{1,200}")
"""A default name is taken only when it is a plain word: it must never fail ``configure()``."""


def default_service_name(
    environ: Mapping[str, str],
    argv: Sequence[str] | None = None,
    main: ModuleType | None = None,
    uwsgi_options: Mapping[str, object] | None = None,
) -> DefaultName:
    """The default name and why it was chosen.

    *argv*, *main* and *uwsgi_options* default to this process's ``sys.argv``, ``__main__``
    module and ``uwsgi.opt`` (when running under uWSGI).
    """
    pod = environ.get(_env.POD_NAME, "").strip()
    if environ.get(_env.KUBERNETES_SERVICE_HOST) and pod:
        workload = from_pod_name(pod)
        name = workload.name if workload else pod
        if _NAME.fullmatch(name):
            return DefaultName(name, f"workload of {_env.POD_NAME}={pod}", from_pod=True)
    args = list(sys.argv if argv is None else argv)
    program = _program(args, sys.modules.get("__main__") if main is None else main)
    launcher = program in _SERVERS or program in _DJANGO or program in _OTHER_LAUNCHERS
    if not launcher and not _PYTHON.fullmatch(program) and _NAME.fullmatch(program):
        return DefaultName(program, "the program's name")
    options = _uwsgi_options() if uwsgi_options is None else uwsgi_options
    found = _served_app(program, args[1:], environ, options)
    if found is not None and _NAME.fullmatch(found.name):
        return found
    return DefaultName(FALLBACK, "nothing names the service (set AWS_XRAY_TRACING_NAME)")


def _program(argv: Sequence[str], main: ModuleType | None) -> str:
    name = os.path.basename(argv[0]).removesuffix(".py") if argv and argv[0] else ""
    if name == "__main__":  # python -m package: argv[0] is package/__main__.py
        spec = getattr(main, "__spec__", None)
        module = getattr(spec, "name", "") or ""
        name = module.removesuffix(".__main__").partition(".")[0] or name
    return name


def _served_app(
    program: str, args: Sequence[str], environ: Mapping[str, str], uwsgi_options: Mapping[str, object]
) -> DefaultName | None:
    """The top-level package of the app a server or launcher runs, and where it was read."""
    if program in _SERVERS:
        for arg in args:
            match = _APP_SPEC.match(arg)
            if match and not arg.startswith("-"):
                return DefaultName(match.group(1), f"the app {program} serves ({arg})")
    elif program == "flask":
        spec = _option(args, ("--app", "-A")) or environ.get(_env.FLASK_APP, "").strip()
        if spec:
            return DefaultName(_top_level(spec), f"the app flask runs ({spec})")
    elif program in _DJANGO:
        settings = environ.get(_env.DJANGO_SETTINGS_MODULE, "").strip()
        if settings:
            return DefaultName(_top_level(settings), f"{_env.DJANGO_SETTINGS_MODULE}={settings}")
    for key in ("module", "wsgi", "w", "wsgi-file", "file"):
        value = _text(uwsgi_options.get(key))
        if value:
            return DefaultName(_top_level(value), f"the app uWSGI serves (--{key} {value})")
    return None


def _option(args: Sequence[str], names: tuple[str, ...]) -> str:
    """The value of the first of *names* in *args* (``--name value`` or ``--name=value``)."""
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1].strip()
            if arg.startswith(f"{name}="):
                return arg.partition("=")[2].strip()
    return ""


def _top_level(spec: str) -> str:
    """``checkout.wsgi:app`` and ``checkout/wsgi.py`` are ``checkout``; ``/srv/wsgi.py`` is ``wsgi``."""
    spec = spec.partition(":")[0].partition("(")[0].strip()
    if not (spec.endswith(".py") or "/" in spec):
        return spec.partition(".")[0]
    path = spec.removesuffix(".py")
    parts = [p for p in path.split("/") if p not in {"", "."}]
    if os.path.isabs(path) or not parts or parts[0] == "..":
        return os.path.basename(path)
    return parts[0]


def _uwsgi_options() -> Mapping[str, object]:
    uwsgi = sys.modules.get("uwsgi")
    options = getattr(uwsgi, "opt", None)
    return options if isinstance(options, Mapping) else {}


def _text(value: object) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.strip() if isinstance(value, str) else ""
