"""RotateSecret and CancelRotateSecret through the API, with a test playing the rotation
function (no runner: every rotation waits for an external driver, RO-5). Rules RO-1 to
RO-11 of docs/rotation.md; AWS's checks R1-R6 and the worked timeline of the rotation
reference (section 10)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ledger_helpers import (
    AWSCURRENT,
    AWSPENDING,
    AWSPREVIOUS,
    MARKED_FOR_DELETION_MESSAGE,
    NOT_FOUND_MESSAGE,
    TOKEN_REQUIRED_MESSAGE,
    Harness,
    open_harness,
    token,
    token_in_use_message,
)

from ledger.api import Caller
from ledger.domain import Secret
from ledger.errors import AccessDeniedException, ResourceNotFoundException
from ledger.policies import check_identity_policy
from projections import ReadModel
from projections.audit import AuditFilter

NAME = "payments/db"
ACCOUNT = "123456789012"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:rotate-db"
OTHER_FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:rotate-other"
NO_FUNCTION_MESSAGE = "No Lambda rotation function ARN is associated with this secret."
INCOMPLETE_MESSAGE = "A previous rotation isn't complete. That rotation will be reattempted."
DAILY = {"AutomaticallyAfterDays": 1}
V1, T1, T2, V3 = token(1), token(101), token(102), token(3)


@pytest.fixture
def secret_arn(manager: Harness) -> str:
    arn: str = manager.create(NAME, V1, "first-value")["ARN"]
    return arn


def rotate(manager: Harness, client_request_token: str, **members: Any) -> dict[str, Any]:
    return manager.call(
        "RotateSecret", SecretId=NAME, ClientRequestToken=client_request_token, **members
    )


def describe(manager: Harness) -> dict[str, Any]:
    return manager.quietly("DescribeSecret", SecretId=NAME)


def play_function(manager: Harness, client_request_token: str, value: str) -> None:
    """The four steps as AWS's template makes them (setSecret and testSecret touch no
    secret): createSecret fills the pending version, finishSecret moves AWSCURRENT."""
    described = describe(manager)
    assert described["RotationEnabled"] is True
    assert AWSPENDING in described["VersionIdsToStages"][client_request_token]
    manager.call("GetSecretValue", SecretId=NAME, VersionStage=AWSCURRENT)
    with pytest.raises(ResourceNotFoundException):
        manager.call(
            "GetSecretValue",
            SecretId=NAME,
            VersionId=client_request_token,
            VersionStage=AWSPENDING,
        )
    manager.put(NAME, client_request_token, value, [AWSPENDING])
    current = next(
        version_id
        for version_id, stages in describe(manager)["VersionIdsToStages"].items()
        if AWSCURRENT in stages
    )
    manager.stage(NAME, AWSCURRENT, move_to=client_request_token, remove_from=current)


def test_rotation_played_by_the_caller_moves_labels_as_the_worked_timeline(
    manager: Harness, secret_arn: str
) -> None:
    response = rotate(manager, T1, RotationLambdaARN=FUNCTION_ARN, RotationRules=DAILY)
    assert response == {"ARN": secret_arn, "Name": NAME, "VersionId": T1}
    described = describe(manager)
    assert described["RotationEnabled"] is True
    assert described["RotationLambdaARN"] == FUNCTION_ARN
    assert described["RotationRules"] == DAILY
    assert "LastRotatedDate" not in described and "NextRotationDate" not in described
    assert described["VersionIdsToStages"] == {V1: [AWSCURRENT], T1: [AWSPENDING]}
    assert manager.labels(NAME) == {T1: [AWSPENDING], V1: [AWSCURRENT]}

    play_function(manager, T1, "second-value")

    described = describe(manager)
    assert described["VersionIdsToStages"] == {V1: [AWSPREVIOUS], T1: [AWSCURRENT]}
    now = manager.clock()
    assert described["LastRotatedDate"] == now
    # RO-8: the next window is the day after the rotation; NextRotationDate is its end.
    assert described["NextRotationDate"] == datetime(2025, 3, 21, tzinfo=UTC)
    assert manager.current_value(NAME) == "second-value"


def test_rotate_secret_refusals_in_the_order_of_r1_to_r6(manager: Harness, secret_arn: str) -> None:
    manager.assert_refused(
        "RotateSecret",
        {"SecretId": "no-such-secret", "RotationLambdaARN": FUNCTION_ARN},
        "InvalidParameterException",
        TOKEN_REQUIRED_MESSAGE,
    )
    manager.assert_refused(
        "RotateSecret",
        {"SecretId": "no-such-secret", "ClientRequestToken": T1},
        "ResourceNotFoundException",
        NOT_FOUND_MESSAGE,
    )
    manager.assert_refused(
        "RotateSecret",
        {"SecretId": NAME, "ClientRequestToken": T1},
        "InvalidRequestException",
        NO_FUNCTION_MESSAGE,
        [secret_arn],
    )
    assert "RotationEnabled" not in describe(manager), "a failed call stores nothing"
    rotate(manager, T1, RotationLambdaARN=FUNCTION_ARN)
    manager.assert_refused(
        "RotateSecret",
        {"SecretId": NAME, "ClientRequestToken": T2},
        "InvalidRequestException",
        INCOMPLETE_MESSAGE,
        [secret_arn],
    )
    manager.assert_refused(
        "RotateSecret",
        {"SecretId": NAME, "ClientRequestToken": V1, "RotationLambdaARN": FUNCTION_ARN},
        "InvalidRequestException",
        INCOMPLETE_MESSAGE,
        [secret_arn],
    )
    manager.call("DeleteSecret", SecretId=NAME, RecoveryWindowInDays=7)
    manager.assert_refused(
        "RotateSecret",
        {"SecretId": NAME, "ClientRequestToken": T2},
        "InvalidRequestException",
        MARKED_FOR_DELETION_MESSAGE,
        [secret_arn],
    )


@pytest.mark.parametrize(
    ("rules", "message_part"),
    [
        ({"AutomaticallyAfterDays": 3, "ScheduleExpression": "rate(3 days)"}, "both"),
        ({"ScheduleExpression": "rate(2 hours)"}, "rate(4 hours)"),
        ({"ScheduleExpression": "cron(15 4 * * ? *)"}, "Minutes"),
        ({"ScheduleExpression": "cron(0 4 * * ? 2026)"}, "Year"),
        ({"ScheduleExpression": "cron(0 4 * * MON *)"}, "Exactly one"),
        ({"ScheduleExpression": "cron(0 22 * * ? *)", "Duration": "3h"}, "next UTC day"),
        ({"ScheduleExpression": "cron(0 4-10/2 * * ? *)", "Duration": "3h"}, "next rotation"),
        ({"ScheduleExpression": "every day"}, "rate(N hours)"),
        ({"Duration": "2h"}, "must have"),
        ({}, "must have"),
    ],
)
def test_bad_rotation_rules_are_refused_and_store_nothing(
    manager: Harness, secret_arn: str, rules: dict[str, Any], message_part: str
) -> None:
    error = manager.assert_refused(
        "RotateSecret",
        {
            "SecretId": NAME,
            "ClientRequestToken": T1,
            "RotationLambdaARN": FUNCTION_ARN,
            "RotationRules": rules,
        },
        "InvalidParameterException",
        secret_arns=[secret_arn],
    )
    assert message_part in error.message


def test_model_constraints_on_rules_are_validation_errors(
    manager: Harness, secret_arn: str
) -> None:
    manager.assert_refused(
        "RotateSecret",
        {
            "SecretId": NAME,
            "ClientRequestToken": T1,
            "RotationLambdaARN": FUNCTION_ARN,
            "RotationRules": {"AutomaticallyAfterDays": 0},
        },
        "ValidationException",
        secret_arns=[secret_arn],
    )


def test_the_pending_version_has_no_value_until_the_first_put_fills_it(
    manager: Harness, secret_arn: str
) -> None:
    rotate(manager, T1, RotationLambdaARN=FUNCTION_ARN)
    by_label = "Secrets Manager can't find the specified secret value for staging label: AWSPENDING"
    by_id = f"Secrets Manager can't find the specified secret value for VersionId: {T1}"
    manager.assert_refused(
        "GetSecretValue",
        {"SecretId": NAME, "VersionStage": AWSPENDING},
        "ResourceNotFoundException",
        by_label,
    )
    manager.assert_refused(
        "GetSecretValue", {"SecretId": NAME, "VersionId": T1}, "ResourceNotFoundException", by_id
    )
    listed = manager.all_versions(NAME)
    assert [(entry["VersionId"], entry.get("VersionStages")) for entry in listed] == [
        (T1, [AWSPENDING]),
        (V1, [AWSCURRENT]),
    ]
    manager.assert_refused(
        "UpdateSecretVersionStage",
        {
            "SecretId": NAME,
            "VersionStage": AWSCURRENT,
            "MoveToVersionId": T1,
            "RemoveFromVersionId": V1,
        },
        "InvalidRequestException",
        secret_arns=[secret_arn],
    )
    before = manager.log_length()
    filled = manager.put(NAME, T1, "pending-value", [AWSPENDING])
    assert filled == {
        "ARN": secret_arn,
        "Name": NAME,
        "VersionId": T1,
        "VersionStages": [AWSPENDING],
    }
    assert manager.event_types_since(before) == ["Secret.VersionFilled"]
    # The same token and value replay; another value is refused (T5, T7).
    replay_start = manager.log_length()
    assert manager.put(NAME, T1, "pending-value", [AWSPENDING]) == filled
    assert manager.event_types_since(replay_start) == ["ApiCall.Recorded"]
    manager.assert_refused(
        "PutSecretValue",
        {
            "SecretId": NAME,
            "ClientRequestToken": T1,
            "SecretString": "another-value",
            "VersionStages": [AWSPENDING],
        },
        "ResourceExistsException",
        token_in_use_message(T1, secret_arn),
        [secret_arn],
    )
    got = manager.quietly("GetSecretValue", SecretId=NAME, VersionStage=AWSPENDING)
    assert got["SecretString"] == "pending-value"


def test_a_retried_rotate_secret_answers_the_same_and_changes_nothing(
    manager: Harness, secret_arn: str
) -> None:
    first = rotate(manager, T1, RotationLambdaARN=FUNCTION_ARN)
    before = manager.log_length()
    assert rotate(manager, T1, RotationLambdaARN=FUNCTION_ARN) == first
    assert manager.event_types_since(before) == ["ApiCall.Recorded"]


def test_a_manual_put_during_a_rotation_abandons_it(manager: Harness, secret_arn: str) -> None:
    rotate(manager, T1, RotationLambdaARN=FUNCTION_ARN, RotationRules=DAILY)
    manager.put(NAME, V3, "manual-value")
    assert manager.labels(NAME) == {V3: [AWSCURRENT], T1: [], V1: [AWSPREVIOUS]}
    moves = [
        (event.label, event.from_version_id, event.to_version_id, event.reason)
        for event in manager.secrets.events.get(manager.secrets.find_secret(NAME).id)
        if isinstance(event, Secret.LabelMoved) and event.label == AWSPENDING
    ]
    assert moves == [
        (AWSPENDING, None, T1, "rotation-staged"),
        (AWSPENDING, T1, None, "pending-dropped"),
    ]
    # A manual rotation counts for the schedule (RO-8), not for LastRotatedDate.
    described = describe(manager)
    assert "LastRotatedDate" not in described
    assert described["NextRotationDate"] == datetime(2025, 3, 21, tzinfo=UTC)
    rotate(manager, T2)
    assert describe(manager)["VersionIdsToStages"][T2] == [AWSPENDING]


def test_cancel_rotate_secret_keeps_pending_and_the_configuration(
    manager: Harness, secret_arn: str
) -> None:
    assert manager.call("CancelRotateSecret", SecretId=NAME) == {"ARN": secret_arn, "Name": NAME}
    assert "RotationEnabled" not in describe(manager), "never configured: no change"
    rotate(manager, T1, RotationLambdaARN=FUNCTION_ARN, RotationRules=DAILY)
    response = manager.call("CancelRotateSecret", SecretId=NAME)
    assert response == {"ARN": secret_arn, "Name": NAME, "VersionId": T1}
    described = describe(manager)
    assert described["RotationEnabled"] is False
    assert described["RotationLambdaARN"] == FUNCTION_ARN
    assert described["RotationRules"] == DAILY
    assert "NextRotationDate" not in described
    assert described["VersionIdsToStages"][T1] == [AWSPENDING]
    manager.assert_refused(
        "RotateSecret",
        {"SecretId": NAME, "ClientRequestToken": T2},
        "InvalidRequestException",
        INCOMPLETE_MESSAGE,
        [secret_arn],
    )
    manager.stage(NAME, AWSPENDING, remove_from=T1)  # the operator cleans up
    rotate(manager, T2)
    assert describe(manager)["RotationEnabled"] is True
    play_function(manager, T2, "after-cleanup")
    assert describe(manager)["VersionIdsToStages"] == {V1: [AWSPREVIOUS], T2: [AWSCURRENT]}


def test_rotate_later_schedules_without_staging(manager: Harness, secret_arn: str) -> None:
    manager.clock.advance(timedelta(hours=3))  # 2025-03-19T12:00Z, a Wednesday
    rotate(
        manager,
        T1,
        RotationLambdaARN=FUNCTION_ARN,
        RotationRules={"ScheduleExpression": "cron(0 16 ? * FRI *)", "Duration": "2h"},
        RotateImmediately=False,
    )
    described = describe(manager)
    assert described["VersionIdsToStages"] == {V1: [AWSCURRENT]}
    assert described["NextRotationDate"] == datetime(2025, 3, 21, 18, tzinfo=UTC)
    assert described["RotationRules"] == {
        "ScheduleExpression": "cron(0 16 ? * FRI *)",
        "Duration": "2h",
    }


def test_list_secrets_shows_rotation_members(manager: Harness, secret_arn: str) -> None:
    rotate(manager, T1, RotationLambdaARN=FUNCTION_ARN, RotationRules=DAILY)
    play_function(manager, T1, "second-value")
    entry = manager.quietly("ListSecrets")["SecretList"][0]
    assert entry["RotationEnabled"] is True
    assert entry["RotationLambdaARN"] == FUNCTION_ARN
    assert entry["RotationRules"] == DAILY
    assert entry["LastRotatedDate"] == manager.clock()
    assert entry["NextRotationDate"] == datetime(2025, 3, 21, tzinfo=UTC)


def test_audit_shows_the_rotation_service_events_and_labels_its_steps(
    tmp_path: Any,
) -> None:
    database = str(tmp_path / "ledger.db")
    with open_harness(database) as manager:
        manager.create(NAME, V1, "first-value")
        rotate(manager, T1, RotationLambdaARN=FUNCTION_ARN, RotationRules=DAILY)
        staged_at = manager.clock.advance(timedelta(minutes=1))
        manager.clock.advance(timedelta(minutes=1))
        play_function(manager, T1, "second-value")
        with ReadModel.open(database) as model:
            model.catch_up()
            names = [
                (record.event_name, record.record.get("eventType"))
                for record in model.audit.records(AuditFilter(secret=NAME))
                if record.record["eventType"] == "AwsServiceEvent"
                or record.event_name in ("RotateSecret", "UpdateSecretVersionStage")
            ]
            assert names == [
                ("RotateSecret", "AwsApiCall"),
                ("RotationStarted", "AwsServiceEvent"),
                ("UpdateSecretVersionStage", "AwsApiCall"),
                ("RotationSucceeded", "AwsServiceEvent"),
            ]
            during = model.labels.label_map(NAME, as_of=staged_at)
            assert during.versions == {V1: (AWSCURRENT,), T1: (AWSPENDING,)}
            history = [
                (move.label, move.to_version_id, move.reason)
                for move in model.labels.history(NAME)
                if move.label == AWSPENDING
            ]
            assert history == [
                (AWSPENDING, T1, "rotation-staged"),
                (AWSPENDING, None, "rotation-completed"),
            ]


def test_invalid_names_are_validation_errors(manager: Harness, secret_arn: str) -> None:
    invalid = (
        "Invalid name. Must be a valid name containing alphanumeric characters, "
        "or any of the following: -/_+=.@!"
    )
    manager.assert_refused(
        "RotateSecret",
        {"SecretId": "Inv Name", "ClientRequestToken": T1, "RotationLambdaARN": FUNCTION_ARN},
        "ValidationException",
        invalid,
    )
    manager.assert_refused(
        "CancelRotateSecret", {"SecretId": "Inv Name"}, "ValidationException", invalid
    )


def test_identity_policies_see_the_rotation_condition_keys(
    manager: Harness, secret_arn: str
) -> None:
    """AZ-8: RotateSecret's RotationLambdaARN and RotateImmediately are condition keys."""
    text = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "secretsmanager:DescribeSecret", "Resource": "*"},
                {
                    "Effect": "Allow",
                    "Action": "secretsmanager:RotateSecret",
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {"secretsmanager:RotationLambdaARN": FUNCTION_ARN},
                        "Bool": {"secretsmanager:RotateImmediately": "false"},
                    },
                },
            ],
        }
    )
    policy = check_identity_policy(text).policy
    assert policy is not None
    operator = Caller(f"arn:aws:iam::{ACCOUNT}:user/operator", policy=policy)
    request = {"SecretId": NAME, "ClientRequestToken": T1, "RotationRules": DAILY}
    for members in (
        {"RotationLambdaARN": OTHER_FUNCTION_ARN, "RotateImmediately": False},
        {"RotationLambdaARN": FUNCTION_ARN},
        {"RotationLambdaARN": FUNCTION_ARN, "RotateImmediately": True},
    ):
        with pytest.raises(AccessDeniedException):
            manager.api.call("RotateSecret", request | members, operator)
    allowed = request | {"RotationLambdaARN": FUNCTION_ARN, "RotateImmediately": False}
    assert manager.api.call("RotateSecret", allowed, operator)["VersionId"] == T1
