"""Checks a response dict against botocore's own X-Ray model (the output shapes botocore never validates).

botocore validates what a client sends, not what a service answers, so this walks the model itself:
every key must be a member of its structure, every value of its member's type (``bool`` is not a
number; timestamps are epoch seconds, as restJson carries them), every required member present.
"""

from __future__ import annotations

import functools
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

_NUMBER = (int, float)


@functools.cache
def xray_model() -> ServiceModel:
    """botocore's bundled X-Ray service model."""
    return botocore.session.get_session().get_service_model("xray")


def output_shape(operation: str) -> Shape:
    """The output shape of an X-Ray operation, e.g. ``GetServiceGraph``."""
    op: OperationModel = xray_model().operation_model(operation)
    assert op.output_shape is not None, operation
    return op.output_shape


def shape(name: str) -> Shape:
    """A named shape of the X-Ray model, e.g. ``TraceSummary``."""
    return xray_model().shape_for(name)


def problems(value: Any, model: Shape, path: str = "$") -> list[str]:  # noqa: PLR0911, PLR0912 - a branch per shape type
    """Every way ``value`` differs from ``model``, each naming where (empty when it fits)."""
    kind = model.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected an object for {model.name}, got {type(value).__name__}"]
        found: list[str] = []
        members = model.members
        for key, item in value.items():
            if key not in members:
                found.append(f"{path}: {key!r} is not a member of {model.name} (members: {sorted(members)})")
            else:
                found.extend(problems(item, members[key], f"{path}.{key}"))
        found.extend(
            f"{path}: required member {req!r} of {model.name} is missing"
            for req in model.metadata.get("required", [])
            if req not in value
        )
        return found
    if kind == "list":
        if not isinstance(value, list):
            return [f"{path}: expected a list for {model.name}, got {type(value).__name__}"]
        return [p for i, item in enumerate(value) for p in problems(item, model.member, f"{path}[{i}]")]
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected an object for {model.name}, got {type(value).__name__}"]
        found = []
        for key, item in value.items():
            found.extend(problems(key, model.key, f"{path}<key {key!r}>"))
            found.extend(problems(item, model.value, f"{path}[{key!r}]"))
        return found
    if kind == "string":
        if not isinstance(value, str):
            return [f"{path}: expected a string, got {type(value).__name__}"]
        enum = model.metadata.get("enum")
        if enum and value not in enum:
            return [f"{path}: {value!r} is not one of {enum}"]
        return []
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{path}: expected an integer, got {type(value).__name__}"]
        return []
    if kind in ("double", "float", "timestamp"):
        if isinstance(value, bool) or not isinstance(value, _NUMBER):
            return [f"{path}: expected a number ({kind}), got {type(value).__name__}"]
        return []
    if kind == "boolean":
        if not isinstance(value, bool):
            return [f"{path}: expected a boolean, got {type(value).__name__}"]
        return []
    return [f"{path}: shape type {kind} is not handled by this checker"]


def assert_fits(value: Any, model: Shape | str) -> None:
    """Fail with every problem listed unless ``value`` fits ``model`` (a Shape or a shape's name)."""
    found = problems(value, shape(model) if isinstance(model, str) else model)
    assert not found, "\n".join(found)


def assert_output(operation: str, value: Any) -> None:
    """Fail unless ``value`` is a valid response body of the X-Ray operation ``operation``."""
    assert_fits(value, output_shape(operation))
