"""``instrument(app)``: find out what kind of app it is and trace it once.

Flask apps are traced in place (their ``wsgi_app``), Starlette/FastAPI apps in place
(their middleware stack, outermost, so error pages are traced too); Django's
handlers and bare WSGI/ASGI callables are wrapped. The return value is always what
to serve. Every call also enables the outgoing-call integrations not disabled (idempotent).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from . import _config, _guard, _recorder

log = logging.getLogger(__name__)

_MARK = "_k8sxray_instrumented"


def instrument(app: Any, **options: Any) -> Any:
    """Trace *app* (Flask, Django, FastAPI/Starlette, or any WSGI/ASGI callable); returns what to serve.

    Keyword *options* are passed to :func:`k8sxray.configure` (otherwise k8sxray is
    configured from the environment if it was not configured yet): a bad option raises
    ``ValueError``; a bad environment variable is logged and *app* is returned as it is.
    """
    if options:
        _config.configure(**options)
    if _recorder.state().config.problem is not None:  # configured now, not on the first request
        return app  # a bad environment variable, logged: the app runs untraced
    _enable_integrations()
    if getattr(app, "_k8sxray_traced", False) or _MARK in getattr(app, "__dict__", {}):
        _guard.warn_once("instrument.twice", "k8sxray: instrument() called twice on the same app; ignored")
        return app
    kind = kind_of(app)
    if kind == "flask":
        from .integrations.wsgi import wrap as wrap_wsgi

        original = app.wsgi_app
        app.wsgi_app = wrap_wsgi(original)
        _flask_signals(app, connect=True)
        setattr(app, _MARK, original)
        return app
    if kind == "starlette":
        from .integrations.asgi import wrap as wrap_asgi

        build = app.build_middleware_stack

        def build_traced() -> Any:
            return wrap_asgi(build())

        app.build_middleware_stack = build_traced
        app.middleware_stack = None  # rebuilt, traced, on the next request
        setattr(app, _MARK, build)
        return app
    if kind == "asgi":
        from .integrations.asgi import wrap as wrap_asgi

        _django_signals(connect=True)
        return wrap_asgi(app)
    from .integrations.wsgi import wrap as wrap_wsgi

    _django_signals(connect=True)
    return wrap_wsgi(app)


def uninstrument(app: Any) -> Any:
    """Undo :func:`instrument` where possible; returns the untraced app."""
    if getattr(app, "_k8sxray_traced", False):
        return app.__wrapped__
    original = getattr(app, "__dict__", {}).get(_MARK)
    if original is None:
        return app
    kind = kind_of(app)
    if kind == "flask":
        app.wsgi_app = original
        _flask_signals(app, connect=False)
    elif kind == "starlette":
        del app.build_middleware_stack
        app.middleware_stack = None
    delattr(app, _MARK)
    return app


def kind_of(app: Any) -> str:
    """``flask``, ``starlette``, ``asgi`` or ``wsgi``."""
    for cls in type(app).__mro__:
        module = cls.__module__
        if module.startswith("flask.") and cls.__name__ == "Flask":
            return "flask"
        if module.startswith("starlette.") and cls.__name__ == "Starlette":
            return "starlette"
        if module.startswith("django.") and cls.__name__ == "ASGIHandler":
            return "asgi"
    if inspect.iscoroutinefunction(app):  # also functools.partial of one
        return "asgi"
    call = getattr(type(app), "__call__", None)  # noqa: B004  # an instance with an async __call__
    if call is not None and inspect.iscoroutinefunction(call):
        return "asgi"
    return "wsgi"


def _record_exception(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    """Flask's/Django's ``got_request_exception``: the framework turned it into a 500 page."""
    try:
        entity = _recorder.current()
        exc = exception if exception is not None else _current_exception()
        if exc is not None and isinstance(entity, (_recorder.Segment, _recorder.Subsegment)):
            entity.segment.add_exception(exc)
    except Exception:
        _guard.internal_error("instrument.exception_signal")


def _current_exception() -> BaseException | None:
    import sys

    return sys.exc_info()[1]


def _flask_signals(app: Any, *, connect: bool) -> None:
    try:
        from flask import got_request_exception

        if connect:
            got_request_exception.connect(_record_exception, app, weak=False)
        else:
            got_request_exception.disconnect(_record_exception, app)
    except Exception:
        _guard.internal_error("instrument.flask_signal")


def _django_signals(*, connect: bool) -> None:
    try:
        import sys

        if "django" not in sys.modules:
            return
        from django.core.signals import got_request_exception  # type: ignore[import-untyped]

        if connect:
            got_request_exception.connect(_record_exception, dispatch_uid="k8sxray")
        else:
            got_request_exception.disconnect(dispatch_uid="k8sxray")
    except Exception:
        _guard.internal_error("instrument.django_signal")


def _enable_integrations() -> None:
    """Enable every outgoing-call integration not disabled, as soon as its library is imported.

    Nothing is imported here: a library the app already imported is instrumented now, one it
    imports later on import (so an app that never uses botocore or the official SDK pays
    nothing for them).
    """
    from ._autoinstrument import instrument_when_imported

    instrument_when_imported(_recorder.state().config.disabled_integrations)
