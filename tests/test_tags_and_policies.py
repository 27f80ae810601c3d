"""TagResource, UntagResource and the resource-policy operations through the API, on
every backend (docs/policies.md TG-1 to TG-8, RP-1 to RP-12): answers, errors, the
events they append, snapshots, and the audit and label projections."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import (
    INVALID_NAME_MESSAGE,
    MARKED_FOR_DELETION_MESSAGE,
    NOT_FOUND_MESSAGE,
    START,
    FakeClock,
    Harness,
    case,
    token,
)
from test_projections_support import ALICE, Ledger

from ledger.application import Secrets
from ledger.crypto import Keyring
from ledger.domain import ApiCall, Secret
from ledger.policies import NESTING_DEPTH_MAX

NAME = "team/app/db"
SYSTEM_TAG_MESSAGE = "You can't modify system tags. Tag key: 'aws:cloudformation:stack-name'."
POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:role/app"},
                "Action": "secretsmanager:GetSecretValue",
                "Resource": "*",
            }
        ],
    },
    indent=3,
)
PUBLIC_POLICY = (
    '{"Statement": {"Effect": "Allow", "Principal": "*", '
    '"Action": "secretsmanager:GetSecretValue", "Resource": "*"}}'
)


def tags(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in pairs]


def listed(manager: Harness, **members: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = manager.quietly("ListSecrets", **members)["SecretList"]
    return entries


# Tags


def test_tags_are_upserted_in_place_and_shown_as_aws_shows_them(manager: Harness) -> None:
    manager.create(NAME, token(1), "value")
    assert "Tags" not in manager.quietly("DescribeSecret", SecretId=NAME)
    assert "Tags" not in listed(manager)[0]

    manager.clock.advance(timedelta(minutes=1))
    assert manager.call("TagResource", SecretId=NAME, Tags=tags(("t1", "a"), ("t2", "b"))) == {}
    manager.call("TagResource", SecretId=NAME, Tags=tags(("t3", "c"), ("t1", "new")))

    described = manager.quietly("DescribeSecret", SecretId=NAME)
    expected = tags(("t1", "new"), ("t2", "b"), ("t3", "c"))
    assert described["Tags"] == expected
    assert listed(manager)[0]["Tags"] == expected
    assert described["LastChangedDate"] == START + timedelta(minutes=1)

    manager.clock.advance(timedelta(minutes=1))
    assert manager.call("UntagResource", SecretId=NAME, TagKeys=["t1", "absent", "t2"]) == {}
    assert manager.quietly("DescribeSecret", SecretId=NAME)["Tags"] == tags(("t3", "c"))
    manager.call("UntagResource", SecretId=NAME, TagKeys=["t3"])
    manager.call("TagResource", SecretId=NAME, Tags=[])

    described = manager.quietly("DescribeSecret", SecretId=NAME)
    assert described["Tags"] == []
    assert listed(manager)[0]["Tags"] == []
    assert described["LastChangedDate"] == START + timedelta(minutes=2)


def test_tag_events_state_what_changed_and_no_op_requests_append_none(
    manager: Harness,
) -> None:
    arn = manager.create(NAME, Tags=tags(("team", "core")))["ARN"]
    before = manager.log_length()

    manager.call("TagResource", SecretId=arn, Tags=tags(("team", "core"), ("env", "prod")))
    manager.call("TagResource", SecretId=NAME, Tags=tags(("env", "prod")))
    manager.call("UntagResource", SecretId=NAME, TagKeys=["nope", "team", "team"])
    manager.call("UntagResource", SecretId=NAME, TagKeys=["nope"])

    events = manager.events_since(before)
    assert [type(event).__qualname__ for event in events] == [
        "Secret.Tagged",
        "ApiCall.Recorded",
        "Secret.Untagged",
        "ApiCall.Recorded",
    ]
    tagged, no_op, untagged, _ = events
    assert isinstance(tagged, Secret.Tagged) and isinstance(untagged, Secret.Untagged)
    assert tagged.tags == tags(("env", "prod"))
    assert untagged.tag_keys == ["team"]
    assert tagged.request["operation"] == "TagResource"
    assert tagged.request["parameters"] == {
        "secretId": arn,
        "tags": [{"key": "team", "value": "core"}, {"key": "env", "value": "prod"}],
    }
    assert untagged.request["parameters"] == {
        "secretId": NAME,
        "tagKeys": ["nope", "team", "team"],
    }
    assert isinstance(no_op, ApiCall.Recorded) and no_op.error_code is None
    assert no_op.resources == [{"secret_arn": arn}]


def test_list_filters_see_the_tags_as_they_are_now(manager: Harness) -> None:
    manager.create(NAME, Tags=tags(("env", "staging")))
    manager.create("other", Tags=tags(("team", "edge")))

    def names(key: str, value: str) -> list[str]:
        entries = listed(manager, Filters=[{"Key": key, "Values": [value]}])
        return [entry["Name"] for entry in entries]

    manager.call("TagResource", SecretId=NAME, Tags=tags(("env", "prod"), ("owner", "ops")))
    assert names("tag-value", "prod") == [NAME]
    assert names("tag-value", "staging") == []
    assert names("tag-key", "own") == [NAME]

    manager.call("UntagResource", SecretId=NAME, TagKeys=["env", "owner"])
    assert names("tag-key", "env") == []
    assert names("tag-key", "team") == ["other"]


def test_tag_requests_are_refused_as_aws_refuses_them(manager: Harness) -> None:
    arn = manager.create(NAME, Tags=tags(*[(f"k{index}", "") for index in range(50)]))["ARN"]
    manager.create("doomed")
    manager.call("DeleteSecret", SecretId="doomed")
    cases: list[tuple[str, str, dict[str, Any], str, str | None]] = [
        (
            "system key",
            "TagResource",
            {"Tags": tags(("aws:cloudformation:stack-name", "s"))},
            "InvalidParameterException",
            SYSTEM_TAG_MESSAGE,
        ),
        (
            "system key removed",
            "UntagResource",
            {"TagKeys": ["aws:cloudformation:stack-name"]},
            "InvalidParameterException",
            SYSTEM_TAG_MESSAGE,
        ),
        (
            "fifty-first tag",
            "TagResource",
            {"Tags": tags(("k0", "changed"), ("k50", ""))},
            "InvalidParameterException",
            "A secret can have at most 50 tags; this request would leave it with 51.",
        ),
        (
            "key twice",
            "TagResource",
            {"Tags": tags(("k1", "x"), ("k1", "x"))},
            "InvalidParameterException",
            "A request can name each tag key once. Tag key: 'k1' appears twice.",
        ),
        (
            "character",
            "TagResource",
            {"Tags": tags(("k1", "a|b"))},
            "InvalidParameterException",
            None,
        ),
        (
            "key too long",
            "TagResource",
            {"Tags": tags(("k" * 129, ""))},
            "ValidationException",
            None,
        ),
        (
            "value too long",
            "TagResource",
            {"Tags": tags(("k1", "v" * 257))},
            "ValidationException",
            None,
        ),
    ]
    for title, operation, members, code, message in cases:
        with case(title):
            manager.assert_refused(
                operation, {"SecretId": NAME, **members}, code, message, secret_arns=[arn]
            )
    for operation, members in (
        ("TagResource", {"Tags": tags(("a", "b"))}),
        ("UntagResource", {"TagKeys": ["a"]}),
    ):
        with case(operation):
            manager.assert_refused(
                operation,
                {"SecretId": "doomed", **members},
                "InvalidRequestException",
                MARKED_FOR_DELETION_MESSAGE,
            )
            manager.assert_refused(
                operation,
                {"SecretId": "absent", **members},
                "ResourceNotFoundException",
                NOT_FOUND_MESSAGE,
            )
            manager.assert_refused(
                operation,
                {"SecretId": "Inv Name", **members},
                "ValidationException",
                INVALID_NAME_MESSAGE,
            )
    assert len(manager.quietly("DescribeSecret", SecretId=NAME)["Tags"]) == 50


def test_create_secret_tags_follow_the_same_rules(manager: Harness) -> None:
    for title, created_tags, message in (
        ("system key", tags(("aws:cloudformation:stack-name", "s")), SYSTEM_TAG_MESSAGE),
        (
            "fifty-one",
            tags(*[(f"k{index}", "") for index in range(51)]),
            "A secret can have at most 50 tags; this request would leave it with 51.",
        ),
    ):
        with case(title):
            manager.assert_refused(
                "CreateSecret",
                {"Name": NAME, "Tags": created_tags},
                "InvalidParameterException",
                message,
            )
    manager.create(NAME, Tags=[{"Key": "only-key"}])
    assert manager.quietly("DescribeSecret", SecretId=NAME)["Tags"] == tags(("only-key", ""))


# Resource policies


def test_a_policy_is_put_read_and_deleted_verbatim(manager: Harness) -> None:
    created = manager.create(NAME, token(1), "value")
    identity = {"ARN": created["ARN"], "Name": NAME}
    assert manager.call("GetResourcePolicy", SecretId=NAME) == identity

    manager.clock.advance(timedelta(minutes=1))
    before = manager.log_length()
    assert manager.call("PutResourcePolicy", SecretId=NAME, ResourcePolicy=POLICY) == identity
    assert manager.call("PutResourcePolicy", SecretId=created["ARN"], ResourcePolicy=POLICY) == (
        identity
    )
    assert manager.call("GetResourcePolicy", SecretId=NAME) == {
        **identity,
        "ResourcePolicy": POLICY,
    }
    assert manager.quietly("DescribeSecret", SecretId=NAME)["LastChangedDate"] == (
        START + timedelta(minutes=1)
    )
    assert manager.call("DeleteResourcePolicy", SecretId=NAME) == identity
    assert manager.call("DeleteResourcePolicy", SecretId=NAME) == identity
    assert manager.call("GetResourcePolicy", SecretId=NAME) == identity

    events = manager.events_since(before)
    assert [type(event).__qualname__ for event in events] == [
        "Secret.ResourcePolicyPut",
        "ApiCall.Recorded",
        "ApiCall.Recorded",
        "Secret.ResourcePolicyDeleted",
        "ApiCall.Recorded",
        "ApiCall.Recorded",
    ]
    put = events[0]
    assert isinstance(put, Secret.ResourcePolicyPut)
    assert (put.resource_policy, put.block_public_policy) == (POLICY, False)
    assert put.request["parameters"] == {"secretId": NAME, "resourcePolicy": POLICY}
    reads = [events[2], events[5]]
    assert all(isinstance(read, ApiCall.Recorded) and read.read_only for read in reads)


def test_block_public_policy_refuses_broad_access_only_when_asked(manager: Harness) -> None:
    arn = manager.create(NAME)["ARN"]
    manager.assert_refused(
        "PutResourcePolicy",
        {"SecretId": NAME, "ResourcePolicy": PUBLIC_POLICY, "BlockPublicPolicy": True},
        "PublicPolicyException",
        "You can't attach a resource-based policy that allows broad access to the secret.",
        secret_arns=[arn],
    )
    manager.call("PutResourcePolicy", SecretId=NAME, ResourcePolicy=PUBLIC_POLICY)
    assert manager.call("GetResourcePolicy", SecretId=NAME)["ResourcePolicy"] == PUBLIC_POLICY


def test_policy_requests_are_refused_as_aws_refuses_them(manager: Harness) -> None:
    arn = manager.create(NAME)["ARN"]
    manager.create("doomed")
    manager.call("PutResourcePolicy", SecretId="doomed", ResourcePolicy=POLICY)
    manager.call("DeleteSecret", SecretId="doomed")
    deep = "[" * 5_000 + "]" * 5_000
    for title, members, code, message in (
        ("not JSON", {"ResourcePolicy": "{"}, "MalformedPolicyDocumentException",
         "This resource policy contains a syntax error."),
        ("too deep", {"ResourcePolicy": deep}, "MalformedPolicyDocumentException",
         "This resource policy contains a syntax error."),
        ("principal", {"ResourcePolicy": POLICY.replace("role/app", "group/ops")},
         "MalformedPolicyDocumentException",
         "This resource policy contains an unsupported principal."),
        ("too long", {"ResourcePolicy": " " * 20_481}, "ValidationException", None),
        ("empty", {"ResourcePolicy": ""}, "ValidationException", None),
    ):  # fmt: skip
        with case(title):
            manager.assert_refused(
                "PutResourcePolicy", {"SecretId": NAME, **members}, code, message, [arn]
            )
    for operation, members in (
        ("PutResourcePolicy", {"ResourcePolicy": POLICY}),
        ("DeleteResourcePolicy", {}),
    ):
        with case(operation):
            manager.assert_refused(
                operation,
                {"SecretId": "doomed", **members},
                "InvalidRequestException",
                MARKED_FOR_DELETION_MESSAGE,
            )
    for operation, members in (
        ("PutResourcePolicy", {"ResourcePolicy": POLICY}),
        ("DeleteResourcePolicy", {}),
        ("GetResourcePolicy", {}),
        ("ValidateResourcePolicy", {"ResourcePolicy": POLICY}),
    ):
        with case(operation):
            manager.assert_refused(
                operation,
                {"SecretId": "absent", **members},
                "ResourceNotFoundException",
                NOT_FOUND_MESSAGE,
            )
            manager.assert_refused(
                operation,
                {"SecretId": "Inv Name", **members},
                "ValidationException",
                INVALID_NAME_MESSAGE,
            )
    assert manager.call("GetResourcePolicy", SecretId="doomed")["ResourcePolicy"] == POLICY


def test_validation_reports_findings_and_never_fails_on_the_document(manager: Harness) -> None:
    manager.create("doomed")
    manager.call("DeleteSecret", SecretId="doomed")
    passed = {"PolicyValidationPassed": True, "ValidationErrors": []}
    assert manager.call("ValidateResourcePolicy", ResourcePolicy=POLICY) == passed
    assert manager.call("ValidateResourcePolicy", ResourcePolicy=POLICY, SecretId="doomed") == (
        passed
    )
    assert manager.call("ValidateResourcePolicy", ResourcePolicy=PUBLIC_POLICY) == {
        "PolicyValidationPassed": False,
        "ValidationErrors": [
            {
                "CheckName": "BROAD_ACCESS",
                "ErrorMessage": "Statement 1 allows a public principal: grant to specific "
                "principals, or pin the statement to fixed values of aws:SourceArn, "
                "aws:SourceVpc, aws:SourceVpce, aws:SourceAccount, aws:PrincipalAccount, "
                "aws:PrincipalArn or aws:PrincipalOrgID.",
            }
        ],
    }
    deep = '{"Statement": ' + "[" * 10_000 + "]" * 10_000 + "}"
    assert manager.call("ValidateResourcePolicy", ResourcePolicy=deep[:20_480]) == {
        "PolicyValidationPassed": False,
        "ValidationErrors": [
            {
                "CheckName": "SYNTAX",
                "ErrorMessage": f"The policy nests deeper than {NESTING_DEPTH_MAX} levels.",
            }
        ],
    }


# State that outlives the cache: snapshots


def test_tags_and_policy_survive_snapshots_and_a_restart(tmp_path: Path) -> None:
    database = str(tmp_path / "ledger.db")
    keyring = Keyring.in_memory()
    writer = Secrets(database, keyring=keyring, clock=FakeClock())
    try:
        api = Harness(writer, FakeClock()).quiet_api
        api.call("CreateSecret", {"Name": NAME})
        api.call("PutResourcePolicy", {"SecretId": NAME, "ResourcePolicy": POLICY})
        for number in range(Secrets.snapshotting_intervals[Secret]):
            api.call("TagResource", {"SecretId": NAME, "Tags": tags(("n", str(number)))})
        api.call("UntagResource", {"SecretId": NAME, "TagKeys": ["n"]})
        assert writer.snapshots is not None
        [snapshot] = list(writer.snapshots.get(writer.secret_ids()[0]))
        assert snapshot.state["resource_policy"] == POLICY
    finally:
        writer.close()
    reader = Secrets(database, keyring=keyring, clock=FakeClock())
    try:
        api = Harness(reader, FakeClock()).quiet_api
        assert api.call("DescribeSecret", {"SecretId": NAME})["Tags"] == []
        assert api.call("GetResourcePolicy", {"SecretId": NAME})["ResourcePolicy"] == POLICY
    finally:
        reader.close()


def test_a_v2_snapshot_is_upcast_exactly() -> None:
    tagged: dict[str, Any] = {"tags": tags(("a", "b"))}
    untagged: dict[str, Any] = {"tags": []}
    Secret.upcast_v2_v3(tagged)
    Secret.upcast_v2_v3(untagged)
    assert (tagged["ever_tagged"], tagged["resource_policy"]) == (True, None)
    assert (untagged["ever_tagged"], untagged["resource_policy"]) == (False, None)


# The read side


@pytest.fixture
def ledger(backend: str) -> Iterator[Ledger]:
    ledger = Ledger(backend)
    yield ledger
    ledger.close()


def test_the_audit_records_each_call_and_the_labels_projection_follows(ledger: Ledger) -> None:
    created = ledger.call("CreateSecret", Name=NAME, ClientRequestToken=token(1), SecretString="v")
    ledger.tick()
    ledger.call("TagResource", SecretId=NAME, Tags=tags(("env", "prod")))
    ledger.call("UntagResource", SecretId=NAME, TagKeys=["env"])
    ledger.call("PutResourcePolicy", SecretId=NAME, ResourcePolicy=POLICY, BlockPublicPolicy=True)
    ledger.call("GetResourcePolicy", SecretId=NAME)
    ledger.call("ValidateResourcePolicy", ResourcePolicy=POLICY)
    ledger.call("DeleteResourcePolicy", SecretId=NAME)
    assert ledger.attempt("TagResource", SecretId=NAME, Tags=tags(("aws:x", ""))) == (
        "InvalidParameterException"
    )

    model = ledger.caught_up()
    records = [json.loads(record.text) for record in model.audit.records()]
    shown = [
        (
            record["eventName"],
            record["readOnly"],
            record["requestParameters"],
            record.get("responseElements"),
            record.get("errorCode"),
        )
        for record in records[1:]
    ]
    arn = {"arn": created["ARN"]}
    assert shown == [
        ("TagResource", False, {"secretId": NAME, "tags": [{"key": "env", "value": "prod"}]},
         None, None),
        ("UntagResource", False, {"secretId": NAME, "tagKeys": ["env"]}, None, None),
        ("PutResourcePolicy", False,
         {"secretId": NAME, "resourcePolicy": POLICY, "blockPublicPolicy": True}, arn, None),
        ("GetResourcePolicy", True, {"secretId": NAME}, None, None),
        ("ValidateResourcePolicy", True, {"resourcePolicy": POLICY}, None, None),
        ("DeleteResourcePolicy", False, {"secretId": NAME}, arn, None),
        ("TagResource", False, {"secretId": NAME, "tags": [{"key": "aws:x", "value": ""}]},
         None, "InvalidParameterException"),
    ]  # fmt: skip
    assert all(record["userIdentity"]["arn"] == ALICE for record in records)
    assert model.labels.label_map(NAME).version_ids_to_stages() == {token(1): ["AWSCURRENT"]}
