"""The error ``AWS_XRAY_CONTEXT_MISSING=RUNTIME_ERROR`` raises.

:class:`ContextMissingError` is what code catches (``except k8sxray.ContextMissingError``). When
the official SDK is in use (imported), what is raised is also the SDK's
``SegmentNotFoundException``, so code written for the SDK keeps catching it. The SDK is never
imported here: importing it takes a few hundred milliseconds and creates its recorder.
"""

from __future__ import annotations

import sys

__all__ = ["ContextMissingError", "context_missing_error"]

_SDK_ERRORS = "aws_xray_sdk.core.exceptions.exceptions"


class ContextMissingError(RuntimeError):
    """A traced call was made outside any traced request while ``AWS_XRAY_CONTEXT_MISSING`` is
    ``RUNTIME_ERROR``. When the official SDK is in use, also its ``SegmentNotFoundException``."""


_raised: type[ContextMissingError] | None = None
"""The class raised once the SDK is in use: ours and the SDK's."""


def context_missing_error(message: str) -> ContextMissingError:
    """The error to raise, with *message*."""
    global _raised
    if _raised is None:
        sdk = sys.modules.get(_SDK_ERRORS)
        base = getattr(sdk, "SegmentNotFoundException", None)
        if not (isinstance(base, type) and issubclass(base, Exception)):
            return ContextMissingError(message)  # the SDK is not in use: nobody catches its error

        class SegmentNotFoundError(ContextMissingError, base):  # type: ignore[misc,valid-type]
            """:class:`ContextMissingError`, and the official SDK's ``SegmentNotFoundException``."""

        _raised = SegmentNotFoundError
    return _raised(message)
