"""Tags and resource policies through a real `secretledger serve`: boto3, the AWS CLI,
and Terraform's call sequences written as boto3 scripts.

The sequences follow the AWS provider (hashicorp/terraform-provider-aws,
internal/service/secretsmanager): `aws_secretsmanager_secret` creates with
CreateSecret (its own ClientRequestToken, `Description` always sent, `Tags`),
waits with DescribeSecret, then PutResourcePolicy; it reads with DescribeSecret
(a `DeletedDate` means gone) plus GetResourcePolicy; it changes tags with
UntagResource (removed keys) then TagResource (new or changed pairs); it removes a
policy with DeleteResourcePolicy; it deletes with DeleteSecret, then DescribeSecret
until the secret reads as gone. `aws_secretsmanager_secret_version` creates with
PutSecretValue and reads with GetSecretValue by VersionId; it adds stages with
UpdateSecretVersionStage (for AWSCURRENT after finding the current version with
ListSecretVersionIds); it deletes by removing every stage but AWSCURRENT, then
reads until the version holds no label, or only AWSCURRENT or AWSPREVIOUS.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from http_harness import (
    ACCOUNT_ID,
    ALICE,
    RunningServer,
    open_ledger,
    recorded_calls,
    start_server,
)
from test_http_clients import aws, aws_json

from ledger.domain import secret_id_for_arn

pytestmark = pytest.mark.slow

TERRAFORM_TOKENS = itertools.count(1)
POLICY_DOCUMENT: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "EnableAnotherAWSAccountToReadTheSecret",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
            "Action": "secretsmanager:GetSecretValue",
            "Resource": "*",
        }
    ],
}
PUBLIC_POLICY = json.dumps(
    {
        "Statement": {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": "*",
        }
    }
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("http-terraform"))
    yield running
    running.stop_cleanly()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Any:
    return server.client()


@pytest.fixture
def name() -> str:
    return f"terraform/{uuid.uuid4().hex[:12]}"


def terraform_token() -> str:
    """The provider's `id.UniqueId()`: "terraform-", a timestamp and a counter."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")
    return f"terraform-{stamp}{next(TERRAFORM_TOKENS):06d}"


def normalized(document: Any) -> str:
    """The provider's `structure.NormalizeJsonString`: compact, keys sorted."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]


# aws_secretsmanager_secret


def secret_create(client: Any, name: str, tags: dict[str, str], policy: Any) -> str:
    created = client.create_secret(
        ClientRequestToken=terraform_token(),
        Description="",
        Name=name,
        Tags=tag_list(tags),
    )
    arn: str = created["ARN"]
    assert "DeletedDate" not in client.describe_secret(SecretId=arn)
    if policy is not None:
        client.put_resource_policy(ResourcePolicy=normalized(policy), SecretId=arn)
    return arn


def secret_read(client: Any, arn: str) -> dict[str, Any] | None:
    """The attributes the provider sets, or None when it drops the resource."""
    try:
        described = client.describe_secret(SecretId=arn)
    except client.exceptions.ResourceNotFoundException:
        return None
    if "DeletedDate" in described:
        return None
    policy = client.get_resource_policy(SecretId=arn)
    assert (policy["ARN"], policy["Name"]) == (arn, described["Name"])
    return {
        "name": described["Name"],
        # The provider sets a missing Description (NV-4: an empty one is omitted) as "".
        "description": described.get("Description", ""),
        "policy": json.loads(policy["ResourcePolicy"]) if "ResourcePolicy" in policy else "",
        "tags": {tag["Key"]: tag["Value"] for tag in described.get("Tags", [])},
    }


def secret_update_tags(client: Any, arn: str, old: dict[str, str], new: dict[str, str]) -> None:
    removed = [key for key in old if key not in new]
    if removed:
        client.untag_resource(SecretId=arn, TagKeys=removed)
    updated = {key: value for key, value in new.items() if old.get(key) != value}
    if updated:
        client.tag_resource(SecretId=arn, Tags=tag_list(updated))


def secret_update_policy(client: Any, arn: str, policy: Any) -> None:
    if policy:
        client.put_resource_policy(ResourcePolicy=normalized(policy), SecretId=arn)
    else:
        client.delete_resource_policy(SecretId=arn)


def secret_delete(client: Any, arn: str, recovery_window_in_days: int) -> None:
    if recovery_window_in_days == 0:
        client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    else:
        client.delete_secret(SecretId=arn, RecoveryWindowInDays=recovery_window_in_days)
    assert secret_read(client, arn) is None


def test_terraform_creates_reads_updates_and_deletes_a_secret(client: Any, name: str) -> None:
    tags = {"Name": "app", "env": "staging"}
    arn = secret_create(client, name, tags, POLICY_DOCUMENT)

    state = secret_read(client, arn)
    assert state == {"name": name, "description": "", "policy": POLICY_DOCUMENT, "tags": tags}
    assert secret_read(client, arn) == state  # a refresh plans no change

    new_tags = {"Name": "app", "env": "prod", "owner": "ops"}
    secret_update_tags(client, arn, tags, new_tags)
    assert secret_read(client, arn) == {**state, "tags": new_tags}
    listed = client.list_secrets(Filters=[{"Key": "tag-value", "Values": ["prod"]}])
    assert [entry["ARN"] for entry in listed["SecretList"]] == [arn]
    assert (
        client.list_secrets(Filters=[{"Key": "tag-value", "Values": ["staging"]}])["SecretList"]
        == []
    )

    secret_update_tags(client, arn, new_tags, {})
    secret_update_policy(client, arn, "")
    assert secret_read(client, arn) == {**state, "tags": {}, "policy": ""}
    assert client.describe_secret(SecretId=arn)["Tags"] == []

    secret_delete(client, arn, 7)
    described = client.describe_secret(SecretId=arn)
    assert "DeletedDate" in described
    answer = client.get_resource_policy(SecretId=arn)
    del answer["ResponseMetadata"]
    assert answer == {"ARN": arn, "Name": name}


def test_terraform_recreates_a_secret_after_a_forced_delete(client: Any, name: str) -> None:
    arn = secret_create(client, name, {"team": "core"}, None)
    assert secret_read(client, arn) == {
        "name": name,
        "description": "",
        "policy": "",
        "tags": {"team": "core"},
    }
    secret_delete(client, arn, 0)

    recreated = secret_create(client, name, {"team": "edge"}, POLICY_DOCUMENT)

    assert recreated != arn
    assert secret_read(client, arn) is None
    assert secret_read(client, recreated) == {
        "name": name,
        "description": "",
        "policy": POLICY_DOCUMENT,
        "tags": {"team": "edge"},
    }


def test_terraforms_tag_and_policy_calls_are_recorded(
    server: RunningServer, client: Any, name: str
) -> None:
    arn = secret_create(client, name, {"a": "1"}, POLICY_DOCUMENT)
    secret_read(client, arn)
    secret_update_tags(client, arn, {"a": "1"}, {"b": "2"})

    reads = [
        call.request["operation"]
        for call in recorded_calls(server)
        if arn in (resource.get("secret_arn") for resource in call.resources)
    ]
    ledger = open_ledger(server)
    try:
        changes = [
            (type(event).__qualname__, event.request["operation"])
            for event in ledger.events.get(secret_id_for_arn(arn))
        ]
    finally:
        ledger.close()
    assert reads == ["DescribeSecret", "DescribeSecret", "GetResourcePolicy"]
    assert changes == [
        ("Secret.Created", "CreateSecret"),
        ("Secret.ResourcePolicyPut", "PutResourcePolicy"),
        ("Secret.Untagged", "UntagResource"),
        ("Secret.Tagged", "TagResource"),
    ]


# aws_secretsmanager_secret_version


def version_create(client: Any, secret_id: str, value: str, stages: list[str] | None = None) -> str:
    request: dict[str, Any] = {
        "ClientRequestToken": terraform_token(),
        "SecretId": secret_id,
        "SecretString": value,
    }
    if stages:
        request["VersionStages"] = stages
    version_id: str = client.put_secret_value(**request)["VersionId"]
    assert client.get_secret_value(SecretId=secret_id, VersionId=version_id)
    return version_id


def version_stages(client: Any, secret_id: str, version_id: str) -> list[str]:
    read = client.get_secret_value(SecretId=secret_id, VersionId=version_id)
    stages: list[str] = read.get("VersionStages", [])
    return stages


def version_add_stages(client: Any, secret_id: str, version_id: str, add: list[str]) -> None:
    listed = False
    for stage in add:
        request = {"MoveToVersionId": version_id, "SecretId": secret_id, "VersionStage": stage}
        if stage == "AWSCURRENT" and not listed:
            versions = client.list_secret_version_ids(SecretId=secret_id)["Versions"]
            current = next(v for v in versions if "AWSCURRENT" in v.get("VersionStages", []))
            request["RemoveFromVersionId"] = current["VersionId"]
            listed = True
        client.update_secret_version_stage(**request)


def version_delete(client: Any, secret_id: str, version_id: str, stages: list[str]) -> None:
    for stage in stages:
        if stage == "AWSCURRENT":
            continue
        client.update_secret_version_stage(
            RemoveFromVersionId=version_id, SecretId=secret_id, VersionStage=stage
        )
    left = version_stages(client, secret_id, version_id)
    assert left in ([], ["AWSCURRENT"], ["AWSPREVIOUS"]), left


def test_terraform_manages_secret_versions(client: Any, name: str) -> None:
    arn = secret_create(client, name, {}, None)
    first = version_create(client, arn, "first")
    first_stages = version_stages(client, arn, first)
    assert first_stages == ["AWSCURRENT"]

    second = version_create(client, arn, "second")  # a new value replaces the resource
    version_delete(client, arn, first, first_stages)
    assert version_stages(client, arn, first) == ["AWSPREVIOUS"]

    staged = version_create(client, arn, "third", ["staging"])
    assert version_stages(client, arn, staged) == ["staging"]
    version_add_stages(client, arn, staged, ["AWSCURRENT"])
    staged_stages = version_stages(client, arn, staged)
    assert staged_stages == ["AWSCURRENT", "staging"]
    assert version_stages(client, arn, second) == ["AWSPREVIOUS"]

    version_delete(client, arn, staged, staged_stages)
    assert version_stages(client, arn, staged) == ["AWSCURRENT"]
    assert client.get_secret_value(SecretId=arn)["SecretString"] == "third"


# boto3 and the AWS CLI


def test_boto3_gets_awss_errors_for_tags_and_policies(client: Any, name: str) -> None:
    client.create_secret(Name=name)
    failures = [
        (
            lambda: client.tag_resource(SecretId=name, Tags=[{"Key": "aws:x", "Value": "1"}]),
            "InvalidParameterException",
            "You can't modify system tags. Tag key: 'aws:x'.",
        ),
        (
            lambda: client.put_resource_policy(SecretId=name, ResourcePolicy="{"),
            "MalformedPolicyDocumentException",
            "This resource policy contains a syntax error.",
        ),
        (
            lambda: client.put_resource_policy(
                SecretId=name, ResourcePolicy="[" * 10_000 + "]" * 10_000
            ),
            "MalformedPolicyDocumentException",
            "This resource policy contains a syntax error.",
        ),
        (
            lambda: client.put_resource_policy(
                SecretId=name, ResourcePolicy=PUBLIC_POLICY, BlockPublicPolicy=True
            ),
            "PublicPolicyException",
            "You can't attach a resource-based policy that allows broad access to the secret.",
        ),
        (
            lambda: client.get_resource_policy(SecretId="Inv Name"),
            "ValidationException",
            "Invalid name. Must be a valid name containing alphanumeric characters, "
            "or any of the following: -/_+=.@!",
        ),
    ]
    for call, code, message in failures:
        with pytest.raises(ClientError) as refused:
            call()
        error = refused.value.response
        assert (error["Error"]["Code"], error["Error"]["Message"]) == (code, message)
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    validated = client.validate_resource_policy(
        SecretId=name, ResourcePolicy="[" * 10_000 + "]" * 10_000
    )
    assert validated["PolicyValidationPassed"] is False
    assert [error["CheckName"] for error in validated["ValidationErrors"]] == ["SYNTAX"]


def test_the_aws_cli_tags_and_reads_policies(server: RunningServer, name: str) -> None:
    aws_json(server, "create-secret", "--name", name)
    assert aws_json(server, "tag-resource", "--secret-id", name, "--tags",
                    "Key=env,Value=prod", "Key=team,Value=core") is None  # fmt: skip
    assert aws_json(server, "untag-resource", "--secret-id", name, "--tag-keys", "team") is None
    described = aws_json(server, "describe-secret", "--secret-id", name)
    assert described["Tags"] == [{"Key": "env", "Value": "prod"}]

    without = aws_json(server, "get-resource-policy", "--secret-id", name)
    assert set(without) == {"ARN", "Name"}
    policy = normalized(POLICY_DOCUMENT)
    put = aws_json(server, "put-resource-policy", "--secret-id", name,
                   "--resource-policy", policy, "--block-public-policy")  # fmt: skip
    assert put == {"ARN": described["ARN"], "Name": name}
    assert aws_json(server, "get-resource-policy", "--secret-id", name)["ResourcePolicy"] == (
        policy
    )
    validated = aws_json(server, "validate-resource-policy", "--resource-policy", PUBLIC_POLICY)
    assert validated["PolicyValidationPassed"] is False
    refused = aws(server, "tag-resource", "--secret-id", name, "--tags", "Key=aws:x,Value=1",
                  principal=ALICE)  # fmt: skip
    assert refused.returncode == 255
    assert "InvalidParameterException" in refused.stderr
    assert aws_json(server, "delete-resource-policy", "--secret-id", name) == put
