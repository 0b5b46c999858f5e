"""The current trace entity, kept in a ``contextvars.ContextVar``.

It follows asyncio tasks, ``asyncio.gather`` and threads run with
``contextvars.copy_context()``; nothing is shared between concurrent requests.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import TypeAlias

    from ._segment import Entity, UnsampledTrace

    Current: TypeAlias = "Entity | UnsampledTrace | None"

current_entity: ContextVar[Current] = ContextVar("k8sxray_entity", default=None)

get = current_entity.get
set_ = current_entity.set


def restore(token: Token[Current] | None, previous: Current = None) -> None:
    """Undo a ``set``; when the token belongs to another context, set the value it replaced
    (*previous* when there is no token) instead."""
    if token is not None:
        try:
            current_entity.reset(token)
            return
        except ValueError:  # ended in another context (a task or thread): best effort
            previous = replaced(token)
    current_entity.set(previous)


def replaced(token: Token[Current]) -> Current:
    """The value that the ``set`` which returned *token* replaced."""
    old = token.old_value
    return None if old is Token.MISSING else old
