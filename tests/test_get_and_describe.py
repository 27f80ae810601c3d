"""GetSecretValue and DescribeSecret (docs/semantics.md §3 and §4)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from ledger_helpers import (
    AWSCURRENT,
    AWSPENDING,
    AWSPREVIOUS,
    MARKED_FOR_DELETION_MESSAGE,
    NOT_FOUND_MESSAGE,
    START,
    Harness,
    open_oracle,
    outcome_of,
    token,
)

from ledger.domain import ApiCall, Secret

NAME = "team/app/db"
VALUE_MESSAGE_PREFIX = "Secrets Manager can't find the specified secret value for"
MISMATCH_MESSAGE = "You provided a VersionStage that is not associated to the provided VersionId."


@pytest.fixture
def rotated(manager: Harness) -> str:
    """v1 deprecated, v2 AWSPREVIOUS, v3 AWSCURRENT, v4 AWSPENDING; returns the ARN."""
    arn: str = manager.create(NAME, token(1), "one")["ARN"]
    manager.clock.advance(timedelta(minutes=1))
    manager.put(NAME, token(2), "two")
    manager.clock.advance(timedelta(minutes=1))
    manager.put(NAME, token(3), b"three")
    manager.clock.advance(timedelta(minutes=1))
    manager.put(NAME, token(4), "four", [AWSPENDING])
    return arn


def get(manager: Harness, **members: Any) -> dict[str, Any]:
    return manager.call("GetSecretValue", SecretId=NAME, **members)


# --------------------------------------------------------------------------------------
# GetSecretValue: which version (section 3)
# --------------------------------------------------------------------------------------


def test_a_default_read_returns_the_current_version(manager: Harness, rotated: str) -> None:
    assert get(manager) == {
        "ARN": rotated,
        "Name": NAME,
        "VersionId": token(3),
        "SecretBinary": b"three",
        "VersionStages": [AWSCURRENT],
        "CreatedDate": START + timedelta(minutes=2),
    }


def test_a_read_by_stage_returns_the_version_holding_it(manager: Harness, rotated: str) -> None:
    previous = get(manager, VersionStage=AWSPREVIOUS)
    assert (previous["VersionId"], previous["SecretString"]) == (token(2), "two")
    assert previous["VersionStages"] == [AWSPREVIOUS]
    pending = get(manager, VersionStage=AWSPENDING)
    assert (pending["VersionId"], pending["SecretString"]) == (token(4), "four")


def test_a_read_by_version_id_returns_that_version_with_its_labels(
    manager: Harness, rotated: str
) -> None:
    response = get(manager, VersionId=token(2))
    assert response["SecretString"] == "two"
    assert response["VersionStages"] == [AWSPREVIOUS]
    assert response["CreatedDate"] == START + timedelta(minutes=1)


def test_a_deprecated_version_is_readable_by_id_without_version_stages(
    manager: Harness, rotated: str
) -> None:
    assert get(manager, VersionId=token(1)) == {
        "ARN": rotated,
        "Name": NAME,
        "VersionId": token(1),
        "SecretString": "one",
        "CreatedDate": START,
    }


def test_a_read_by_id_and_matching_stage_returns_the_version(
    manager: Harness, rotated: str
) -> None:
    response = get(manager, VersionId=token(3), VersionStage=AWSCURRENT)
    assert response["SecretBinary"] == b"three"


def test_a_read_by_id_and_a_stage_on_another_version_is_refused(
    manager: Harness, rotated: str
) -> None:
    error = manager.assert_refused(
        "GetSecretValue",
        {"SecretId": NAME, "VersionId": token(2), "VersionStage": AWSCURRENT},
        "InvalidRequestException",
        MISMATCH_MESSAGE,
        [rotated],
    )
    assert error.http_status == 400


def test_an_unknown_version_id_is_not_found(manager: Harness, rotated: str) -> None:
    manager.assert_refused(
        "GetSecretValue",
        {"SecretId": NAME, "VersionId": token(99)},
        "ResourceNotFoundException",
        f"{VALUE_MESSAGE_PREFIX} VersionId: {token(99)}",
        [rotated],
    )


def test_an_unknown_version_id_with_a_stage_reports_the_version_id(
    manager: Harness, rotated: str
) -> None:
    manager.assert_refused(
        "GetSecretValue",
        {"SecretId": NAME, "VersionId": token(99), "VersionStage": AWSCURRENT},
        "ResourceNotFoundException",
        f"{VALUE_MESSAGE_PREFIX} VersionId: {token(99)}",
        [rotated],
    )


def test_an_unknown_stage_is_not_found(manager: Harness, rotated: str) -> None:
    manager.assert_refused(
        "GetSecretValue",
        {"SecretId": NAME, "VersionStage": "blue"},
        "ResourceNotFoundException",
        f"{VALUE_MESSAGE_PREFIX} staging label: blue",
        [rotated],
    )


def test_labels_are_compared_case_sensitively(manager: Harness, rotated: str) -> None:
    manager.assert_refused(
        "GetSecretValue",
        {"SecretId": NAME, "VersionStage": "awscurrent"},
        "ResourceNotFoundException",
        f"{VALUE_MESSAGE_PREFIX} staging label: awscurrent",
        [rotated],
    )


def test_a_default_read_of_a_secret_without_versions_is_not_found(manager: Harness) -> None:
    arn = manager.create(NAME)["ARN"]
    manager.assert_refused(
        "GetSecretValue",
        {"SecretId": NAME},
        "ResourceNotFoundException",
        f"{VALUE_MESSAGE_PREFIX} staging label: AWSCURRENT",
        [arn],
    )


def test_an_unknown_secret_is_not_found(manager: Harness) -> None:
    manager.assert_refused(
        "GetSecretValue", {"SecretId": NAME}, "ResourceNotFoundException", NOT_FOUND_MESSAGE
    )


def test_a_secret_scheduled_for_deletion_cannot_be_read(manager: Harness, rotated: str) -> None:
    manager.call("DeleteSecret", SecretId=NAME, RecoveryWindowInDays=7)
    for members in ({}, {"VersionId": token(1)}, {"VersionStage": AWSPENDING}):
        manager.assert_refused(
            "GetSecretValue",
            {"SecretId": NAME, **members},
            "InvalidRequestException",
            MARKED_FOR_DELETION_MESSAGE,
            [rotated],
        )


def test_a_read_changes_no_secret_and_records_the_version_served(
    manager: Harness, rotated: str
) -> None:
    """The first read of a version on a day notes its access date (LA-2); a second
    read that day appends its record only."""
    stream_before = manager.stream_length(rotated)
    labels_before = manager.labels(NAME)
    log_before = manager.log_length()
    get(manager, VersionStage=AWSPREVIOUS)
    [accessed, record] = manager.events_since(log_before)
    assert isinstance(accessed, Secret.Accessed)
    assert accessed.version_id == token(2)
    assert isinstance(record, ApiCall.Recorded)
    assert record.read_only
    assert record.error_code is None
    assert record.resources == [{"secret_arn": rotated, "version_id": token(2)}]
    assert manager.stream_length(rotated) == stream_before + 1
    log_before = manager.log_length()
    get(manager, VersionStage=AWSPREVIOUS)
    [record] = manager.events_since(log_before)
    assert isinstance(record, ApiCall.Recorded)
    assert manager.stream_length(rotated) == stream_before + 1
    assert manager.labels(NAME) == labels_before


def test_a_version_id_of_the_wrong_length_is_a_validation_error(
    manager: Harness, rotated: str
) -> None:
    manager.assert_refused(
        "GetSecretValue",
        {"SecretId": NAME, "VersionId": "short"},
        "ValidationException",
        "1 validation error detected: Value 'short' at 'versionId' failed to satisfy "
        "constraint: Member must have length greater than or equal to 32",
        [rotated],
    )


# --------------------------------------------------------------------------------------
# DescribeSecret (section 4)
# --------------------------------------------------------------------------------------


def test_describe_maps_labelled_versions_and_leaves_out_deprecated_ones(
    manager: Harness, rotated: str
) -> None:
    description = manager.call("DescribeSecret", SecretId=NAME)
    assert description["VersionIdsToStages"] == {
        token(2): [AWSPREVIOUS],
        token(3): [AWSCURRENT],
        token(4): [AWSPENDING],
    }
    assert (description["ARN"], description["Name"]) == (rotated, NAME)
    assert description["CreatedDate"] == START
    assert description["LastChangedDate"] == START + timedelta(minutes=3)


def test_describe_never_returns_a_value(manager: Harness, rotated: str) -> None:
    description = manager.call("DescribeSecret", SecretId=NAME)
    assert not {"SecretString", "SecretBinary"} & set(description)
    assert all(value not in repr(description) for value in ("'one'", "'two'", "three", "four"))


def test_describe_of_a_secret_without_versions_has_no_version_map(manager: Harness) -> None:
    arn = manager.create(NAME, Description="the orders database")["ARN"]
    assert manager.call("DescribeSecret", SecretId=NAME) == {
        "ARN": arn,
        "Name": NAME,
        "Description": "the orders database",
        "LastChangedDate": START,
        "CreatedDate": START,
    }


def test_describe_returns_only_members_that_have_a_value(manager: Harness) -> None:
    manager.create(
        NAME,
        token(1),
        "x",
        Description="orders",
        KmsKeyId="alias/orders",
        Tags=[{"Key": "team", "Value": "payments"}],
    )
    description = manager.call("DescribeSecret", SecretId=NAME)
    assert description["KmsKeyId"] == "alias/orders"
    assert description["Tags"] == [{"Key": "team", "Value": "payments"}]
    assert "DeletedDate" not in description
    assert "RotationEnabled" not in description


def test_describe_works_on_a_scheduled_secret_and_shows_the_deleted_date(
    manager: Harness, rotated: str
) -> None:
    manager.clock.advance(timedelta(hours=1))
    deletion = manager.call("DeleteSecret", SecretId=NAME, RecoveryWindowInDays=7)
    description = manager.call("DescribeSecret", SecretId=NAME)
    assert description["DeletedDate"] == deletion["DeletionDate"]
    assert description["DeletedDate"] == manager.clock() + timedelta(days=7)
    assert description["VersionIdsToStages"][token(3)] == [AWSCURRENT]
    assert description["LastChangedDate"] == manager.clock()


def test_restoring_removes_the_deleted_date(manager: Harness, rotated: str) -> None:
    manager.call("DeleteSecret", SecretId=NAME)
    manager.call("RestoreSecret", SecretId=NAME)
    assert "DeletedDate" not in manager.call("DescribeSecret", SecretId=NAME)


def test_last_changed_date_follows_label_moves(manager: Harness, rotated: str) -> None:
    manager.clock.advance(timedelta(hours=2))
    manager.stage(NAME, AWSCURRENT, token(4), token(3))
    description = manager.call("DescribeSecret", SecretId=NAME)
    assert description["LastChangedDate"] == manager.clock()
    assert description["VersionIdsToStages"] == {
        token(3): [AWSPREVIOUS],
        token(4): [AWSCURRENT, AWSPENDING],
    }


def test_describe_of_an_unknown_secret_is_not_found(manager: Harness) -> None:
    manager.assert_refused(
        "DescribeSecret", {"SecretId": NAME}, "ResourceNotFoundException", NOT_FOUND_MESSAGE
    )


def test_an_unexpected_failure_is_an_internal_service_error_that_reveals_nothing(
    manager: Harness, rotated: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**members: Any) -> Any:
        raise RuntimeError("disk on fire near value 'four'")

    monkeypatch.setattr(manager.secrets, "describe_secret", broken)
    error = manager.assert_refused(
        "DescribeSecret",
        {"SecretId": NAME},
        "InternalServiceError",
        "An error occurred on the server side.",
        [rotated],
    )
    assert error.http_status == 500


# --------------------------------------------------------------------------------------
# moto as a differential oracle: selection and the unknown-VersionId message
# --------------------------------------------------------------------------------------

READS: list[dict[str, Any]] = [
    {},
    {"VersionStage": AWSPREVIOUS},
    {"VersionStage": AWSPENDING},
    {"VersionId": token(2)},
    {"VersionId": token(3), "VersionStage": AWSCURRENT},
    {"VersionId": token(2), "VersionStage": AWSCURRENT},
    {"VersionId": token(99)},
]


def test_read_selection_agrees_with_moto(manager: Harness) -> None:
    with open_oracle() as oracle:
        for face in (manager, oracle):
            face.call("CreateSecret", Name=NAME, ClientRequestToken=token(1), SecretString="one")
            for number in (2, 3):
                face.call(
                    "PutSecretValue",
                    SecretId=NAME,
                    ClientRequestToken=token(number),
                    SecretString=str(number),
                )
            face.call(
                "PutSecretValue",
                SecretId=NAME,
                ClientRequestToken=token(4),
                SecretString="4",
                VersionStages=[AWSPENDING],
            )
        for members in READS:
            ours = outcome_of(manager, "GetSecretValue", SecretId=NAME, **members)
            theirs = oracle.call("GetSecretValue", SecretId=NAME, **members)
            assert comparable(ours) == comparable(theirs), members


def comparable(outcome: dict[str, Any]) -> dict[str, Any]:
    if "Error" in outcome:
        return {"Error": {key: outcome["Error"][key] for key in ("Code", "Message")}}
    return {
        "VersionId": outcome["VersionId"],
        "SecretString": outcome["SecretString"],
        "VersionStages": sorted(outcome.get("VersionStages", [])),
    }


@pytest.mark.parametrize("operation", ["GetSecretValue", "DescribeSecret"])
def test_a_read_looks_its_secret_up_once_for_authorization_and_answer(
    manager: Harness, rotated: str, operation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read answers from the secret authorization resolved: one look-up (a
    round trip on PostgreSQL when the cache must be brought up to date), not two."""
    manager.call(operation, SecretId=NAME)  # the name is remembered from here on
    repository = manager.secrets.repository
    looked_up: list[object] = []
    original_get = repository.get

    def counting_get(aggregate_id: Any, **options: Any) -> Any:
        looked_up.append(aggregate_id)
        return original_get(aggregate_id, **options)

    monkeypatch.setattr(repository, "get", counting_get)
    manager.call(operation, SecretId=NAME)
    manager.call(operation, SecretId=rotated)
    assert len(looked_up) == 2
