"""boto3 against a real `secretledger serve`: every operation, and every error of the
catalogue (docs/semantics.md §12) with its exact name, message and HTTP status.

One server for the module; each test works on secrets with names of its own.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from http_harness import (
    ACCOUNT_ID,
    ALICE,
    BOB,
    REGION,
    RunningServer,
    calls_with_request_id,
    open_ledger,
    start_server,
)

from ledger.domain import secret_id_for_arn

pytestmark = pytest.mark.slow

NOT_FOUND = "Secrets Manager can't find the specified secret."
MARKED_FOR_DELETION = (
    "You can't perform this operation on the secret because it was marked for deletion."
)
TOKEN_REQUIRED = "You must provide a ClientRequestToken value. We recommend a UUID-type value."
VALUE_REQUIRED = "You must provide either SecretString or SecretBinary."
BOTH_VALUES = (
    "You can't specify both a binary secret value and a string secret value in the same secret."
)
ARN_PATTERN = re.compile(
    rf"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:(?P<name>.+)-[A-Za-z0-9]{{6}}"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("http-operations"))
    yield running
    running.stop_cleanly()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Any:
    return server.client()


@pytest.fixture
def name() -> str:
    return f"team/app-{uuid.uuid4().hex[:12]}"


def token() -> str:
    return str(uuid.uuid4())


def aws_error(call: Any, **members: Any) -> dict[str, Any]:
    """The error a call fails with: code, message, HTTP status and request id."""
    with pytest.raises(ClientError) as raised:
        call(**members)
    response: dict[str, Any] = raised.value.response
    return {
        "code": response["Error"]["Code"],
        "message": response["Error"]["Message"],
        "status": response["ResponseMetadata"]["HTTPStatusCode"],
        "request_id": response["ResponseMetadata"]["RequestId"],
    }


def labels(client: Any, name: str) -> dict[str, list[str]]:
    stages: dict[str, list[str]] = client.describe_secret(SecretId=name).get(
        "VersionIdsToStages", {}
    )
    return {version: sorted(names) for version, names in stages.items()}


# --------------------------------------------------------------------------------------
# Every operation
# --------------------------------------------------------------------------------------


def test_a_secret_is_created_with_a_value_and_read_back(client: Any, name: str) -> None:
    first = token()
    created = client.create_secret(
        Name=name,
        SecretString='{"password":"hunter2"}',
        ClientRequestToken=first,
        Description="the payments key",
        Tags=[{"Key": "team", "Value": "payments"}],
    )
    match = ARN_PATTERN.fullmatch(created["ARN"])
    assert match is not None and match["name"] == name
    assert (created["Name"], created["VersionId"]) == (name, first)

    read = client.get_secret_value(SecretId=name)
    assert read["SecretString"] == '{"password":"hunter2"}'
    assert (read["ARN"], read["VersionId"], read["VersionStages"]) == (
        created["ARN"],
        first,
        ["AWSCURRENT"],
    )
    assert isinstance(read["CreatedDate"], datetime)


def test_binary_values_travel_as_base64_and_come_back_as_bytes(client: Any, name: str) -> None:
    value = bytes(range(256))
    client.create_secret(Name=name, SecretBinary=value)
    read = client.get_secret_value(SecretId=name)
    assert read["SecretBinary"] == value
    assert "SecretString" not in read


def test_a_put_makes_the_new_version_current_and_the_old_one_previous(
    client: Any, name: str
) -> None:
    v1, v2 = token(), token()
    client.create_secret(Name=name, SecretString="one", ClientRequestToken=v1)
    put = client.put_secret_value(SecretId=name, SecretString="two", ClientRequestToken=v2)
    assert (put["VersionId"], put["VersionStages"]) == (v2, ["AWSCURRENT"])
    assert labels(client, name) == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT"]}
    assert client.get_secret_value(SecretId=name)["SecretString"] == "two"
    assert client.get_secret_value(SecretId=name, VersionId=v1)["SecretString"] == "one"
    previous = client.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")
    assert previous["VersionId"] == v1


def test_a_replayed_put_changes_nothing(client: Any, name: str) -> None:
    v1 = token()
    client.create_secret(Name=name, SecretString="one", ClientRequestToken=v1)
    replay = client.put_secret_value(SecretId=name, SecretString="one", ClientRequestToken=v1)
    assert (replay["VersionId"], replay["VersionStages"]) == (v1, ["AWSCURRENT"])
    assert labels(client, name) == {v1: ["AWSCURRENT"]}


def test_describe_shows_metadata_and_labels_never_the_value(client: Any, name: str) -> None:
    v1 = token()
    client.create_secret(
        Name=name,
        SecretString="s3cr3t-value",
        ClientRequestToken=v1,
        Description="db",
        KmsKeyId="alias/payments",
        Tags=[{"Key": "env", "Value": "prod"}],
    )
    described = client.describe_secret(SecretId=name)
    assert described["Description"] == "db"
    assert described["KmsKeyId"] == "alias/payments"
    assert described["Tags"] == [{"Key": "env", "Value": "prod"}]
    assert described["VersionIdsToStages"] == {v1: ["AWSCURRENT"]}
    assert isinstance(described["LastChangedDate"], datetime)
    assert "s3cr3t-value" not in json.dumps(described, default=str)


def test_version_listing_hides_deprecated_versions_unless_asked(client: Any, name: str) -> None:
    v1, v2, v3 = token(), token(), token()
    client.create_secret(Name=name, SecretString="1", ClientRequestToken=v1)
    client.put_secret_value(SecretId=name, SecretString="2", ClientRequestToken=v2)
    client.put_secret_value(SecretId=name, SecretString="3", ClientRequestToken=v3)
    listed = client.list_secret_version_ids(SecretId=name)
    assert [entry["VersionId"] for entry in listed["Versions"]] == [v3, v2]
    assert ARN_PATTERN.fullmatch(listed["ARN"]) and listed["Name"] == name
    everything = client.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)
    entries = {entry["VersionId"]: entry for entry in everything["Versions"]}
    assert set(entries) == {v1, v2, v3}
    assert "VersionStages" not in entries[v1]
    assert isinstance(entries[v1]["CreatedDate"], datetime)


def test_list_secrets_filters_and_pages_with_next_token(client: Any) -> None:
    prefix = f"listing-{uuid.uuid4().hex[:8]}/"
    names = [f"{prefix}{index}" for index in range(5)]
    for each in names:
        client.create_secret(Name=each)
    pages = client.get_paginator("list_secrets").paginate(
        Filters=[{"Key": "name", "Values": [prefix]}], PaginationConfig={"PageSize": 2}
    )
    seen = [entry["Name"] for page in pages for entry in page["SecretList"]]
    assert sorted(seen) == names


def test_update_secret_changes_the_description_and_stores_a_new_version(
    client: Any, name: str
) -> None:
    v1, v2 = token(), token()
    client.create_secret(Name=name, SecretString="one", ClientRequestToken=v1)
    updated = client.update_secret(
        SecretId=name, SecretString="two", ClientRequestToken=v2, Description="rotated"
    )
    assert updated["VersionId"] == v2
    assert client.describe_secret(SecretId=name)["Description"] == "rotated"
    assert client.get_secret_value(SecretId=name)["SecretString"] == "two"


def test_a_rotation_promotes_the_pending_version(client: Any, name: str) -> None:
    v1, v2 = token(), token()
    client.create_secret(Name=name, SecretString="old", ClientRequestToken=v1)
    client.put_secret_value(
        SecretId=name, SecretString="new", ClientRequestToken=v2, VersionStages=["AWSPENDING"]
    )
    assert labels(client, name) == {v1: ["AWSCURRENT"], v2: ["AWSPENDING"]}
    moved = client.update_secret_version_stage(
        SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=v2, RemoveFromVersionId=v1
    )
    assert moved["Name"] == name
    assert labels(client, name) == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT", "AWSPENDING"]}
    assert client.get_secret_value(SecretId=name)["SecretString"] == "new"


def test_a_deleted_secret_can_be_restored_within_its_window(client: Any, name: str) -> None:
    client.create_secret(Name=name, SecretString="kept")
    deleted = client.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    assert isinstance(deleted["DeletionDate"], datetime)
    described = client.describe_secret(SecretId=name)
    assert described["DeletedDate"] == deleted["DeletionDate"]
    restored = client.restore_secret(SecretId=name)
    assert restored["Name"] == name
    assert "DeletedDate" not in client.describe_secret(SecretId=name)
    assert client.get_secret_value(SecretId=name)["SecretString"] == "kept"


def test_a_forced_delete_frees_the_name_at_once(client: Any, name: str) -> None:
    first = client.create_secret(Name=name, SecretString="one")["ARN"]
    client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    error = aws_error(client.describe_secret, SecretId=first)
    assert (error["code"], error["message"]) == ("ResourceNotFoundException", NOT_FOUND)
    second = client.create_secret(Name=name, SecretString="two")["ARN"]
    assert second != first


def test_a_forced_delete_of_an_unknown_secret_succeeds(client: Any, name: str) -> None:
    deleted = client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    assert deleted["Name"] == name
    assert ARN_PATTERN.fullmatch(deleted["ARN"])


def test_batch_get_returns_values_and_per_secret_errors(client: Any, name: str) -> None:
    client.create_secret(Name=name, SecretString="batched")
    missing = f"{name}-missing"
    batch = client.batch_get_secret_value(SecretIdList=[name, missing])
    assert [(item["Name"], item["SecretString"]) for item in batch["SecretValues"]] == [
        (name, "batched")
    ]
    assert batch["Errors"] == [
        {"SecretId": missing, "ErrorCode": "ResourceNotFoundException", "Message": NOT_FOUND}
    ]


def test_batch_get_by_filter(client: Any) -> None:
    prefix = f"batch-{uuid.uuid4().hex[:8]}/"
    for index in range(3):
        client.create_secret(Name=f"{prefix}{index}", SecretString=f"value-{index}")
    batch = client.batch_get_secret_value(Filters=[{"Key": "name", "Values": [prefix]}])
    assert sorted(item["SecretString"] for item in batch["SecretValues"]) == [
        "value-0",
        "value-1",
        "value-2",
    ]


# --------------------------------------------------------------------------------------
# Attribution: who did it is in the events, under the request id the client saw
# --------------------------------------------------------------------------------------


def test_a_put_is_attributed_to_its_signer_under_the_response_request_id(
    server: RunningServer, client: Any, name: str
) -> None:
    arn = client.create_secret(Name=name, SecretString="one")["ARN"]
    put = server.client(BOB).put_secret_value(SecretId=name, SecretString="two")
    request_id = put["ResponseMetadata"]["RequestId"]
    assert put["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"] == request_id

    secrets = open_ledger(server)
    try:
        events = list(secrets.repository.event_store.get(secret_id_for_arn(arn)))
    finally:
        secrets.close()
    put_events = [event for event in events if event.request["request_id"] == request_id]
    assert put_events, "the put's events carry its request id"
    for event in put_events:
        request = event.request
        assert (request["principal_arn"], request["access_key_id"]) == (BOB.arn, BOB.access_key_id)
        assert request["source_ip"] == "127.0.0.1"
        assert "Boto3" in request["user_agent"] or "botocore" in request["user_agent"]
        assert (request["operation"], request["region"], request["account_id"]) == (
            "PutSecretValue",
            REGION,
            ACCOUNT_ID,
        )


def test_a_read_is_recorded_with_the_version_it_served(
    server: RunningServer, client: Any, name: str
) -> None:
    v1 = token()
    arn = client.create_secret(Name=name, SecretString="one", ClientRequestToken=v1)["ARN"]
    read = client.get_secret_value(SecretId=name)
    [call] = calls_with_request_id(server, read["ResponseMetadata"]["RequestId"])
    assert call.read_only and call.error_code is None
    assert call.resources == [{"secret_arn": arn, "version_id": v1}]
    assert call.request["principal_arn"] == ALICE.arn
    assert call.request["parameters"] == {"secretId": name}


def test_a_failed_call_is_recorded_with_its_error_code(
    server: RunningServer, client: Any, name: str
) -> None:
    error = aws_error(client.get_secret_value, SecretId=name)
    [call] = calls_with_request_id(server, error["request_id"])
    assert (call.error_code, call.error_message) == ("ResourceNotFoundException", NOT_FOUND)
    assert call.request["operation"] == "GetSecretValue"


# --------------------------------------------------------------------------------------
# The error catalogue (docs/semantics.md §12)
# --------------------------------------------------------------------------------------


def test_an_unknown_secret_is_not_found(client: Any, name: str) -> None:
    for call in (
        client.get_secret_value,
        client.describe_secret,
        client.restore_secret,
        client.list_secret_version_ids,
    ):
        assert aws_error(call, SecretId=name) | {"request_id": None} == {
            "code": "ResourceNotFoundException",
            "message": NOT_FOUND,
            "status": 400,
            "request_id": None,
        }


def test_a_raw_put_or_create_without_a_token_is_refused(
    server: RunningServer, client: Any, name: str
) -> None:
    client.create_secret(Name=name)
    for operation, members in (
        ("PutSecretValue", {"SecretId": name, "SecretString": "v"}),
        ("CreateSecret", {"Name": f"{name}-2", "SecretString": "v"}),
    ):
        response = server.call(operation, members)
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/x-amz-json-1.1"
        assert response.json() == {"__type": "InvalidRequestException", "Message": TOKEN_REQUIRED}


def test_a_token_reused_with_other_data_is_refused(client: Any, name: str) -> None:
    v1 = token()
    arn = client.create_secret(Name=name, SecretString="one", ClientRequestToken=v1)["ARN"]
    error = aws_error(
        client.put_secret_value, SecretId=name, SecretString="other", ClientRequestToken=v1
    )
    assert (error["code"], error["status"]) == ("ResourceExistsException", 400)
    assert error["message"] == (
        f"You can't use ClientRequestToken {v1} because that value is already in use for a "
        f"version of secret {arn}."
    )


def test_a_token_of_the_wrong_length_is_a_validation_error(
    server: RunningServer, client: Any, name: str
) -> None:
    client.create_secret(Name=name)
    unvalidated = server.client(parameter_validation=False)
    error = aws_error(
        unvalidated.put_secret_value, SecretId=name, SecretString="v", ClientRequestToken="short"
    )
    assert (error["code"], error["status"]) == ("ValidationException", 400)
    assert error["message"].startswith("1 validation error detected: Value 'short' at ")
    assert "clientRequestToken" in error["message"]


def test_a_put_needs_exactly_one_value(client: Any, name: str) -> None:
    client.create_secret(Name=name)
    neither = aws_error(client.put_secret_value, SecretId=name)
    assert (neither["code"], neither["message"]) == ("InvalidRequestException", VALUE_REQUIRED)
    both = aws_error(client.put_secret_value, SecretId=name, SecretString="s", SecretBinary=b"b")
    assert (both["code"], both["message"]) == ("InvalidParameterException", BOTH_VALUES)
    created_with_both = aws_error(
        client.create_secret, Name=f"{name}-2", SecretString="s", SecretBinary=b"b"
    )
    assert created_with_both["code"] == "InvalidParameterException"


def test_more_than_twenty_version_stages_is_a_validation_error(
    server: RunningServer, client: Any, name: str
) -> None:
    client.create_secret(Name=name)
    unvalidated = server.client(parameter_validation=False)
    error = aws_error(
        unvalidated.put_secret_value,
        SecretId=name,
        SecretString="v",
        VersionStages=[f"label-{index}" for index in range(21)],
    )
    assert error["code"] == "ValidationException"
    assert error["message"] == (
        "1 validation error detected: Value at 'versionStages' failed to satisfy constraint: "
        "Member must have length less than or equal to 20"
    )


def test_more_than_twenty_label_attachments_exceed_the_quota(client: Any, name: str) -> None:
    v1 = token()
    client.create_secret(Name=name, SecretString="v", ClientRequestToken=v1)
    for index in range(19):
        client.update_secret_version_stage(
            SecretId=name, VersionStage=f"label-{index}", MoveToVersionId=v1
        )
    error = aws_error(
        client.update_secret_version_stage,
        SecretId=name,
        VersionStage="one-too-many",
        MoveToVersionId=v1,
    )
    assert (error["code"], error["status"]) == ("LimitExceededException", 400)
    assert len(labels(client, name)[v1]) == 20


def test_a_secret_scheduled_for_deletion_refuses_reads_and_writes(client: Any, name: str) -> None:
    v1 = token()
    client.create_secret(Name=name, SecretString="v", ClientRequestToken=v1)
    client.delete_secret(SecretId=name)
    for call, members in (
        (client.get_secret_value, {}),
        (client.put_secret_value, {"SecretString": "w"}),
        (client.update_secret_version_stage, {"VersionStage": "blue", "MoveToVersionId": v1}),
        (client.delete_secret, {}),
    ):
        error = aws_error(call, SecretId=name, **members)
        assert (error["code"], error["message"]) == ("InvalidRequestException", MARKED_FOR_DELETION)
    recreate = aws_error(client.create_secret, Name=name)
    assert (recreate["code"], recreate["message"]) == (
        "InvalidRequestException",
        "You can't create this secret because a secret with this name is already scheduled "
        "for deletion.",
    )


def test_reads_of_unknown_versions_and_labels_are_not_found(client: Any, name: str) -> None:
    v1, v2 = token(), token()
    client.create_secret(Name=name, SecretString="v", ClientRequestToken=v1)
    client.put_secret_value(SecretId=name, SecretString="w", ClientRequestToken=v2)
    unknown_version = token()
    by_id = aws_error(client.get_secret_value, SecretId=name, VersionId=unknown_version)
    assert (by_id["code"], by_id["message"]) == (
        "ResourceNotFoundException",
        f"Secrets Manager can't find the specified secret value for VersionId: {unknown_version}",
    )
    by_label = aws_error(client.get_secret_value, SecretId=name, VersionStage="nobody")
    assert (by_label["code"], by_label["message"]) == (
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret value for staging label: nobody",
    )
    disagreeing = aws_error(
        client.get_secret_value, SecretId=name, VersionId=v1, VersionStage="AWSCURRENT"
    )
    assert (disagreeing["code"], disagreeing["message"]) == (
        "InvalidRequestException",
        "You provided a VersionStage that is not associated to the provided VersionId.",
    )


def test_a_secret_created_without_a_value_has_no_current_version(client: Any, name: str) -> None:
    client.create_secret(Name=name)
    error = aws_error(client.get_secret_value, SecretId=name)
    assert (error["code"], error["message"]) == (
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret value for staging label: AWSCURRENT",
    )


def test_create_refuses_taken_and_invalid_names(client: Any, name: str) -> None:
    client.create_secret(Name=name)
    taken = aws_error(client.create_secret, Name=name)
    assert (taken["code"], taken["message"]) == (
        "ResourceExistsException",
        f"The operation failed because the secret {name} already exists.",
    )
    invalid = aws_error(client.create_secret, Name="has a space")
    assert (invalid["code"], invalid["message"]) == (
        "ValidationException",
        "Invalid name. Must be a valid name containing alphanumeric characters, or any of the "
        "following: -/_+=.@!",
    )


def test_moving_a_held_label_needs_the_version_it_leaves(client: Any, name: str) -> None:
    v1, v2 = token(), token()
    client.create_secret(Name=name, SecretString="v", ClientRequestToken=v1)
    client.put_secret_value(
        SecretId=name, SecretString="w", ClientRequestToken=v2, VersionStages=["blue"]
    )
    current = aws_error(
        client.update_secret_version_stage,
        SecretId=name,
        VersionStage="AWSCURRENT",
        MoveToVersionId=v2,
    )
    assert (current["code"], current["message"]) == (
        "InvalidParameterException",
        "The parameter RemoveFromVersionId can't be empty. Staging label AWSCURRENT is "
        f"currently attached to version {v1}, so you must explicitly reference that version "
        "in RemoveFromVersionId.",
    )
    custom = aws_error(
        client.update_secret_version_stage,
        SecretId=name,
        VersionStage="blue",
        MoveToVersionId=v1,
    )
    assert custom["code"] == "InvalidParameterException"
    wrong_holder = aws_error(
        client.update_secret_version_stage,
        SecretId=name,
        VersionStage="blue",
        RemoveFromVersionId=v1,
    )
    assert wrong_holder["code"] == "InvalidParameterException"
    unknown = aws_error(
        client.update_secret_version_stage,
        SecretId=name,
        VersionStage="green",
        MoveToVersionId=token(),
    )
    assert unknown["code"] == "InvalidParameterException"
    assert labels(client, name) == {v1: ["AWSCURRENT"], v2: ["blue"]}


def test_a_forged_next_token_is_refused(client: Any, name: str) -> None:
    client.create_secret(Name=name, SecretString="v")
    for call, members in (
        (client.list_secrets, {}),
        (client.list_secret_version_ids, {"SecretId": name}),
    ):
        error = aws_error(call, NextToken="bm90LWEtdG9rZW4=", **members)
        assert (error["code"], error["status"]) == ("InvalidNextTokenException", 400)


def test_an_unknown_filter_key_is_a_validation_error(client: Any) -> None:
    error = aws_error(client.list_secrets, Filters=[{"Key": "colour", "Values": ["red"]}])
    assert error["code"] == "ValidationException"
    assert "filters.1.member.key" in error["message"]


def test_a_recovery_window_outside_seven_to_thirty_days_is_refused(client: Any, name: str) -> None:
    client.create_secret(Name=name, SecretString="v")
    for members in (
        {"RecoveryWindowInDays": 6},
        {"RecoveryWindowInDays": 31},
        {"RecoveryWindowInDays": 7, "ForceDeleteWithoutRecovery": True},
    ):
        error = aws_error(client.delete_secret, SecretId=name, **members)
        assert (error["code"], error["status"]) == ("InvalidParameterException", 400)
    assert "DeletedDate" not in client.describe_secret(SecretId=name)


def test_every_answer_names_its_request_in_a_header(server: RunningServer) -> None:
    response = server.call("ListSecrets", {})
    request_id = response.headers["x-amzn-RequestId"]
    assert uuid.UUID(request_id).version == 4
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-amz-json-1.1"
    assert isinstance(response.json()["SecretList"], list)


def test_the_server_leaves_no_secret_value_in_its_log(server: RunningServer, name: str) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    client = server.client()
    client.create_secret(Name=name, SecretString=canary)
    client.get_secret_value(SecretId=name)
    aws_error(client.put_secret_value, SecretId=name, SecretString=canary, SecretBinary=b"x")
    assert canary not in server.log()
    for path in Path(server.database).parent.glob("ledger.db*"):
        assert canary.encode() not in path.read_bytes(), path
