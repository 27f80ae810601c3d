"""Issue 9's API additions through `serve` and boto3: GetRandomPassword, LastAccessedDate,
name validation, filters, the empty Description, and operations out of scope, each
answered as AWS shapes it and recorded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from http_harness import (
    ALICE,
    RunningServer,
    calls_with_request_id,
    start_server,
)

pytestmark = pytest.mark.slow

INVALID_NAME_MESSAGE = (
    "Invalid name. Must be a valid name containing alphanumeric characters, "
    "or any of the following: -/_+=.@!"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("http-api-additions"))
    yield running
    running.stop_cleanly()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Any:
    return server.client()


@pytest.fixture
def name() -> str:
    return f"additions/{uuid.uuid4().hex[:12]}"


def error_of(caught: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = caught.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def test_get_random_password_with_boto3(server: RunningServer, client: Any) -> None:
    answer = client.get_random_password(
        PasswordLength=48, ExcludeCharacters="0O1lI", IncludeSpace=True
    )
    password = answer["RandomPassword"]
    assert len(password) == 48 and not set(password) & set("0O1lI")
    [call] = calls_with_request_id(server, answer["ResponseMetadata"]["RequestId"])
    assert call.request["operation"] == "GetRandomPassword" and call.read_only
    assert call.request["parameters"] == {
        "passwordLength": 48,
        "excludeCharacters": "0O1lI",
        "includeSpace": True,
    }
    assert password not in repr(vars(call)) and password not in server.log()
    for path in server.database.parent.glob(server.database.name + "*"):
        assert password.encode() not in path.read_bytes(), path


def test_get_random_password_refusals_with_boto3(client: Any) -> None:
    with pytest.raises(ClientError) as too_short:
        client.get_random_password(PasswordLength=2)
    code, message, status = error_of(too_short)
    assert (code, status) == ("InvalidParameterException", 400) and "too short" in message
    with pytest.raises(ClientError) as nothing_left:
        client.get_random_password(
            ExcludeNumbers=True,
            ExcludePunctuation=True,
            ExcludeUppercase=True,
            ExcludeLowercase=True,
        )
    assert error_of(nothing_left)[0] == "InvalidParameterException"


def test_last_accessed_date_with_boto3(client: Any, name: str) -> None:
    created = client.create_secret(Name=name, SecretString="v1")
    assert "LastAccessedDate" not in client.describe_secret(SecretId=name)
    client.get_secret_value(SecretId=name)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert client.describe_secret(SecretId=name)["LastAccessedDate"] == today
    [entry] = client.list_secrets(Filters=[{"Key": "name", "Values": [name]}])["SecretList"]
    assert entry["LastAccessedDate"] == today
    [version] = client.list_secret_version_ids(SecretId=name)["Versions"]
    assert version["VersionId"] == created["VersionId"]
    assert version["LastAccessedDate"] == today
    listing = client.list_secrets(SortBy="last-accessed-date", SortOrder="desc")
    assert name in [entry["Name"] for entry in listing["SecretList"]]


def test_an_invalid_name_with_boto3(client: Any) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("describe_secret", {"SecretId": "Inv Name"}),
        ("get_secret_value", {"SecretId": "Inv Name"}),
        ("delete_secret", {"SecretId": "Inv Name", "ForceDeleteWithoutRecovery": True}),
        ("create_secret", {"Name": "Inv Name", "SecretString": "v"}),
    ]
    for method, members in calls:
        with pytest.raises(ClientError) as refused:
            getattr(client, method)(**members)
        assert error_of(refused) == ("ValidationException", INVALID_NAME_MESSAGE, 400), method


def test_description_filters_and_the_empty_description_with_boto3(client: Any) -> None:
    prefix = f"described-{uuid.uuid4().hex[:8]}"
    client.create_secret(Name=f"{prefix}-a", Description="a secret")
    client.create_secret(Name=f"{prefix}-an", Description="an secret")
    client.create_secret(Name=f"{prefix}-as", Description="asecret")
    client.create_secret(Name=f"{prefix}-empty", Description="")
    filters = [
        {"Key": "name", "Values": [prefix]},
        {"Key": "description", "Values": ["a secret"]},
    ]
    listing = client.list_secrets(Filters=filters)["SecretList"]
    assert sorted(entry["Name"] for entry in listing) == [f"{prefix}-a", f"{prefix}-an"]
    assert "Description" not in client.describe_secret(SecretId=f"{prefix}-empty")


def test_replication_is_refused_and_recorded_with_boto3(
    server: RunningServer, client: Any, name: str
) -> None:
    client.create_secret(Name=name, SecretString="v1")
    with pytest.raises(ClientError) as refused:
        client.replicate_secret_to_regions(
            SecretId=name, AddReplicaRegions=[{"Region": "eu-central-1"}]
        )
    code, message, status = error_of(refused)
    assert (code, status) == ("InvalidRequestException", 400)
    assert message.startswith("secret-ledger does not support ReplicateSecretToRegions")
    request_id = refused.value.response["ResponseMetadata"]["RequestId"]
    [call] = calls_with_request_id(server, request_id)
    assert (call.error_code, call.error_message) == (code, message)
    assert call.request["principal_arn"] == ALICE.arn
    assert call.request["parameters"] == {"secretId": name}


def test_an_unknown_operation_is_recorded_through_the_server(server: RunningServer) -> None:
    response = server.call("FrobnicateSecret", {"SecretId": "x"})
    assert response.status_code == 400
    assert response.json()["__type"] == "UnknownOperationException"
    [call] = calls_with_request_id(server, response.headers["x-amzn-RequestId"])
    assert call.request["operation"] == "FrobnicateSecret"
    assert call.error_code == "UnknownOperationException"
