"""k8sxray: AWS X-Ray tracing for Python services on Kubernetes.

import k8sxray
app = k8sxray.instrument(app)   # Flask, Django, FastAPI/Starlette, any WSGI/ASGI app

The names below load on first use, so that ``python -m k8sxray.daemon`` (which needs
none of the library) starts without it. ``k8sxray.__version__`` is the installed distribution's
version (``importlib.metadata``), read on first use too.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from ._config import Config, configure
    from ._errors import ContextMissingError
    from ._instrument import instrument, uninstrument
    from ._recorder import annotate, flush, put_metadata, subsegment, trace_header

    __version__: str

__all__ = [
    "Config",
    "ContextMissingError",
    "annotate",
    "configure",
    "flush",
    "instrument",
    "put_metadata",
    "subsegment",
    "trace_header",
    "uninstrument",
]

_HOMES = {
    "Config": "._config",
    "configure": "._config",
    "ContextMissingError": "._errors",
    "instrument": "._instrument",
    "uninstrument": "._instrument",
    "annotate": "._recorder",
    "flush": "._recorder",
    "put_metadata": "._recorder",
    "subsegment": "._recorder",
    "trace_header": "._recorder",
}


def __getattr__(name: str) -> _typing.Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version(__name__)
        except PackageNotFoundError:  # imported from a source tree that was never installed
            value = "0+unknown"
        globals()[name] = value
        return value
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'k8sxray' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
