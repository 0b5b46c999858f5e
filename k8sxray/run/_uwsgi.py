"""uWSGI: trace the app it loads, and renew k8sxray's threads in every worker.

uWSGI loads the app from C and reads the callable straight out of the module's
namespace, with no Python call in between that could be wrapped:

- ``--wsgi-file``/``--file`` (and ``--mount`` of a ``.py`` file) run the file as a module
  named ``uwsgi_file_<path>`` (``PyImport_ExecCodeModule``, which calls importlib's
  ``_fix_up_module`` just before running it);
- ``--module``/``-w``/``--wsgi`` import the module (``module:callable``, or
  ``module:factory()``).

So, for the time the app's module runs its top-level code (and only then), a trace
function waits for that code to end and puts the traced app in the namespace under the
callable's name (``--callable``, default ``application``), before uWSGI reads it. The
same happens in the master (the default: workers are forked with the app loaded) and in
each worker (``--lazy-apps``).

uWSGI forks its workers in C: Python's at-fork hooks (``os.register_at_fork``) do not
run there unless ``--py-call-uwsgi-fork-hooks`` is set, so every worker would draw the
same "random" trace and segment ids and keep the master's dead threads. k8sxray's own
renewals (ids, emitter, sampling poller, discovery refresher) then run from
``uwsgi.post_fork_hook`` (chained to any hook already set, such as ``uwsgidecorators``'),
or at once in a ``--lazy-apps`` worker.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import wrapt

from .. import _forks, _guard
from . import _apps

log = logging.getLogger(__name__)

FILE_MODULE_PREFIX = "uwsgi_file_"
"""The prefix of the module name uWSGI gives a ``--wsgi-file``."""

_FORK_HOOK_OPTIONS = ("py-call-uwsgi-fork-hooks", "py-call-osafterfork")
"""uWSGI options under which Python's own at-fork hooks run in workers."""

_Tracer = Callable[[FrameType, str, Any], Any]

_armed = False
_module_targets: dict[str, str] | None = None  # module name -> callable, read from uwsgi.opt
_fork_hook_set = False


def install() -> None:
    """Arm the app hooks when this process is (or becomes) uWSGI; cheap and silent otherwise."""
    if os.path.basename(sys.executable).startswith("uwsgi"):  # the uwsgi binary embeds Python
        arm()
    else:  # pyuwsgi: the ``uwsgi`` command is Python importing pyuwsgi
        wrapt.register_post_import_hook(lambda _module: arm(), "pyuwsgi")


def arm() -> None:
    """Watch for uWSGI loading the app: a file (importlib's ``_fix_up_module``) or a module (a finder)."""
    global _armed
    if _armed:
        return
    _armed = True
    try:
        import importlib

        external: Any = importlib.import_module("_frozen_importlib_external")  # importlib's own
        original = external._fix_up_module

        def fix_up_module(ns: dict[str, Any], name: str, *args: Any, **kwargs: Any) -> Any:
            result = original(ns, name, *args, **kwargs)
            if name.startswith(FILE_MODULE_PREFIX) and "uwsgi" in sys.modules:
                _watch(lambda frame: frame.f_globals is ns, _callable_option())
            return result

        external._fix_up_module = fix_up_module
        sys.meta_path.insert(0, _ModuleFinder())
    except Exception:
        _guard.internal_error("k8sxray-run: hooking uWSGI's app loader")


class _ModuleFinder:
    """Finds nothing: notices the import of the module uWSGI loads (``--module``) and watches it run."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if "uwsgi" not in sys.modules:
            return
        targets = _targets()
        if name in targets and _runs_python(name, path):
            _watch(lambda frame: frame.f_globals.get("__name__") == name, targets[name])

    def invalidate_caches(self) -> None:
        pass


def _runs_python(name: str, path: Any) -> bool:
    """Whether importing *name* will run its Python code (else the watch would never end)."""
    from importlib.machinery import PathFinder, SourceFileLoader, SourcelessFileLoader

    spec = PathFinder.find_spec(name, path)
    return spec is not None and isinstance(spec.loader, (SourceFileLoader, SourcelessFileLoader))


def _uwsgi_module() -> Any:
    """The module uWSGI makes for its Python API (present once uWSGI runs)."""
    return sys.modules["uwsgi"]


def _option(name: str) -> list[str]:
    """uWSGI's option *name* as given (``uwsgi.opt``: bytes, a list of them, or True)."""
    value = _uwsgi_module().opt.get(name)
    values = value if isinstance(value, list) else [] if value is None else [value]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _callable_option() -> str:
    names = _option("callable")
    return names[-1] if names else "application"


def _targets() -> dict[str, str]:
    """Module name -> callable for every ``--module``/``--wsgi`` (read once)."""
    global _module_targets
    if _module_targets is None:
        targets: dict[str, str] = {}
        try:
            for spec in _option("module") + _option("wsgi"):
                module, _, name = spec.partition(":")
                targets[module] = name or _callable_option()
        except Exception:
            _guard.internal_error("k8sxray-run: reading uWSGI's options")
        _module_targets = targets
    return _module_targets


def _watch(is_target: Callable[[FrameType], bool], callable_name: str) -> None:
    """Trace calls until *is_target*'s module frame starts; trace that frame until it returns."""
    if sys.gettrace() is not None:  # a debugger or coverage owns tracing: leave it alone
        _guard.warn_once(
            "uwsgi.trace",
            "k8sxray-run: the uWSGI app is not traced: a trace function (debugger, coverage) is active",
        )
        return

    def on_return(frame: FrameType, event: str, arg: Any) -> _Tracer | None:
        if event == "return":
            sys.settrace(None)
            _loaded(frame.f_globals, callable_name)
            return None
        return on_return

    def on_call(frame: FrameType, event: str, arg: Any) -> _Tracer | None:
        if event == "call" and frame.f_code.co_name == "<module>" and is_target(frame):
            frame.f_trace_lines = False
            return on_return
        return None

    sys.settrace(on_call)


def _loaded(namespace: dict[str, Any], callable_name: str) -> None:
    """The app's module ran: put the traced app where uWSGI will read it."""
    try:
        if callable_name.endswith("()"):  # a factory uWSGI calls for the app
            factory = namespace.get(callable_name[:-2])
            if callable(factory):
                namespace[callable_name[:-2]] = _traced_factory(factory)
        else:
            app = namespace.get(callable_name)
            if callable(app):
                namespace[callable_name] = _served(_apps.instrument_app(app))
        _renew_in_workers()
    except Exception:
        _guard.internal_error("k8sxray-run: wrapping the uWSGI app")


def _traced_factory(factory: Callable[[], Any]) -> Callable[[], Any]:
    def make_app() -> Any:
        return _served(_apps.instrument_app(factory()))

    return make_app


def _served(app: Any) -> Any:
    """*app*, made to send its segments itself when no Python thread runs between requests.

    Without ``--enable-threads`` (the default of older uWSGI releases such as 2.0.21;
    2.0.30 always runs threads), a worker holds the GIL while it waits for the next
    request, so the emitter's flusher thread never runs then: a request's segment would
    wait for the next request.
    """
    if _uwsgi_module().has_threads:
        return app
    log.debug("k8sxray-run: uWSGI runs without Python threads: segments are sent after each response")
    if callable(getattr(app, "wsgi_app", None)):  # Flask: keep the app object, flush in place
        app.wsgi_app = _flushing(app.wsgi_app)
        return app
    return _flushing(app)


def _flushing(app: Any) -> Any:
    def flushing_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            body = app(environ, start_response)
        except BaseException:
            _flush()
            raise
        return _FlushOnClose(body)

    return flushing_app


class _FlushOnClose:
    """A response body that sends the request's segment (queued when the body closes) at once."""

    __slots__ = ("_body",)

    def __init__(self, body: Any) -> None:
        self._body = body

    def __iter__(self) -> Any:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            _flush()


def _flush() -> None:
    from .. import _recorder

    _recorder.flush(0.0)


def _renew_in_workers() -> None:
    """Make every worker renew k8sxray's per-process state (uWSGI forks without Python's hooks)."""
    global _fork_hook_set
    if any(_option(name) for name in _FORK_HOOK_OPTIONS):
        return  # Python's own at-fork hooks run in uWSGI's workers already
    uwsgi = _uwsgi_module()
    if uwsgi.worker_id() > 0:  # --lazy-apps: this worker was forked before loading the app
        renew()
        return
    if _fork_hook_set:
        return
    _fork_hook_set = True
    previous = getattr(uwsgi, "post_fork_hook", None)

    def post_fork_hook() -> None:
        renew()
        if previous is not None:
            previous()

    uwsgi.post_fork_hook = post_fork_hook


def renew() -> None:
    """What Python's at-fork hooks would do for k8sxray in a child: fresh ids, threads, sockets."""
    try:
        _forks.renew_in_child()  # ids, the emitter, the sampling poller, the discovery refresher
    except Exception:
        _guard.internal_error("k8sxray-run: renewing after uWSGI's fork")
