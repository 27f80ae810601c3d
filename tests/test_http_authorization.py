"""Identity and resource policies enforced through `secretledger serve`, with boto3.

Each scenario follows one of the permission-policy examples of AWS's Secrets
Manager User Guide ("Permissions policy examples", "Identity-based policies"),
rewritten for this ledger's account and names: read one secret; by tag; by
VersionStage; metadata without values; a grant to another principal by a
secret's resource policy; an explicit deny beating a resource policy's allow. Each
is driven by its own principal of one credentials file (rules AZ-1 to AZ-14 in
docs/authorization.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from click.testing import CliRunner

from ledger.auth import Principal, toml_string
from ledger.cli import main
from tests.http_harness import (
    ACCOUNT_ID,
    ALICE,
    REGION,
    RunningServer,
    recorded_calls,
    start_server,
)

PREFIX = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:"


def principal(name: str, number: int) -> Principal:
    return Principal(
        access_key_id=f"AKIAEXAMPLE{name.upper()[:5]:0<5}{number:04d}",
        secret_access_key=f"{name}-secret-access-key-{number:020d}",
        arn=f"arn:aws:iam::{ACCOUNT_ID}:user/{name}",
    )


READER = principal("reader", 11)
TAGGED = principal("tagged", 12)
STAGED = principal("staged", 13)
AUDITOR = principal("auditor", 14)
BOB = principal("bob", 15)
CREATOR = principal("creator", 16)


def policy(*statements: Mapping[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


POLICIES = {
    # "Read one secret (attach to an identity)", the ARN's suffix matched by ??????,
    # plus BatchGetSecretValue, which names no resource.
    READER: policy(
        {
            "Sid": "ReadOneSecret",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": f"{PREFIX}app/one-??????",
        },
        {"Effect": "Allow", "Action": "secretsmanager:BatchGetSecretValue", "Resource": "*"},
    ),
    # "Allow access to secrets with a specific tag".
    TAGGED: policy(
        {
            "Effect": "Allow",
            "Action": "secretsmanager:DescribeSecret",
            "Resource": "*",
            "Condition": {"StringEquals": {"secretsmanager:ResourceTag/ServerName": "ServerABC"}},
        }
    ),
    # The identity-based policy example: describe TestEnv/*, read only AWSCURRENT.
    STAGED: policy(
        {
            "Sid": "Stmt1DescribeSecret",
            "Effect": "Allow",
            "Action": ["secretsmanager:DescribeSecret"],
            "Resource": f"{PREFIX}TestEnv/*",
        },
        {
            "Sid": "Stmt2GetSecretValue",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": f"{PREFIX}TestEnv/*",
            "Condition": {"ForAnyValue:StringLike": {"secretsmanager:VersionStage": "AWSCURRENT"}},
        },
    ),
    # "Access metadata on all secrets", and never a value.
    AUDITOR: policy(
        {
            "Sid": "AuditMetadata",
            "Effect": "Allow",
            "Action": ["secretsmanager:DescribeSecret", "secretsmanager:List*"],
            "Resource": "*",
        },
        {
            "Sid": "NeverValues",
            "Effect": "Deny",
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue"],
            "Resource": "*",
        },
    ),
    # Bob may list; what else he may do, a secret's resource policy says.
    BOB: policy({"Effect": "Allow", "Action": "secretsmanager:ListSecrets", "Resource": "*"}),
    # "Create secrets", limited to team/* and to requests tagged team=payments.
    CREATOR: policy(
        {
            "Sid": "CreateTeamSecrets",
            "Effect": "Allow",
            "Action": ["secretsmanager:CreateSecret", "secretsmanager:TagResource"],
            "Resource": f"{PREFIX}team/*",
            "Condition": {"StringEquals": {"aws:RequestTag/team": "payments"}},
        }
    ),
}


def write_credentials(path: Path, principals: Sequence[Principal]) -> None:
    lines = []
    for each in principals:
        lines += [
            "[[principals]]",
            f"access_key_id = {toml_string(each.access_key_id)}",
            f"secret_access_key = {toml_string(each.secret_access_key)}",
            f"arn = {toml_string(each.arn)}",
        ]
        if each in POLICIES:
            lines.append(f"policy = '''{POLICIES[each]}'''")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("authorization")
    write_credentials(directory / "credentials.toml", [ALICE, *POLICIES])
    running = start_server(directory)
    admin = running.client(ALICE)
    admin.create_secret(Name="app/one", SecretString="one-value")
    admin.create_secret(Name="app/two", SecretString="two-value")
    admin.create_secret(
        Name="tagged/abc", SecretString="x", Tags=[{"Key": "ServerName", "Value": "ServerABC"}]
    )
    admin.create_secret(
        Name="tagged/xyz", SecretString="x", Tags=[{"Key": "ServerName", "Value": "ServerXYZ"}]
    )
    admin.create_secret(Name="TestEnv/db", SecretString="old")
    admin.put_secret_value(SecretId="TestEnv/db", SecretString="new")
    shared = admin.create_secret(Name="shared/db", SecretString="shared-value")["ARN"]
    admin.put_resource_policy(
        SecretId="shared/db",
        BlockPublicPolicy=True,
        ResourcePolicy=policy(
            {
                "Sid": "BobAndAuditorRead",
                "Effect": "Allow",
                "Principal": {"AWS": [BOB.arn, AUDITOR.arn]},
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                "Resource": "*",
            },
            {
                "Sid": "NotAlice",
                "Effect": "Deny",
                "Principal": {"AWS": ALICE.arn},
                "Action": "secretsmanager:GetSecretValue",
                "Resource": shared,
            },
        ),
    )
    try:
        yield running
    finally:
        running.stop()


def refused(call: Any, **members: Any) -> str:
    """The AccessDeniedException message of a refused call."""
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        call(**members)
    error = raised.value.response["Error"]
    assert error["Code"] == "AccessDeniedException", error
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    message: str = error["Message"]
    return message


def no_identity_policy_allows(who: Principal, action: str, resource: str | None) -> str:
    where = f" on resource: {resource}" if resource is not None else ""
    return (
        f"User: {who.arn} is not authorized to perform: secretsmanager:{action}{where} "
        f"because no identity-based policy allows the secretsmanager:{action} action"
    )


def explicit_deny(who: Principal, action: str, resource: str | None, policy_kind: str) -> str:
    where = f" on resource: {resource}" if resource is not None else ""
    article = "an" if policy_kind == "identity" else "a"
    return (
        f"User: {who.arn} is not authorized to perform: secretsmanager:{action}{where} "
        f"with an explicit deny in {article} {policy_kind}-based policy"
    )


def test_read_one_secret(server: RunningServer) -> None:
    reader = server.client(READER)
    assert reader.get_secret_value(SecretId="app/one")["SecretString"] == "one-value"
    assert refused(reader.get_secret_value, SecretId="app/two") == no_identity_policy_allows(
        READER, "GetSecretValue", "app/two"
    )
    # The resource is echoed as the caller named it; a secret that does not exist is
    # refused before it is looked up, as AWS does.
    assert refused(reader.get_secret_value, SecretId="no/such") == no_identity_policy_allows(
        READER, "GetSecretValue", "no/such"
    )
    assert refused(reader.describe_secret, SecretId="app/one") == no_identity_policy_allows(
        READER, "DescribeSecret", "app/one"
    )
    assert refused(reader.list_secrets) == no_identity_policy_allows(READER, "ListSecrets", None)


def test_batch_get_reports_each_secret_it_may_not_read_in_errors(server: RunningServer) -> None:
    answer = server.client(READER).batch_get_secret_value(SecretIdList=["app/one", "app/two"])
    assert [value["Name"] for value in answer["SecretValues"]] == ["app/one"]
    assert answer["Errors"] == [
        {
            "SecretId": "app/two",
            "ErrorCode": "AccessDeniedException",
            "Message": no_identity_policy_allows(READER, "GetSecretValue", "app/two"),
        }
    ]
    call = recorded_calls(server)[-1]
    assert call.request["operation"] == "BatchGetSecretValue" and call.error_code is None
    assert call.denials == [
        {
            "action": "secretsmanager:GetSecretValue",
            "resource": f"{PREFIX}app/two-" + call.denials[0]["resource"][-6:],
            "decision": "implicit-deny",
            "policy_type": None,
            "statement_index": None,
            "sid": None,
        }
    ]


def test_access_by_tag(server: RunningServer) -> None:
    tagged = server.client(TAGGED)
    assert tagged.describe_secret(SecretId="tagged/abc")["Name"] == "tagged/abc"
    assert refused(tagged.describe_secret, SecretId="tagged/xyz") == no_identity_policy_allows(
        TAGGED, "DescribeSecret", "tagged/xyz"
    )
    # The tag is read as the secret has it now.
    server.client(ALICE).tag_resource(
        SecretId="tagged/xyz", Tags=[{"Key": "ServerName", "Value": "ServerABC"}]
    )
    assert tagged.describe_secret(SecretId="tagged/xyz")["Name"] == "tagged/xyz"


def test_access_by_version_stage(server: RunningServer) -> None:
    """AZ-8: VersionStage has a value only when the request names a stage."""
    staged = server.client(STAGED)
    answer = staged.get_secret_value(SecretId="TestEnv/db", VersionStage="AWSCURRENT")
    assert answer["SecretString"] == "new"
    for members in ({"VersionStage": "AWSPREVIOUS"}, {}):
        assert refused(
            staged.get_secret_value, SecretId="TestEnv/db", **members
        ) == no_identity_policy_allows(STAGED, "GetSecretValue", "TestEnv/db")
    assert staged.describe_secret(SecretId="TestEnv/db")["Name"] == "TestEnv/db"


def test_an_auditor_lists_and_describes_but_reads_no_value(server: RunningServer) -> None:
    auditor = server.client(AUDITOR)
    names = {entry["Name"] for entry in auditor.list_secrets()["SecretList"]}
    assert {"app/one", "app/two", "shared/db"} <= names  # AZ-13: ListSecrets is not filtered
    assert auditor.describe_secret(SecretId="app/one")["Name"] == "app/one"
    assert auditor.list_secret_version_ids(SecretId="app/one")["Versions"]
    assert refused(auditor.get_secret_value, SecretId="app/one") == explicit_deny(
        AUDITOR, "GetSecretValue", "app/one", "identity"
    )
    # Explicit deny in the identity policy beats the resource policy's allow.
    assert refused(auditor.get_secret_value, SecretId="shared/db") == explicit_deny(
        AUDITOR, "GetSecretValue", "shared/db", "identity"
    )
    assert refused(auditor.batch_get_secret_value, SecretIdList=["app/one"]) == explicit_deny(
        AUDITOR, "BatchGetSecretValue", None, "identity"
    )

    denied = [
        call
        for call in recorded_calls(server)
        if call.request["principal_arn"] == AUDITOR.arn
        and call.error_code == "AccessDeniedException"
    ]
    assert [(call.request["operation"], call.denials[0]["sid"]) for call in denied] == [
        ("GetSecretValue", "NeverValues"),
        ("GetSecretValue", "NeverValues"),
        ("BatchGetSecretValue", "NeverValues"),
    ]
    assert {call.denials[0]["decision"] for call in denied} == {"explicit-deny"}

    query = ["audit", "query", "--error-code", "AccessDeniedException", "--json"]
    result = CliRunner().invoke(
        main, [*query, "--principal", AUDITOR.arn, "--db", str(server.database)]
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["eventName"] for record in records] == [
        "GetSecretValue",
        "GetSecretValue",
        "BatchGetSecretValue",
    ]
    assert {record["errorCode"] for record in records} == {"AccessDeniedException"}
    assert records[0]["errorMessage"] == explicit_deny(
        AUDITOR, "GetSecretValue", "app/one", "identity"
    )
    assert records[2]["additionalEventData"]["secretLedger.denials"] == [
        {
            "action": "secretsmanager:BatchGetSecretValue",
            "resource": "*",
            "decision": "explicit-deny",
            "policyType": "identity",
            "statementIndex": 2,
            "sid": "NeverValues",
        }
    ]


def test_a_resource_policy_grants_another_principal(server: RunningServer) -> None:
    bob = server.client(BOB)
    assert bob.get_secret_value(SecretId="shared/db")["SecretString"] == "shared-value"
    assert bob.describe_secret(SecretId="shared/db")["Name"] == "shared/db"
    assert refused(bob.get_secret_value, SecretId="app/one") == no_identity_policy_allows(
        BOB, "GetSecretValue", "app/one"
    )
    assert refused(bob.put_secret_value, SecretId="shared/db", SecretString="mine") == (
        no_identity_policy_allows(BOB, "PutSecretValue", "shared/db")
    )


def test_a_resource_policy_deny_stops_an_administrator(server: RunningServer) -> None:
    admin = server.client(ALICE)
    assert refused(admin.get_secret_value, SecretId="shared/db") == explicit_deny(
        ALICE, "GetSecretValue", "shared/db", "resource"
    )
    assert admin.describe_secret(SecretId="shared/db")["Name"] == "shared/db"
    denial = recorded_calls(server)[-2].denials
    assert [(each["policy_type"], each["statement_index"], each["sid"]) for each in denial] == [
        ("resource", 2, "NotAlice")
    ]


def test_create_by_name_pattern_and_request_tags(server: RunningServer) -> None:
    creator = server.client(CREATOR)
    payments = [{"Key": "team", "Value": "payments"}]
    assert creator.create_secret(Name="team/api", Tags=payments)["Name"] == "team/api"
    assert refused(creator.create_secret, Name="other/api", Tags=payments) == (
        no_identity_policy_allows(CREATOR, "CreateSecret", "other/api")
    )
    assert refused(
        creator.create_secret, Name="team/db", Tags=[{"Key": "team", "Value": "search"}]
    ) == no_identity_policy_allows(CREATOR, "CreateSecret", "team/db")
    assert refused(creator.create_secret, Name="team/untagged") == no_identity_policy_allows(
        CREATOR, "CreateSecret", "team/untagged"
    )
