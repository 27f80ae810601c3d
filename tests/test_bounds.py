"""Bounds on request bodies and on audit records (rules IL-1 to IL-4 of docs/limits.md):
the decoder refuses what Python's parser or the transcoder cannot take, before they
meet it, and an audit record stays encodable whatever a caller passes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ledger.api import SecretsManagerApi, audited_parameters
from ledger.application import Secrets
from ledger.bounds import (
    AUDIT_DEPTH_MAX,
    AUDIT_ITEMS_MAX,
    AUDIT_STRING_LENGTH_MAX,
    INTEGER_MAX,
    INTEGER_MIN,
    NESTING_DEPTH_MAX,
    bounded,
    nesting_exceeds,
)
from ledger.domain import ApiCall
from ledger.errors import SecretsManagerError, SerializationException
from ledger.http import decode_body
from ledger.storage import MsgpackTranscoder


def nested_tags(depth: int) -> dict[str, Any]:
    """A CreateSecret request whose Tags nest ``depth`` levels of lists and objects."""
    inner: Any = {"Key": "k", "Value": "v"}
    for level in range(depth - 2):
        inner = [inner] if level % 2 else {"Tags": inner}
    return {"Name": "deep", "Tags": [inner]}


def document(depth: int) -> bytes:
    text = "[" * (depth - 1) + "]" * (depth - 1)
    return ('{"Padding": ' + text + "}").encode()


def test_the_nesting_bound_is_exact() -> None:
    assert not nesting_exceeds(document(NESTING_DEPTH_MAX))
    assert nesting_exceeds(document(NESTING_DEPTH_MAX + 1))
    assert decode_body(document(NESTING_DEPTH_MAX)) == {
        "Padding": json.loads(document(NESTING_DEPTH_MAX))["Padding"]
    }
    with pytest.raises(SerializationException, match="deeper than 16"):
        decode_body(document(NESTING_DEPTH_MAX + 1))


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
        b'{"a": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\\"}',
        b'{"a": [' + b"[], " * 5000 + b"[]]}",
    ],
    ids=["brackets in a string", "escaped quotes", "wide, not deep"],
)
def test_brackets_inside_strings_and_wide_documents_are_not_nesting(body: bytes) -> None:
    assert not nesting_exceeds(body)
    assert isinstance(decode_body(body), dict)


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"a": ' + b"[" * 600 + b'"x', json.dumps(nested_tags(600)).encode()],
    ids=["unclosed", "unclosed before a string", "600-deep Tags"],
)
def test_deep_or_unbalanced_bodies_are_refused_before_parsing(body: bytes) -> None:
    assert nesting_exceeds(body)
    with pytest.raises(SerializationException):
        decode_body(body)


@pytest.mark.parametrize(
    "number",
    [
        str(2**64),
        str(2**70),
        str(INTEGER_MAX + 1),
        str(INTEGER_MIN - 1),
        "1e400",
        "-1e400",
        "9" * 5000,
    ],
)
def test_numbers_out_of_range_are_serialization_errors(number: str) -> None:
    with pytest.raises(SerializationException):
        decode_body(f'{{"MaxResults": {number}}}'.encode())


def test_numbers_at_the_limits_are_kept() -> None:
    body = f'{{"A": {INTEGER_MAX}, "B": {INTEGER_MIN}, "C": 1.5e300}}'.encode()
    assert decode_body(body) == {"A": INTEGER_MAX, "B": INTEGER_MIN, "C": 1.5e300}


def test_bounded_keeps_every_value_within_the_bounds_unchanged() -> None:
    valid = {
        "Filters": [{"Key": "name", "Values": ["a" * 512] * 10}] * 10,
        "MaxResults": INTEGER_MAX,
        "Description": "d" * AUDIT_STRING_LENGTH_MAX,
        "Flag": True,
        "Nothing": None,
        "Ratio": 0.5,
    }
    assert bounded(valid) == valid


def test_bounded_cuts_and_says_what_it_cut() -> None:
    deep: Any = "bottom"
    for _ in range(AUDIT_DEPTH_MAX + 5):
        deep = [deep]
    kept = bounded(
        {
            "big": 2**70,
            "long": "x" * (AUDIT_STRING_LENGTH_MAX + 10),
            "many": list(range(AUDIT_ITEMS_MAX + 3)),
            "deep": deep,
            "surrogate": "a\udc80b",
            "odd": {1, 2},
        }
    )
    assert kept["big"] == "[not kept: an integer of 71 bits, out of the 64-bit range]"
    assert kept["long"].endswith("[not kept: 10 more characters]")
    assert kept["many"][-1] == "[not kept: 3 more items]"
    assert len(kept["many"]) == AUDIT_ITEMS_MAX + 1
    assert "nested deeper than 8" in json.dumps(kept["deep"])
    assert kept["surrogate"] == "a?b"
    assert kept["odd"] == "[not kept: a value of type set]"
    MsgpackTranscoder().encode(kept)


@pytest.mark.parametrize(
    ("operation", "request_members"),
    [
        ("ListSecrets", {"MaxResults": 2**70}),
        ("ListSecrets", {"Filters": [{"Key": "name", "Values": ["v"] * 100_000}]}),
        ("CreateSecret", nested_tags(600)),
        ("CreateSecret", {"Name": "n" * 1_000_000}),
        ("CreateSecret", {"Name": "x", "Description": "lone \ud800 surrogate"}),
        ("DeleteSecret", {"SecretId": "x", "RecoveryWindowInDays": -(2**80)}),
    ],
    ids=["2^70", "long list", "600 deep", "long name", "surrogate", "negative 2^80"],
)
def test_a_python_caller_cannot_make_an_unencodable_record(
    operation: str, request_members: dict[str, Any]
) -> None:
    """No decoder in front: the API still answers an AWS-shaped error and records it."""
    secrets = Secrets("memory:")
    try:
        with pytest.raises(SecretsManagerError) as raised:
            SecretsManagerApi(secrets).call(operation, request_members)
        assert raised.value.http_status == 400
        [record] = recorded(secrets)
        assert record.error_code == raised.value.code
        assert len(MsgpackTranscoder().encode(record.request)) < 64 * 1024
        assert len(record.error_message or "") <= 2 * AUDIT_STRING_LENGTH_MAX
    finally:
        secrets.close()


def recorded(secrets: Secrets) -> list[ApiCall.Recorded]:
    notifications = secrets.recorder.select_notifications(
        start=None, limit=100, topics=[ApiCall.Recorded.TOPIC]
    )
    return [secrets.mapper.to_domain_event(notification) for notification in notifications]


def test_audited_parameters_of_a_valid_request_are_as_cloudtrail_logs_them() -> None:
    request = {"SecretId": "s", "VersionStages": ["AWSCURRENT"], "SecretString": "never"}
    assert audited_parameters("PutSecretValue", request) == {
        "secretId": "s",
        "versionStages": ["AWSCURRENT"],
    }
