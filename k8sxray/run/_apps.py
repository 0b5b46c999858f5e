"""Wrap the web app where the server loads it, with :func:`k8sxray.instrument`.

Hooks run when the server's module is imported (nothing is imported here):

- gunicorn: ``gunicorn.util.import_app`` (``gunicorn app:app``, any worker class);
- uvicorn: ``uvicorn.config.Config.load`` (``uvicorn app:app``, ``uvicorn.run(app)``);
- werkzeug: ``run_simple`` (``flask run``, ``app.run()``);
- wsgiref: ``make_server``; Django: ``runserver``'s ``basehttp.run``.

An app is wrapped once, even when two hooks see it (gunicorn with uvicorn's worker).
"""

from __future__ import annotations

import logging
from typing import Any

import wrapt

from .. import _guard

log = logging.getLogger(__name__)

_wrapped: dict[int, Any] = {}
"""id -> app for every app we produced (kept alive, so ids stay unique)."""


def instrument_app(app: Any) -> Any:
    """*app* traced; *app* unchanged when it is ours already or when wrapping fails."""
    if id(app) in _wrapped or _traced_already(app):
        return app
    try:
        import k8sxray

        traced = k8sxray.instrument(app)
    except TypeError as exc:  # an app k8sxray cannot trace (aiohttp's): served as it is
        _guard.warn_once("k8sxray-run: untraceable app", "%s", exc)
        return app
    except Exception:
        _guard.internal_error("k8sxray-run: wrapping the app")
        return app
    _wrapped[id(traced)] = traced
    return traced


def _traced_already(app: Any) -> bool:
    """Whether the app's own code called ``k8sxray.instrument`` (the marks it leaves)."""
    try:
        marks = vars(app) if hasattr(app, "__dict__") else {}
        return bool(getattr(app, "_k8sxray_traced", False) or marks.get("_k8sxray_instrumented"))
    except Exception:
        return False


def _app_argument(index: int, name: str) -> Any:
    """A wrapper that instruments the positional/keyword argument holding the app."""

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if len(args) > index:
            args = (*args[:index], instrument_app(args[index]), *args[index + 1 :])
        elif name in kwargs:
            kwargs[name] = instrument_app(kwargs[name])
        return wrapped(*args, **kwargs)

    return wrapper


def _returned_app(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return instrument_app(wrapped(*args, **kwargs))


def _uvicorn_load(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = wrapped(*args, **kwargs)
    # the app as given (gunicorn's UvicornWorker passes one we wrapped already)
    if id(instance.app) not in _wrapped:
        instance.loaded_app = instrument_app(instance.loaded_app)
    return result


def _patch(module: str, path: str, wrapper: Any) -> Any:
    def hook(_module: Any) -> None:
        try:
            wrapt.wrap_function_wrapper(module, path, wrapper)
        except Exception:
            _guard.internal_error(f"k8sxray-run: hooking {module}.{path}")

    return hook


_HOOKS: list[tuple[str, str, str, Any]] = [
    ("gunicorn.util", "gunicorn.util", "import_app", _returned_app),
    ("uvicorn.config", "uvicorn.config", "Config.load", _uvicorn_load),
    ("werkzeug", "werkzeug.serving", "run_simple", _app_argument(2, "application")),
    ("werkzeug", "werkzeug", "run_simple", _app_argument(2, "application")),
    ("wsgiref.simple_server", "wsgiref.simple_server", "make_server", _app_argument(2, "app")),
    ("django.core.servers.basehttp", "django.core.servers.basehttp", "run", _app_argument(2, "wsgi_handler")),
]
"""(module whose import triggers the hook, patched module, attribute, wrapper)."""

_installed = False


def install() -> None:
    """Register the import hooks (once)."""
    global _installed
    if _installed:
        return
    _installed = True
    for trigger, module, path, wrapper in _HOOKS:
        wrapt.register_post_import_hook(_patch(module, path, wrapper), trigger)
