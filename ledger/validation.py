"""Request shape validation against the Secrets Manager service model shipped with botocore.

Lengths, list sizes, enums, patterns and required members come from the model,
so they match AWS exactly. Violations raise ``ValidationException`` in AWS's
standard form; a member of the wrong JSON type raises ``SerializationException``.
Sensitive members (SecretString, SecretBinary, RotationToken) are never echoed.
Choices (docs/decisions.md): SecretString length is measured in UTF-8 bytes;
members the model does not know are ignored, as AWS JSON services do.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import botocore.session
from botocore.model import ListShape, OperationModel, ServiceModel, Shape, StructureShape

from ledger.errors import SerializationException, ValidationException

SERVICE_NAME = "secretsmanager"
ERRORS_REPORTED_MAX = 10

# secret-ledger's own operations, absent from the AWS model: each borrows its members'
# shapes from an AWS operation, and requires all of them.
LOCAL_OPERATION_MEMBERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "DestroySecretVersion": ("GetSecretValue", ("SecretId", "VersionId")),
}


@functools.cache
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model(SERVICE_NAME)


def operation_model(operation: str) -> OperationModel:
    return service_model().operation_model(operation)


def validate_request(operation: str, request: Mapping[str, Any]) -> None:
    """Raise the AWS-shaped error for the first kind of violation found."""
    problems: list[str] = []
    if operation in LOCAL_OPERATION_MEMBERS:
        _check_local_operation(operation, request, problems)
    else:
        input_shape = operation_model(operation).input_shape
        if input_shape is None:
            return
        _check_structure(input_shape, request, "", problems)
    if problems:
        shown = problems[:ERRORS_REPORTED_MAX]
        count = len(problems)
        noun = "error" if count == 1 else "errors"
        raise ValidationException(f"{count} validation {noun} detected: " + "; ".join(shown))


def _path(parent: str, member: str) -> str:
    name = member[:1].lower() + member[1:]
    return f"{parent}.{name}" if parent else name


def _check_structure(shape: StructureShape, value: Any, path: str, problems: list[str]) -> None:
    if not isinstance(value, Mapping):
        raise SerializationException(f"Expected an object at '{path or 'request'}'.")
    for member in shape.required_members:
        if value.get(member) is None:
            problems.append(
                f"Value null at '{_path(path, member)}' failed to satisfy "
                "constraint: Member must not be null"
            )
    for member, member_shape in shape.members.items():
        member_value = value.get(member)
        if member_value is not None:
            _check_value(member_shape, member_value, _path(path, member), problems)


def _check_local_operation(operation: str, request: Any, problems: list[str]) -> None:
    if not isinstance(request, Mapping):
        raise SerializationException("Expected an object at 'request'.")
    borrowed_from, members = LOCAL_OPERATION_MEMBERS[operation]
    input_shape = operation_model(borrowed_from).input_shape
    assert input_shape is not None, f"{borrowed_from} has members to borrow"
    for member in members:
        value = request.get(member)
        if value is None:
            problems.append(
                f"Value null at '{_path('', member)}' failed to satisfy "
                "constraint: Member must not be null"
            )
        else:
            _check_value(input_shape.members[member], value, _path("", member), problems)


def _check_value(shape: Shape, value: Any, path: str, problems: list[str]) -> None:
    type_name = shape.type_name
    if type_name == "structure":
        assert isinstance(shape, StructureShape)
        _check_structure(shape, value, path, problems)
    elif type_name == "list":
        assert isinstance(shape, ListShape)
        _check_list(shape, value, path, problems)
    elif type_name == "string":
        _check_string(shape, value, path, problems)
    elif type_name == "blob":
        if not isinstance(value, bytes | bytearray):
            raise SerializationException(f"Expected binary data (base64 on the wire) at '{path}'.")
        _check_length(shape, len(value), None, path, problems)
    elif type_name in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SerializationException(f"Expected a whole number at '{path}'.")
        _check_range(shape, value, path, problems)
    elif type_name == "boolean" and not isinstance(value, bool):
        raise SerializationException(f"Expected true or false at '{path}'.")


def _shown(shape: Shape, value: str) -> str | None:
    return None if shape.metadata.get("sensitive") else value


def _check_string(shape: Shape, value: Any, path: str, problems: list[str]) -> None:
    if not isinstance(value, str):
        raise SerializationException(f"Expected a string at '{path}'.")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: it could be neither stored nor answered
            raise SerializationException(f"Expected text (UTF-8) at '{path}'.") from None
    sensitive = bool(shape.metadata.get("sensitive"))
    length = len(value.encode("utf-8")) if sensitive else len(value)
    _check_length(shape, length, _shown(shape, value), path, problems)
    enum = shape.enum
    if enum and value not in enum:
        problems.append(
            _problem(
                _shown(shape, value),
                path,
                f"Member must satisfy enum value set: [{', '.join(enum)}]",
            )
        )
    pattern = shape.metadata.get("pattern")
    if pattern and not re.search(pattern, value):
        problems.append(
            _problem(
                _shown(shape, value),
                path,
                f"Member must satisfy regular expression pattern: {pattern}",
            )
        )


def _check_list(shape: ListShape, value: Any, path: str, problems: list[str]) -> None:
    if not isinstance(value, list | tuple):
        raise SerializationException(f"Expected a list at '{path}'.")
    _check_length(shape, len(value), None, path, problems)
    for index, item in enumerate(value, start=1):
        if item is None:
            problems.append(_problem(None, f"{path}.{index}.member", "Member must not be null"))
        else:
            _check_value(shape.member, item, f"{path}.{index}.member", problems)


def _check_length(
    shape: Shape, length: int, shown: str | None, path: str, problems: list[str]
) -> None:
    minimum = shape.metadata.get("min")
    maximum = shape.metadata.get("max")
    if minimum is not None and length < minimum:
        problems.append(
            _problem(shown, path, f"Member must have length greater than or equal to {minimum}")
        )
    if maximum is not None and length > maximum:
        problems.append(
            _problem(shown, path, f"Member must have length less than or equal to {maximum}")
        )


def _check_range(shape: Shape, value: int, path: str, problems: list[str]) -> None:
    minimum = shape.metadata.get("min")
    maximum = shape.metadata.get("max")
    if minimum is not None and value < minimum:
        problems.append(
            _problem(str(value), path, f"Member must have value greater than or equal to {minimum}")
        )
    if maximum is not None and value > maximum:
        problems.append(
            _problem(str(value), path, f"Member must have value less than or equal to {maximum}")
        )


def _problem(shown: str | None, path: str, constraint: str) -> str:
    where = f"Value at '{path}'" if shown is None else f"Value '{shown}' at '{path}'"
    return f"{where} failed to satisfy constraint: {constraint}"
