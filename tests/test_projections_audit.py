"""The audit projection writes one CloudTrail record per call, and service events.

Records are checked field by field against docs/audit.md; export files
against CloudTrail's naming and format.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_projections_support import (
    ACCESS_KEY_ID,
    ACCOUNT_ID,
    ALICE,
    ROTATOR,
    START,
    Ledger,
    token,
)

from ledger.api import Caller
from ledger.domain import AWSPENDING
from ledger.errors import UnrecognizedClientException
from projections import AuditFilter
from projections.cloudtrail import read_log_file, user_identity

REGION = "us-east-1"
SERVICE = "secretsmanager.amazonaws.com"
FILE_NAME = re.compile(
    rf"{ACCOUNT_ID}_CloudTrail_{REGION}_(\d{{8}}T\d{{4}}Z)_([0-9a-f]{{16}})\.json\.gz"
)


@pytest.fixture
def ledger(backend: str) -> Iterator[Ledger]:
    ledger = Ledger(backend)
    yield ledger
    ledger.close()


def records(ledger: Ledger, audit_filter: AuditFilter | None = None) -> list[dict[str, Any]]:
    model = ledger.caught_up()
    return [json.loads(record.text) for record in model.audit.records(audit_filter)]


def request_id(number: int) -> str:
    return f"00000000-0000-4000-8000-{number:012d}"


def test_a_put_makes_one_record_shaped_like_cloudtrails(ledger: Ledger) -> None:
    created = ledger.call(
        "CreateSecret", Name="payments/api-key", request_id=request_id(1), Description="api"
    )
    ledger.tick(11.5)
    ledger.call(
        "PutSecretValue",
        request_id=request_id(2),
        SecretId="payments/api-key",
        ClientRequestToken=token(1),
        SecretString="the value",
    )

    put = records(ledger)[1]

    assert put == {
        "eventVersion": "1.11",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "alice",
            "arn": ALICE,
            "accountId": ACCOUNT_ID,
            "accessKeyId": ACCESS_KEY_ID,
            "userName": "alice",
        },
        "eventTime": "2025-03-19T09:00:11Z",
        "eventSource": SERVICE,
        "eventName": "PutSecretValue",
        "awsRegion": REGION,
        "sourceIPAddress": "127.0.0.1",
        "userAgent": "secret-ledger/0.1.0",
        "requestParameters": {"secretId": "payments/api-key", "clientRequestToken": token(1)},
        "responseElements": {"arn": created["ARN"]},
        "additionalEventData": {"secretLedger.secretArn": created["ARN"]},
        "requestID": request_id(2),
        "eventID": put["eventID"],
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT_ID,
        "eventCategory": "Management",
    }
    assert re.fullmatch(r"[0-9a-f-]{36}", put["eventID"])


def test_every_call_makes_exactly_one_record_in_log_order(ledger: Ledger) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("CreateSecret", {"Name": "app/db", "ClientRequestToken": token(1), "SecretString": "a"}),
        (
            "PutSecretValue",
            {
                "SecretId": "app/db",
                "ClientRequestToken": token(2),
                "SecretString": "b",
                "VersionStages": [AWSPENDING],
            },
        ),
        (
            "PutSecretValue",
            {
                "SecretId": "app/db",
                "ClientRequestToken": token(2),
                "SecretString": "b",
                "VersionStages": [AWSPENDING],
            },
        ),
        (
            "UpdateSecretVersionStage",
            {"SecretId": "app/db", "VersionStage": "blue", "MoveToVersionId": token(1)},
        ),
        ("UpdateSecret", {"SecretId": "app/db", "Description": "the database"}),
        ("GetSecretValue", {"SecretId": "app/db"}),
        ("GetSecretValue", {"SecretId": "app/unknown"}),
        ("DescribeSecret", {"SecretId": "app/db"}),
        ("ListSecretVersionIds", {"SecretId": "app/db"}),
        ("ListSecrets", {}),
        ("BatchGetSecretValue", {"SecretIdList": ["app/db", "app/unknown"]}),
        ("RestoreSecret", {"SecretId": "app/db"}),
        ("DeleteSecret", {"SecretId": "app/db", "RecoveryWindowInDays": 7}),
        (
            "PutSecretValue",
            {"SecretId": "app/db", "ClientRequestToken": token(3), "SecretString": "c"},
        ),
        ("RestoreSecret", {"SecretId": "app/db"}),
        ("DeleteSecret", {"SecretId": "app/db", "ForceDeleteWithoutRecovery": True}),
    ]
    for number, (operation, members) in enumerate(calls):
        ledger.tick()
        ledger.attempt(operation, request_id=request_id(number), **members)

    api_calls = [record for record in records(ledger) if record["eventType"] == "AwsApiCall"]

    assert [record["requestID"] for record in api_calls] == [
        request_id(number) for number in range(len(calls))
    ]
    assert [record["eventName"] for record in api_calls] == [operation for operation, _ in calls]
    read_only = {
        "GetSecretValue",
        "DescribeSecret",
        "ListSecretVersionIds",
        "ListSecrets",
        "BatchGetSecretValue",
    }
    for record in api_calls:
        assert record["readOnly"] is (record["eventName"] in read_only)
        assert "secretString" not in json.dumps(record)
    assert len({record["eventID"] for record in api_calls}) == len(calls)


def test_a_failed_call_carries_its_error_and_no_response(ledger: Ledger) -> None:
    ledger.call("CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="a")
    ledger.call("DeleteSecret", SecretId="app/db", RecoveryWindowInDays=7)
    ledger.tick()
    ledger.attempt("GetSecretValue", request_id=request_id(9), SecretId="app/db")

    failed = records(ledger, AuditFilter(event_name="GetSecretValue"))

    assert len(failed) == 1
    assert failed[0]["errorCode"] == "InvalidRequestException"
    assert failed[0]["errorMessage"] == (
        "You can't perform this operation on the secret because it was marked for deletion."
    )
    assert failed[0]["responseElements"] is None
    assert failed[0]["requestParameters"] == {"secretId": "app/db"}
    assert failed[0]["readOnly"] is True


def test_a_read_names_the_version_it_served_in_project_extensions(ledger: Ledger) -> None:
    created = ledger.call(
        "CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="a"
    )
    ledger.call("GetSecretValue", SecretId=created["ARN"][:-7])
    ledger.call("BatchGetSecretValue", SecretIdList=["app/db", created["ARN"]])

    read, batch = records(ledger, AuditFilter(secret="app/db"))[1:]

    assert read["responseElements"] is None
    assert read["additionalEventData"] == {
        "secretLedger.secretArn": created["ARN"],
        "secretLedger.resolvedVersionId": token(1),
    }
    assert batch["additionalEventData"] == {
        "secretLedger.resources": [
            {"secretArn": created["ARN"], "resolvedVersionId": token(1)},
            {"secretArn": created["ARN"], "resolvedVersionId": token(1)},
        ]
    }


def test_a_refused_caller_is_recorded_as_unknown(ledger: Ledger) -> None:
    refused = Caller(principal_arn="", access_key_id="AKIAUNKNOWNKEY000000", request_id="r-1")
    error = UnrecognizedClientException("The security token included in the request is invalid.")
    ledger.api.record_denial("GetSecretValue", {}, refused, error)

    (record,) = records(ledger)

    assert record["userIdentity"] == {
        "type": "Unknown",
        "principalId": "AKIAUNKNOWNKEY000000",
        "accountId": ACCOUNT_ID,
        "accessKeyId": "AKIAUNKNOWNKEY000000",
    }
    assert record["errorCode"] == "UnrecognizedClientException"
    assert record["requestParameters"] is None


def test_user_identities_follow_the_principal_arn() -> None:
    assert user_identity(ROTATOR, "ASIAEXAMPLE", "999999999999") == {
        "type": "AssumedRole",
        "principalId": "rotator-role:rotation-7",
        "arn": ROTATOR,
        "accountId": ACCOUNT_ID,
        "accessKeyId": "ASIAEXAMPLE",
    }
    assert user_identity("arn:aws:iam::111122223333:user/ci/deployer", "", ACCOUNT_ID) == {
        "type": "IAMUser",
        "principalId": "deployer",
        "arn": "arn:aws:iam::111122223333:user/ci/deployer",
        "accountId": "111122223333",
        "userName": "deployer",
    }
    assert user_identity("arn:aws:iam::111122223333:root", "", ACCOUNT_ID)["type"] == "Unknown"


def test_deletion_and_restoration_make_service_events_per_version(ledger: Ledger) -> None:
    created = ledger.call(
        "CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="a"
    )
    ledger.call("PutSecretValue", SecretId="app/db", ClientRequestToken=token(2), SecretString="b")
    ledger.tick()
    ledger.call("DeleteSecret", request_id=request_id(1), SecretId="app/db", RecoveryWindowInDays=7)
    ledger.call("RestoreSecret", SecretId="app/db")
    ledger.call("DeleteSecret", SecretId="app/db", RecoveryWindowInDays=7)
    ledger.clock.advance(timedelta(days=7, seconds=1))
    ledger.attempt("DescribeSecret", SecretId="app/db")

    trail = [
        (
            record["eventType"],
            record["eventName"],
            record.get("additionalEventData", {}).get("secretLedger.versionId"),
        )
        for record in records(ledger)
    ]

    assert trail[2:] == [
        ("AwsApiCall", "DeleteSecret", None),
        ("AwsServiceEvent", "StartSecretVersionDelete", token(1)),
        ("AwsServiceEvent", "StartSecretVersionDelete", token(2)),
        ("AwsApiCall", "RestoreSecret", None),
        ("AwsServiceEvent", "CancelSecretVersionDelete", token(1)),
        ("AwsServiceEvent", "CancelSecretVersionDelete", token(2)),
        ("AwsApiCall", "DeleteSecret", None),
        ("AwsServiceEvent", "StartSecretVersionDelete", token(1)),
        ("AwsServiceEvent", "StartSecretVersionDelete", token(2)),
        # The purge is the service's own doing: service events only, then the failed read.
        ("AwsServiceEvent", "EndSecretVersionDelete", token(1)),
        ("AwsServiceEvent", "EndSecretVersionDelete", token(2)),
        ("AwsApiCall", "DescribeSecret", None),
    ]
    delete = records(ledger, AuditFilter(event_name="DeleteSecret"))[0]
    assert delete["responseElements"] == {
        "arn": created["ARN"],
        "name": "app/db",
        "deletionDate": "2025-03-26T09:00:01Z",
    }
    start = records(ledger, AuditFilter(event_name="StartSecretVersionDelete"))[0]
    assert start["userIdentity"] == {"accountId": ACCOUNT_ID, "invokedBy": SERVICE}
    assert start["sourceIPAddress"] == start["userAgent"] == SERVICE
    assert start["requestParameters"] is None and start["responseElements"] is None
    assert start["additionalEventData"]["SecretId"] == created["ARN"]
    assert start["requestID"] == request_id(1)
    assert start["readOnly"] is False


def test_a_forced_delete_ends_every_version_at_once(ledger: Ledger) -> None:
    """Its detachments and ``VersionDestroyed`` events come first in the log (D-1), but
    the records are made by ``Deleted``: the call with its deletion date, then one end
    per version the secret had when the request began."""
    ledger.call("CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="a")
    ledger.call("PutSecretValue", SecretId="app/db", ClientRequestToken=token(2), SecretString="b")
    ledger.call("DeleteSecret", SecretId="app/db", ForceDeleteWithoutRecovery=True)

    trail = [
        (
            record["eventType"],
            record["eventName"],
            record.get("additionalEventData", {}).get("secretLedger.versionId"),
        )
        for record in records(ledger)
    ]

    assert trail == [
        ("AwsApiCall", "CreateSecret", None),
        ("AwsApiCall", "PutSecretValue", None),
        ("AwsApiCall", "DeleteSecret", None),
        ("AwsServiceEvent", "EndSecretVersionDelete", token(1)),
        ("AwsServiceEvent", "EndSecretVersionDelete", token(2)),
    ]
    assert records(ledger)[2]["responseElements"]["deletionDate"] == "2025-03-19T09:00:00Z"


def test_retention_and_an_abandoned_rotation_are_service_events(ledger: Ledger) -> None:
    ledger.call("CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="a")
    ledger.call(
        "UpdateSecretVersionStage",
        SecretId="app/db",
        VersionStage=AWSPENDING,
        MoveToVersionId=token(1),
    )
    # A manual put while AWSCURRENT carries AWSPENDING takes AWSPENDING off (P6).
    ledger.call("PutSecretValue", SecretId="app/db", ClientRequestToken=token(2), SecretString="b")
    for number in range(3, 101):
        ledger.call(
            "PutSecretValue", SecretId="app/db", ClientRequestToken=token(number), SecretString="v"
        )
    ledger.clock.advance(timedelta(hours=25))
    ledger.call(
        "PutSecretValue", SecretId="app/db", ClientRequestToken=token(101), SecretString="v"
    )

    abandoned = records(ledger, AuditFilter(event_name="RotationAbandoned"))
    removed = records(ledger, AuditFilter(event_name="EndSecretVersionDelete"))

    assert [record["additionalEventData"]["secretLedger.versionId"] for record in abandoned] == [
        token(1)
    ]
    assert [record["additionalEventData"]["secretLedger.versionId"] for record in removed] == [
        token(1)
    ]


def test_queries_filter_by_secret_principal_event_name_and_time(ledger: Ledger) -> None:
    first = ledger.call("CreateSecret", Name="app/db")
    ledger.call("DeleteSecret", SecretId="app/db", ForceDeleteWithoutRecovery=True)
    middle = ledger.quiet_moment()
    second = ledger.call("CreateSecret", Name="app/db", principal=ROTATOR)
    ledger.attempt("GetSecretValue", SecretId="app/db", principal=ROTATOR)
    ledger.attempt("GetSecretValue", SecretId="other", principal=ROTATOR)

    def names(audit_filter: AuditFilter) -> list[str]:
        return [record["eventName"] for record in records(ledger, audit_filter)]

    # A name matches every secret that had it, and calls that named it; a full ARN
    # matches its own secret only.
    assert names(AuditFilter(secret="app/db")) == [
        "CreateSecret",
        "DeleteSecret",
        "CreateSecret",
        "GetSecretValue",
    ]
    assert names(AuditFilter(secret=second["ARN"])) == ["CreateSecret"]
    assert names(AuditFilter(secret=first["ARN"])) == ["CreateSecret", "DeleteSecret"]
    assert names(AuditFilter(secret="other")) == ["GetSecretValue"]
    assert names(AuditFilter(principal_arn=ROTATOR, event_name="GetSecretValue")) == [
        "GetSecretValue",
        "GetSecretValue",
    ]
    assert names(AuditFilter(until=middle)) == ["CreateSecret", "DeleteSecret"]
    assert names(AuditFilter(since=middle, principal_arn=ALICE)) == []


def test_exported_files_follow_cloudtrails_layout_and_hold_every_record(
    ledger: Ledger, tmp_path: Path
) -> None:
    ledger.call("CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="a")
    for number in range(2, 6):
        ledger.call("GetSecretValue", SecretId="app/db")
        ledger.tick(20 * 60)
        ledger.call(
            "PutSecretValue", SecretId="app/db", ClientRequestToken=token(number), SecretString="v"
        )
    model = ledger.caught_up()
    everything = [record.text for record in model.audit.records()]

    paths = model.audit.export(tmp_path, records_per_file_max=2)

    exported: list[str] = []
    hours: set[str] = set()
    for path in paths:
        match = FILE_NAME.fullmatch(path.name)
        assert match is not None, path.name
        stamp = match.group(1)
        assert path.parent == tmp_path.joinpath(
            "AWSLogs", ACCOUNT_ID, "CloudTrail", REGION, stamp[:4], stamp[4:6], stamp[6:8]
        )
        raw = path.read_bytes()
        assert raw[4:8] == b"\x00\x00\x00\x00", "gzip mtime is zero"
        content = gzip.decompress(raw)
        assert content.startswith(b'{"Records":[')
        file_records = read_log_file(path)
        assert 1 <= len(file_records) <= 2
        hours.add(file_records[0]["eventTime"][:13])
        assert {record["eventTime"][:13] for record in file_records} == {
            file_records[0]["eventTime"][:13]
        }
        exported += [
            json.dumps(record, separators=(",", ":"), ensure_ascii=False) for record in file_records
        ]
    assert sorted(exported) == sorted(everything)
    assert len(hours) == 2
    assert START.strftime("%Y-%m-%dT%H") in hours
