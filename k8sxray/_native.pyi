"""Type stubs for k8sxray's optional C module (see _native.c)."""

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

def hooks(
    *,
    recorder_globals: dict[str, Any],
    config_globals: dict[str, Any],
    context_var: ContextVar[Any],
    unsampled_type: type,
    random_bits: Callable[[int], int],
    clock: Callable[[], float],
    streaming_body: Callable[[Any, Iterable[bytes]], Iterable[bytes]],
    failed: Callable[[str, BaseException], None],
) -> None: ...

class Entry:
    __wrapped__: Callable[..., Iterable[bytes]]
    _k8sxray_traced: bool
    def __init__(
        self, app: Callable[..., Iterable[bytes]], traced: Callable[..., Iterable[bytes]]
    ) -> None: ...
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]: ...
