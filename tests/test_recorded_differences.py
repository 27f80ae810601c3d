"""Differences from AWS's recorded answers, fixed (docs/api.md NV, LF, OOS): name
validation on every operation that takes a name, ListSecrets filter matching, the
omitted empty Description, and operations secret-ledger does not serve."""

from __future__ import annotations

from typing import Any

import pytest
from ledger_helpers import INVALID_NAME_MESSAGE, Harness, case, token

from ledger.domain import ApiCall

INVALID_NAMES = ["Inv Name", "a*b", "what?", "x]", "back\\slash"]

SECRET_ID_OPERATIONS: list[tuple[str, dict[str, Any]]] = [
    ("DescribeSecret", {}),
    ("GetSecretValue", {}),
    ("ListSecretVersionIds", {}),
    ("PutSecretValue", {"ClientRequestToken": token(9), "SecretString": "v"}),
    ("UpdateSecret", {"Description": "d"}),
    ("UpdateSecretVersionStage", {"VersionStage": "X", "MoveToVersionId": token(9)}),
    ("DeleteSecret", {}),
    ("DeleteSecret", {"ForceDeleteWithoutRecovery": True}),
    ("RestoreSecret", {}),
    ("ReplicateSecretToRegions", {"AddReplicaRegions": [{"Region": "eu-west-1"}]}),
]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_an_invalid_name_is_a_validation_error_everywhere(manager: Harness, name: str) -> None:
    """NV-1, NV-2; a forced delete of an invalid name no longer succeeds (NV-3)."""
    manager.assert_refused("CreateSecret", {"Name": name}, "ValidationException")
    for operation, members in SECRET_ID_OPERATIONS:
        with case(f"{operation} {members}"):
            manager.assert_refused(
                operation,
                {"SecretId": name, **members},
                "ValidationException",
                INVALID_NAME_MESSAGE,
            )


def test_batch_get_reports_an_invalid_name_per_secret(manager: Harness) -> None:
    manager.create("good", token(1), "value")
    answer = manager.call("BatchGetSecretValue", SecretIdList=["good", "Inv Name"])
    assert [value["Name"] for value in answer["SecretValues"]] == ["good"]
    assert answer["Errors"] == [
        {
            "SecretId": "Inv Name",
            "ErrorCode": "ValidationException",
            "Message": INVALID_NAME_MESSAGE,
        }
    ]


def test_arns_and_names_with_an_exclamation_mark_are_looked_up(manager: Harness) -> None:
    """NV-2: ``!`` is in AWS's message (names such as rds!db-1), so it is not found."""
    for secret_id in ["rds!db-1", "arn:aws:secretsmanager:us-east-1:123456789012:secret:a b"]:
        with case(secret_id):
            manager.assert_refused(
                "DescribeSecret", {"SecretId": secret_id}, "ResourceNotFoundException"
            )
    manager.assert_refused("CreateSecret", {"Name": "rds!db-1"}, "ValidationException")


def test_a_forced_delete_of_a_valid_unknown_name_still_succeeds(manager: Harness) -> None:
    answer = manager.call("DeleteSecret", SecretId="never/was", ForceDeleteWithoutRecovery=True)
    assert answer["Name"] == "never/was"


@pytest.mark.parametrize("operation", ["CreateSecret", "UpdateSecret"])
def test_an_empty_description_is_omitted(manager: Harness, operation: str) -> None:
    """NV-4: CreateSecret and UpdateSecret with Description "" leave no Description."""
    if operation == "CreateSecret":
        manager.create("described", Description="")
    else:
        manager.create("described", Description="first")
        manager.call("UpdateSecret", SecretId="described", Description="")
    assert "Description" not in manager.call("DescribeSecret", SecretId="described")
    [entry] = manager.call("ListSecrets")["SecretList"]
    assert "Description" not in entry


# ListSecrets filters (docs/api.md LF)


@pytest.fixture
def described(manager: Harness) -> Harness:
    secrets = [
        ("one", "a secret", [{"Key": "Env", "Value": "prod"}]),
        ("two", "an secret", [{"Key": "env", "Value": "Prod-EU"}]),
        ("three", "asecret", []),
        ("/root/four", "Description of my secret", [{"Key": "owner", "Value": "team-a"}]),
        ("AppBeta", "other text", []),
        ("COMPANYthings", None, []),
    ]
    for name, description, tags in secrets:
        members: dict[str, Any] = {"Tags": tags}
        if description is not None:
            members["Description"] = description
        manager.create(name, **members)
    return manager


FILTER_CASES: list[tuple[str, list[dict[str, Any]], list[str]]] = [
    ("LF-4 words are prefixes", [{"Key": "description", "Values": ["a secret"]}], ["one", "two"]),
    (
        "LF-4 any order, any case",
        [{"Key": "description", "Values": ["My Description"]}],
        ["/root/four"],
    ),
    (
        "LF-4 a word prefix",
        [{"Key": "description", "Values": ["sec"]}],
        ["/root/four", "one", "two"],
    ),
    (
        "LF-2 negated description",
        [{"Key": "description", "Values": ["!a"]}],
        ["/root/four", "AppBeta", "COMPANYthings"],
    ),
    (
        "LF-2 nothing negated away",
        [{"Key": "description", "Values": ["!c"]}],
        ["/root/four", "AppBeta", "COMPANYthings", "one", "three", "two"],
    ),
    ("LF-3 name prefix, not words", [{"Key": "name", "Values": ["testing1 one"]}], []),
    ("LF-3 name prefix", [{"Key": "name", "Values": ["/"]}], ["/root/four"]),
    (
        "LF-2 negated name",
        [{"Key": "name", "Values": ["!/"]}],
        ["AppBeta", "COMPANYthings", "one", "three", "two"],
    ),
    ("LF-5 tag key prefix, case-sensitive", [{"Key": "tag-key", "Values": ["En"]}], ["one"]),
    ("LF-5 tag value prefix", [{"Key": "tag-value", "Values": ["Prod"]}], ["two"]),
    ("LF-6 all: case changes", [{"Key": "all", "Values": ["beta"]}], ["AppBeta"]),
    ("LF-6 all: upper-case runs", [{"Key": "all", "Values": ["ythings"]}], ["COMPANYthings"]),
    ("LF-6 all: whole words too", [{"Key": "all", "Values": ["appbeta"]}], ["AppBeta"]),
    ("LF-6 all: punctuation splits", [{"Key": "all", "Values": ["eu"]}], ["two"]),
    ("LF-6 all: tags and descriptions", [{"Key": "all", "Values": ["TEAM"]}], ["/root/four"]),
    ("LF-6 all: punctuation alone", [{"Key": "all", "Values": ["/"]}], []),
    (
        "LF-1 values are alternatives",
        [{"Key": "name", "Values": ["one", "two"]}],
        ["one", "two"],
    ),
    (
        "filters are combined with and",
        [{"Key": "description", "Values": ["secret"]}, {"Key": "tag-key", "Values": ["env"]}],
        ["two"],
    ),
]


def test_filters_match_as_aws_does(described: Harness) -> None:
    for title, filters, expected in FILTER_CASES:
        with case(title):
            listing = described.call("ListSecrets", Filters=filters)["SecretList"]
            assert sorted(entry["Name"] for entry in listing) == expected


# Operations out of scope (OOS-1) and unknown ones (OOS-2)


@pytest.mark.parametrize(
    ("operation", "members"),
    [
        ("ReplicateSecretToRegions", {"AddReplicaRegions": [{"Region": "eu-west-1"}]}),
        ("RemoveRegionsFromReplication", {"RemoveReplicaRegions": ["eu-west-1"]}),
        ("StopReplicationToReplica", {}),
    ],
)
def test_replication_is_refused_and_recorded(
    manager: Harness, operation: str, members: dict[str, Any]
) -> None:
    arn = manager.create("replicated", token(1), "value")["ARN"]
    error = manager.assert_refused(
        operation, {"SecretId": "replicated", **members}, "InvalidRequestException", None, [arn]
    )
    assert error.message == (
        f"secret-ledger does not support {operation}: "
        "it keeps every secret in one region, with no replicas."
    )


def test_replication_requests_are_validated_first(manager: Harness) -> None:
    manager.assert_refused("RemoveRegionsFromReplication", {"SecretId": "x"}, "ValidationException")


def test_an_unknown_operation_is_recorded(manager: Harness) -> None:
    log_before = manager.log_length()
    error = manager.assert_refused(
        "Frobnicate", {"SecretId": "x", "SecretString": "v"}, "UnknownOperationException"
    )
    [record] = manager.events_since(log_before)
    assert isinstance(record, ApiCall.Recorded)
    assert record.error_message == error.message
    assert record.request["parameters"] == {}
