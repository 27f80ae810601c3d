"""CreateSecret, UpdateSecret, DeleteSecret and RestoreSecret (docs/semantics.md
§8 and §9), including the recovery window and its lazy expiry."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from ledger_helpers import (
    AWSCURRENT,
    AWSPREVIOUS,
    BOTH_VALUES_MESSAGE,
    INVALID_NAME_MESSAGE,
    MARKED_FOR_DELETION_MESSAGE,
    NOT_FOUND_MESSAGE,
    START,
    TOKEN_REQUIRED_MESSAGE,
    Harness,
    case,
    open_oracle,
    outcome_of,
    token,
    token_in_use_message,
)

from ledger.domain import SERVICE_PRINCIPAL, ApiCall, Secret, SecretName
from ledger.errors import SecretsManagerError

NAME = "payments/stripe"
ARN_PREFIX = "arn:aws:secretsmanager:us-east-1:123456789012:secret:"
SCHEDULED_NAME_MESSAGE = (
    "You can't create this secret because a secret with this name is already scheduled "
    "for deletion."
)
WINDOW_MESSAGE = "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive)."
WINDOW_AND_FORCE_MESSAGE = (
    "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays."
)


def arn_pattern(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(ARN_PREFIX + name) + "-[A-Za-z0-9]{6}")


# --------------------------------------------------------------------------------------
# CreateSecret (section 9)
# --------------------------------------------------------------------------------------


def test_create_with_a_value_makes_one_current_version(manager: Harness) -> None:
    response = manager.create(NAME, token(1), "sk_live_1")
    assert set(response) == {"ARN", "Name", "VersionId"}
    assert arn_pattern(NAME).fullmatch(response["ARN"])
    assert (response["Name"], response["VersionId"]) == (NAME, token(1))
    assert manager.labels(NAME) == {token(1): [AWSCURRENT]}
    assert manager.current_value(NAME) == "sk_live_1"


def test_create_with_a_binary_value(manager: Harness) -> None:
    manager.create(NAME, token(1), b"\x00\xff")
    assert manager.current_value(NAME) == b"\x00\xff"


def test_create_without_a_value_makes_no_version(manager: Harness) -> None:
    response = manager.create(NAME)
    assert set(response) == {"ARN", "Name"}
    assert manager.labels(NAME) == {}
    manager.assert_refused(
        "GetSecretValue",
        {"SecretId": NAME},
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret value for staging label: AWSCURRENT",
        [response["ARN"]],
    )


def test_create_appends_the_secret_its_name_claim_and_its_first_version(manager: Harness) -> None:
    manager.create(NAME, token(1), "x", Description="card processor")
    assert sorted(manager.event_types_since(0)) == [
        "Secret.Created",
        "Secret.LabelMoved",
        "Secret.VersionCreated",
        "SecretName.Claimed",
        "SecretName.Registered",
    ]
    [created] = [event for event in manager.events_since(0) if isinstance(event, Secret.Created)]
    assert created.request["operation"] == "CreateSecret"
    assert created.request["parameters"]["description"] == "card processor"
    assert "secretString" not in created.request["parameters"]


def test_names_may_use_every_allowed_character(manager: Harness) -> None:
    name = "team/app_1+prod=eu.west@db-main"
    assert manager.create(name)["Name"] == name
    longest = "n" * 512
    assert manager.create(longest)["Name"] == longest


def test_an_invalid_name_is_a_validation_error(manager: Harness) -> None:
    for name in ("has space", "colon:name", "star*", "accent-é", "bang!"):
        with case(name):
            manager.assert_refused(
                "CreateSecret", {"Name": name}, "ValidationException", INVALID_NAME_MESSAGE
            )


def test_a_name_over_512_characters_is_a_validation_error(manager: Harness) -> None:
    name = "n" * 513
    manager.assert_refused(
        "CreateSecret",
        {"Name": name},
        "ValidationException",
        f"1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: "
        "Member must have length less than or equal to 512",
    )


def test_a_description_over_2048_characters_is_a_validation_error(manager: Harness) -> None:
    assert manager.create(NAME, Description="d" * 2048)["Name"] == NAME
    description = "d" * 2049
    manager.assert_refused(
        "CreateSecret",
        {"Name": "other", "Description": description},
        "ValidationException",
        f"1 validation error detected: Value '{description}' at 'description' failed to "
        "satisfy constraint: Member must have length less than or equal to 2048",
    )


def test_an_existing_name_is_refused(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "x")["ARN"]
    message = f"The operation failed because the secret {NAME} already exists."
    for request in (
        {"Name": NAME, "ClientRequestToken": token(2), "SecretString": "y"},
        {"Name": NAME},
        {"Name": NAME, "ClientRequestToken": token(1)},
    ):
        manager.assert_refused("CreateSecret", request, "ResourceExistsException", message, [arn])


def test_the_same_token_and_value_replays_the_create(manager: Harness) -> None:
    first = manager.create(NAME, token(1), "x", Description="d")
    stream_before = manager.stream_length(first["ARN"])
    log_before = manager.log_length()
    assert manager.create(NAME, token(1), "x", Description="d") == first
    assert manager.stream_length(first["ARN"]) == stream_before
    [record] = manager.events_since(log_before)
    assert isinstance(record, ApiCall.Recorded)
    assert record.error_code is None


def test_the_same_token_with_a_different_value_is_refused(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "x")["ARN"]
    manager.assert_refused(
        "CreateSecret",
        {"Name": NAME, "ClientRequestToken": token(1), "SecretString": "y"},
        "ResourceExistsException",
        token_in_use_message(token(1), arn),
        [arn],
    )


@pytest.mark.parametrize("length", [31, 65])
def test_a_create_token_of_the_wrong_length_is_a_validation_error(
    manager: Harness, length: int
) -> None:
    bound = "greater than or equal to 32" if length < 32 else "less than or equal to 64"
    manager.assert_refused(
        "CreateSecret",
        {"Name": NAME, "ClientRequestToken": "t" * length, "SecretString": "x"},
        "ValidationException",
        f"1 validation error detected: Value '{'t' * length}' at 'clientRequestToken' failed "
        f"to satisfy constraint: Member must have length {bound}",
    )


def test_a_raw_create_with_a_value_needs_a_token(manager: Harness) -> None:
    manager.assert_refused(
        "CreateSecret",
        {"Name": NAME, "SecretString": "x"},
        "InvalidRequestException",
        TOKEN_REQUIRED_MESSAGE,
    )


def test_a_raw_create_without_a_value_needs_no_token(manager: Harness) -> None:
    assert manager.call("CreateSecret", Name=NAME)["Name"] == NAME


def test_create_with_both_values_is_refused(manager: Harness) -> None:
    manager.assert_refused(
        "CreateSecret",
        {"Name": NAME, "ClientRequestToken": token(1), "SecretString": "x", "SecretBinary": b"x"},
        "InvalidParameterException",
        BOTH_VALUES_MESSAGE,
    )


def test_unsupported_members_are_rejected(manager: Harness) -> None:
    unsupported: list[tuple[str, Any]] = [
        ("AddReplicaRegions", [{"Region": "eu-west-1"}]),
        ("ForceOverwriteReplicaSecret", True),
        ("Type", "aws-managed"),
    ]
    for member, value in unsupported:
        with case(member):
            manager.assert_refused(
                "CreateSecret",
                {"Name": NAME, member: value},
                "InvalidParameterException",
                f"secret-ledger does not support {member}: it keeps no replicas or types.",
            )


def test_the_name_of_a_scheduled_secret_is_refused(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "x")["ARN"]
    manager.call("DeleteSecret", SecretId=NAME)
    manager.assert_refused(
        "CreateSecret",
        {"Name": NAME, "ClientRequestToken": token(2), "SecretString": "y"},
        "InvalidRequestException",
        SCHEDULED_NAME_MESSAGE,
        [arn],
    )


def test_each_creation_of_a_name_gets_a_new_arn(manager: Harness) -> None:
    arns = set()
    for _ in range(3):
        arns.add(manager.create(NAME)["ARN"])
        manager.call("DeleteSecret", SecretId=NAME, ForceDeleteWithoutRecovery=True)
    assert len(arns) == 3
    assert all(arn_pattern(NAME).fullmatch(arn) for arn in arns)


# --------------------------------------------------------------------------------------
# UpdateSecret
# --------------------------------------------------------------------------------------


def test_update_with_a_value_adds_a_current_version(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "one")["ARN"]
    response = manager.call(
        "UpdateSecret", SecretId=NAME, ClientRequestToken=token(2), SecretString="two"
    )
    assert response == {"ARN": arn, "Name": NAME, "VersionId": token(2)}
    assert manager.labels(NAME) == {token(2): [AWSCURRENT], token(1): [AWSPREVIOUS]}


def test_update_of_the_description_adds_no_version(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "one", Description="old")["ARN"]
    response = manager.call("UpdateSecret", SecretId=NAME, Description="new")
    assert response == {"ARN": arn, "Name": NAME}
    assert manager.call("DescribeSecret", SecretId=NAME)["Description"] == "new"
    assert manager.labels(NAME) == {token(1): [AWSCURRENT]}


def test_update_replays_like_put(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "one")["ARN"]
    stream_before = manager.stream_length(arn)
    manager.call("UpdateSecret", SecretId=NAME, ClientRequestToken=token(1), SecretString="one")
    assert manager.stream_length(arn) == stream_before
    manager.assert_refused(
        "UpdateSecret",
        {"SecretId": NAME, "ClientRequestToken": token(1), "SecretString": "changed"},
        "ResourceExistsException",
        token_in_use_message(token(1), arn),
        [arn],
    )


UPDATE_REFUSALS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "no token",
        {"SecretId": NAME, "SecretString": "x"},
        "InvalidRequestException",
        TOKEN_REQUIRED_MESSAGE,
    ),
    (
        "both values",
        {
            "SecretId": NAME,
            "ClientRequestToken": token(2),
            "SecretString": "x",
            "SecretBinary": b"x",
        },
        "InvalidParameterException",
        BOTH_VALUES_MESSAGE,
    ),
    (
        "unknown secret",
        {"SecretId": "unknown", "Description": "x"},
        "ResourceNotFoundException",
        NOT_FOUND_MESSAGE,
    ),
]


def test_update_refusals_change_nothing(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "one")["ARN"]
    for title, request_members, code, message in UPDATE_REFUSALS:
        with case(title):
            manager.assert_refused("UpdateSecret", request_members, code, message, [arn])


def test_update_of_a_scheduled_secret_is_refused(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "one")["ARN"]
    manager.call("DeleteSecret", SecretId=NAME)
    manager.assert_refused(
        "UpdateSecret",
        {"SecretId": NAME, "Description": "x"},
        "InvalidRequestException",
        MARKED_FOR_DELETION_MESSAGE,
        [arn],
    )


# --------------------------------------------------------------------------------------
# DeleteSecret: the recovery window (section 8)
# --------------------------------------------------------------------------------------


def test_the_default_recovery_window_is_thirty_days(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "x")["ARN"]
    manager.clock.advance(timedelta(hours=5))
    response = manager.call("DeleteSecret", SecretId=NAME)
    assert response == {"ARN": arn, "Name": NAME, "DeletionDate": manager.clock() + timedelta(30)}


@pytest.mark.parametrize("days", [7, 30])
def test_windows_of_seven_to_thirty_days_are_accepted(manager: Harness, days: int) -> None:
    manager.create(NAME)
    log_before = manager.log_length()
    response = manager.call("DeleteSecret", SecretId=NAME, RecoveryWindowInDays=days)
    assert response["DeletionDate"] == START + timedelta(days=days)
    [scheduled] = manager.events_since(log_before)
    assert isinstance(scheduled, Secret.DeletionScheduled)
    assert scheduled.recovery_window_days == days


WINDOW_VIOLATIONS: list[tuple[str, dict[str, Any], str]] = [
    ("6 days", {"RecoveryWindowInDays": 6}, WINDOW_MESSAGE),
    ("31 days", {"RecoveryWindowInDays": 31}, WINDOW_MESSAGE),
    ("0 days", {"RecoveryWindowInDays": 0}, WINDOW_MESSAGE),
    (
        "window and force",
        {"RecoveryWindowInDays": 7, "ForceDeleteWithoutRecovery": True},
        WINDOW_AND_FORCE_MESSAGE,
    ),
    (
        "bad window and force",
        {"RecoveryWindowInDays": 3, "ForceDeleteWithoutRecovery": True},
        WINDOW_AND_FORCE_MESSAGE,
    ),
]


def test_window_rules(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "x")["ARN"]
    for title, members, message in WINDOW_VIOLATIONS:
        with case(title):
            manager.assert_refused(
                "DeleteSecret",
                {"SecretId": NAME, **members},
                "InvalidParameterException",
                message,
                [arn],
            )


def test_while_scheduled_versions_and_labels_are_kept_but_writes_and_reads_fail(
    manager: Harness,
) -> None:
    arn = manager.create(NAME, token(1), "one")["ARN"]
    manager.put(NAME, token(2), "two")
    labels_before = manager.labels(NAME)
    manager.call("DeleteSecret", SecretId=NAME, RecoveryWindowInDays=7)
    assert manager.labels(NAME) == labels_before
    assert manager.call("DescribeSecret", SecretId=NAME)["VersionIdsToStages"] == labels_before
    for operation, request in [
        ("GetSecretValue", {"SecretId": NAME}),
        (
            "PutSecretValue",
            {"SecretId": NAME, "ClientRequestToken": token(3), "SecretString": "3"},
        ),
        (
            "UpdateSecretVersionStage",
            {"SecretId": NAME, "VersionStage": "blue", "MoveToVersionId": token(1)},
        ),
    ]:
        manager.assert_refused(
            operation, request, "InvalidRequestException", MARKED_FOR_DELETION_MESSAGE, [arn]
        )
    assert manager.call("ListSecrets")["SecretList"] == []


def test_deleting_a_scheduled_secret_again_is_refused(manager: Harness) -> None:
    arn = manager.create(NAME)["ARN"]
    manager.call("DeleteSecret", SecretId=NAME)
    manager.assert_refused(
        "DeleteSecret",
        {"SecretId": NAME, "RecoveryWindowInDays": 7},
        "InvalidRequestException",
        MARKED_FOR_DELETION_MESSAGE,
        [arn],
    )


def test_deleting_an_unknown_secret_without_force_is_not_found(manager: Harness) -> None:
    manager.assert_refused(
        "DeleteSecret", {"SecretId": NAME}, "ResourceNotFoundException", NOT_FOUND_MESSAGE
    )


# --------------------------------------------------------------------------------------
# DeleteSecret: forced deletion
# --------------------------------------------------------------------------------------


def test_force_delete_removes_the_secret_at_once(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "x")["ARN"]
    manager.clock.advance(timedelta(minutes=3))
    log_before = manager.log_length()
    response = manager.call("DeleteSecret", SecretId=NAME, ForceDeleteWithoutRecovery=True)
    assert response == {"ARN": arn, "Name": NAME, "DeletionDate": manager.clock()}
    detached, destroyed, deleted, released = manager.events_since(log_before)
    assert isinstance(detached, Secret.LabelMoved)
    moved = (detached.label, detached.from_version_id, detached.to_version_id)
    assert moved == ("AWSCURRENT", token(1), None)
    assert detached.reason == "detached-by-deletion"
    assert isinstance(destroyed, Secret.VersionDestroyed)
    assert (destroyed.version_id, destroyed.reason) == (token(1), "forced-deletion")
    assert isinstance(deleted, Secret.Deleted) and deleted.forced and deleted.labels_detached
    assert isinstance(released, SecretName.Released)
    for secret_id in (NAME, arn):
        manager.assert_refused(
            "DescribeSecret",
            {"SecretId": secret_id},
            "ResourceNotFoundException",
            NOT_FOUND_MESSAGE,
        )


def test_force_delete_of_a_scheduled_secret_removes_it(manager: Harness) -> None:
    manager.create(NAME, token(1), "x")
    manager.call("DeleteSecret", SecretId=NAME)
    manager.call("DeleteSecret", SecretId=NAME, ForceDeleteWithoutRecovery=True)
    manager.assert_refused(
        "RestoreSecret", {"SecretId": NAME}, "ResourceNotFoundException", NOT_FOUND_MESSAGE
    )


def test_force_delete_of_an_unknown_name_succeeds_with_a_synthesised_arn(
    manager: Harness,
) -> None:
    log_before = manager.log_length()
    response = manager.call(
        "DeleteSecret", SecretId="never/created", ForceDeleteWithoutRecovery=True
    )
    assert arn_pattern("never/created").fullmatch(response["ARN"])
    assert (response["Name"], response["DeletionDate"]) == ("never/created", START)
    [record] = manager.events_since(log_before)
    assert isinstance(record, ApiCall.Recorded)
    assert record.error_code is None


def test_force_delete_of_an_unknown_arn_succeeds(manager: Harness) -> None:
    full = ARN_PREFIX + "gone-AbC123"
    assert (
        manager.call("DeleteSecret", SecretId=full, ForceDeleteWithoutRecovery=True)["ARN"] == full
    )
    partial = ARN_PREFIX + "gone"
    response = manager.call("DeleteSecret", SecretId=partial, ForceDeleteWithoutRecovery=True)
    assert arn_pattern("gone").fullmatch(response["ARN"])
    assert response["Name"] == "gone"


def test_recreating_a_force_deleted_name_gives_a_new_arn_and_a_fresh_history(
    manager: Harness,
) -> None:
    old_arn = manager.create(NAME, token(1), "old")["ARN"]
    manager.put(NAME, token(2), "older")
    manager.call("DeleteSecret", SecretId=NAME, ForceDeleteWithoutRecovery=True)
    new = manager.create(NAME, token(1), "new")
    assert new["ARN"] != old_arn
    assert arn_pattern(NAME).fullmatch(new["ARN"])
    assert manager.labels(NAME) == {token(1): [AWSCURRENT]}
    assert manager.current_value(new["ARN"]) == "new"
    manager.assert_refused(
        "GetSecretValue", {"SecretId": old_arn}, "ResourceNotFoundException", NOT_FOUND_MESSAGE
    )


# --------------------------------------------------------------------------------------
# RestoreSecret
# --------------------------------------------------------------------------------------


def test_restore_makes_the_secret_usable_again(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "one")["ARN"]
    manager.put(NAME, token(2), "two")
    labels_before = manager.labels(NAME)
    manager.call("DeleteSecret", SecretId=NAME)
    log_before = manager.log_length()
    assert manager.call("RestoreSecret", SecretId=NAME) == {"ARN": arn, "Name": NAME}
    assert manager.event_types_since(log_before) == ["Secret.Restored"]
    assert manager.labels(NAME) == labels_before
    assert manager.current_value(NAME) == "two"
    manager.put(NAME, token(3), "three")
    assert manager.current_value(NAME) == "three"
    assert [entry["Name"] for entry in manager.call("ListSecrets")["SecretList"]] == [NAME]


def test_restore_of_a_secret_that_is_not_scheduled_changes_nothing(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "one")["ARN"]
    stream_before = manager.stream_length(arn)
    log_before = manager.log_length()
    assert manager.call("RestoreSecret", SecretId=NAME) == {"ARN": arn, "Name": NAME}
    assert manager.event_types_since(log_before) == ["ApiCall.Recorded"]
    assert manager.stream_length(arn) == stream_before


def test_restore_of_an_unknown_secret_is_not_found(manager: Harness) -> None:
    manager.assert_refused(
        "RestoreSecret", {"SecretId": NAME}, "ResourceNotFoundException", NOT_FOUND_MESSAGE
    )


# --------------------------------------------------------------------------------------
# Lazy expiry of the recovery window (open point 15)
# --------------------------------------------------------------------------------------


def test_a_scheduled_secret_lives_until_its_deletion_date(manager: Harness) -> None:
    manager.create(NAME, token(1), "x")
    deletion_date = manager.call("DeleteSecret", SecretId=NAME, RecoveryWindowInDays=7)[
        "DeletionDate"
    ]
    manager.clock.advance(deletion_date - manager.clock() - timedelta(microseconds=1))
    assert manager.call("DescribeSecret", SecretId=NAME)["DeletedDate"] == deletion_date
    manager.clock.advance(timedelta(microseconds=1))
    with pytest.raises(SecretsManagerError) as gone:  # the purge appends: no assert_refused
        manager.call("DescribeSecret", SecretId=NAME)
    assert (gone.value.code, gone.value.message) == ("ResourceNotFoundException", NOT_FOUND_MESSAGE)


def test_once_the_window_has_passed_the_secret_is_gone_and_purged(manager: Harness) -> None:
    old_arn = manager.create(NAME, token(1), "x")["ARN"]
    manager.call("DeleteSecret", SecretId=NAME, RecoveryWindowInDays=7)
    manager.clock.advance(timedelta(days=8))
    log_before = manager.log_length()
    with pytest.raises(SecretsManagerError) as gone:
        manager.call("GetSecretValue", SecretId=NAME)
    assert (gone.value.code, gone.value.message) == ("ResourceNotFoundException", NOT_FOUND_MESSAGE)
    detached, destroyed, deleted, released, record = manager.events_since(log_before)
    assert isinstance(detached, Secret.LabelMoved)
    assert (detached.label, detached.reason) == ("AWSCURRENT", "detached-by-deletion")
    assert detached.request == deleted.request
    assert isinstance(destroyed, Secret.VersionDestroyed)
    assert (destroyed.version_id, destroyed.reason) == (token(1), "purged")
    assert destroyed.request == deleted.request
    assert isinstance(deleted, Secret.Deleted) and not deleted.forced
    assert deleted.request["principal_arn"] == SERVICE_PRINCIPAL
    assert isinstance(released, SecretName.Released)
    assert isinstance(record, ApiCall.Recorded)
    assert record.error_code == "ResourceNotFoundException"
    log_after_purge = manager.log_length()
    for secret_id in (NAME, old_arn):
        manager.assert_refused(
            "RestoreSecret",
            {"SecretId": secret_id},
            "ResourceNotFoundException",
            NOT_FOUND_MESSAGE,
        )
    assert manager.log_length() == log_after_purge + 2  # the two refusals' records only


def test_the_name_of_an_expired_secret_can_be_reused_at_once(manager: Harness) -> None:
    old_arn = manager.create(NAME, token(1), "old")["ARN"]
    manager.call("DeleteSecret", SecretId=NAME, RecoveryWindowInDays=7)
    manager.clock.advance(timedelta(days=7))
    new = manager.create(NAME, token(1), "new")
    assert new["ARN"] != old_arn
    assert manager.current_value(NAME) == "new"
    manager.assert_refused(
        "DescribeSecret", {"SecretId": old_arn}, "ResourceNotFoundException", NOT_FOUND_MESSAGE
    )


def test_listing_purges_expired_secrets(manager: Harness) -> None:
    manager.create(NAME)
    manager.create("kept")
    manager.call("DeleteSecret", SecretId=NAME, RecoveryWindowInDays=7)
    manager.clock.advance(timedelta(days=30))
    listed = manager.call("ListSecrets", IncludePlannedDeletion=True)["SecretList"]
    assert [entry["Name"] for entry in listed] == ["kept"]
    assert manager.create(NAME)["Name"] == NAME


# --------------------------------------------------------------------------------------
# moto as a differential oracle: window rules, forced delete of an unknown secret,
# the already-exists message
# --------------------------------------------------------------------------------------

DELETE_CALLS: list[dict[str, Any]] = [
    {"SecretId": NAME, "RecoveryWindowInDays": 6},
    {"SecretId": NAME, "RecoveryWindowInDays": 31},
    {"SecretId": NAME, "RecoveryWindowInDays": 7, "ForceDeleteWithoutRecovery": True},
    {"SecretId": "unknown", "ForceDeleteWithoutRecovery": True},
    {"SecretId": "unknown"},
    {"SecretId": NAME, "RecoveryWindowInDays": 7},
]


def test_delete_rules_and_create_conflicts_agree_with_moto(manager: Harness) -> None:
    with open_oracle() as oracle:
        for face in (manager, oracle):
            face.call("CreateSecret", Name=NAME, ClientRequestToken=token(1), SecretString="x")
        ours = outcome_of(
            manager, "CreateSecret", Name=NAME, ClientRequestToken=token(2), SecretString="y"
        )
        theirs = oracle.call(
            "CreateSecret", Name=NAME, ClientRequestToken=token(2), SecretString="y"
        )
        assert ours["Error"] == {key: theirs["Error"][key] for key in ("Code", "Message")}
        for members in DELETE_CALLS:
            ours = outcome_of(manager, "DeleteSecret", **members)
            theirs = oracle.call("DeleteSecret", **members)
            assert ours.get("Error", {}).get("Code") == theirs.get("Error", {}).get("Code")
            if "Error" not in ours:
                assert ours["Name"] == theirs["Name"]
                assert arn_pattern(ours["Name"]).fullmatch(ours["ARN"])
                assert arn_pattern(theirs["Name"]).fullmatch(theirs["ARN"])
            elif ours["Error"]["Code"] == "ResourceNotFoundException":
                assert ours["Error"]["Message"] == theirs["Error"]["Message"]
