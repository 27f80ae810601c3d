"""`secretledger forensics`: the timeline of a secret or a principal, and value reuse.

A narrative is written through the API with a stepping clock and four identities
(alice, the CI user, the rotation role, and a caller refused before authentication),
then read back through the CLI on SQLite and PostgreSQL: the rows are asserted
exactly, in text and in JSON, with their log positions checked against the log.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from http_harness import ALICE as HTTP_ALICE
from http_harness import ALICE_WITH_WRONG_SECRET, start_server, target_headers
from test_projections_support import START, Ledger, log_entries, token

from ledger.api import Caller, SecretsManagerApi
from ledger.application import Secrets
from ledger.cli import main
from ledger.crypto import Keyring
from ledger.domain import AWSCURRENT, AWSPENDING, ApiCall, Secret
from ledger.errors import SecretsManagerError, UnrecognizedClientException
from projections.audit import event_name

ACCOUNT_ID = "123456789012"
ALICE = Caller(
    principal_arn=f"arn:aws:iam::{ACCOUNT_ID}:user/alice",
    access_key_id="AKIAEXAMPLEALICE0001",
    source_ip="10.0.0.1",
    user_agent="aws-cli/2.15",
)
CI = Caller(
    principal_arn=f"arn:aws:iam::{ACCOUNT_ID}:user/ci",
    access_key_id="AKIAEXAMPLECI0000002",
    source_ip="10.0.0.2",
    user_agent="terraform/1.7",
)
ROTATOR = Caller(
    principal_arn=f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/rotator/rotation-7",
    access_key_id="ASIAEXAMPLEROTATOR03",
    source_ip="10.0.0.3",
    user_agent="aws-sdk-python/1.34",
)
REFUSED = Caller(
    principal_arn="",
    access_key_id="AKIAEXAMPLEMALLORY04",
    source_ip="203.0.113.9",
    user_agent="curl/8.5",
)
UNRECOGNIZED = "The security token included in the request is invalid."
NOT_FOUND = "Secrets Manager can't find the specified secret value for VersionId: "
CANARY = "canary-7f3e9b1c"
POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


class Narrative:
    """Calls made through the API by several identities, each with its request id."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.api = ledger.api

    def call(self, caller: Caller, request_id: str, operation: str, **members: Any) -> None:
        self.api.call(operation, members, dataclasses.replace(caller, request_id=request_id))

    def fail(self, caller: Caller, request_id: str, operation: str, **members: Any) -> None:
        with pytest.raises(SecretsManagerError):
            self.call(caller, request_id, operation, **members)

    def at(self, minutes: int, seconds: int = 0) -> None:
        """The next calls happen at 09:MM:SS (the clock starts at 09:00:00)."""
        moment = START + timedelta(minutes=minutes, seconds=seconds)
        self.ledger.clock.advance(moment - self.ledger.clock.current)


def write_narrative(ledger: Ledger) -> None:
    """app/db: created, put, rotated (AWSPENDING, then UpdateSecretVersionStage), read
    at its current, pending and an old version, a failed read, a refused call,
    scheduled for deletion, restored, then force-deleted. app/cache: created and read
    by the CI user."""
    story = Narrative(ledger)
    story.call(
        ALICE,
        "r-create",
        "CreateSecret",
        Name="app/db",
        ClientRequestToken=token(1),
        SecretString=f"{CANARY}-1",
    )
    story.at(0, 30)
    story.call(
        CI,
        "r-cache",
        "CreateSecret",
        Name="app/cache",
        ClientRequestToken=token(11),
        SecretString=f"{CANARY}-cache",
    )
    story.at(1)
    story.call(
        CI,
        "r-put",
        "PutSecretValue",
        SecretId="app/db",
        ClientRequestToken=token(2),
        SecretString=f"{CANARY}-2",
    )
    story.at(2)
    story.call(
        ROTATOR,
        "r-pending",
        "PutSecretValue",
        SecretId="app/db",
        ClientRequestToken=token(3),
        SecretString=f"{CANARY}-3",
        VersionStages=[AWSPENDING],
    )
    story.at(2, 30)
    story.call(ROTATOR, "r-test", "GetSecretValue", SecretId="app/db", VersionStage=AWSPENDING)
    story.at(3)
    story.call(
        ROTATOR,
        "r-promote",
        "UpdateSecretVersionStage",
        SecretId="app/db",
        VersionStage=AWSCURRENT,
        MoveToVersionId=token(3),
        RemoveFromVersionId=token(2),
    )
    story.call(
        ROTATOR,
        "r-finish",
        "UpdateSecretVersionStage",
        SecretId="app/db",
        VersionStage=AWSPENDING,
        RemoveFromVersionId=token(3),
    )
    story.at(4)
    story.call(ALICE, "r-read", "GetSecretValue", SecretId="app/db")
    story.call(ALICE, "r-read-old", "GetSecretValue", SecretId="app/db", VersionId=token(1))
    story.at(4, 30)
    story.call(CI, "r-cache-read", "GetSecretValue", SecretId="app/cache")
    story.at(5)
    story.fail(CI, "r-missing", "GetSecretValue", SecretId="app/db", VersionId=token(9))
    story.api.record_denial(
        "GetSecretValue",
        {},
        dataclasses.replace(REFUSED, request_id="r-refused"),
        UnrecognizedClientException(UNRECOGNIZED),
    )
    story.at(6)
    story.call(ALICE, "r-delete", "DeleteSecret", SecretId="app/db", RecoveryWindowInDays=7)
    story.at(7)
    story.call(ALICE, "r-restore", "RestoreSecret", SecretId="app/db")
    story.at(8)
    story.call(CI, "r-force", "DeleteSecret", SecretId="app/db", ForceDeleteWithoutRecovery=True)


@dataclass(frozen=True)
class Row:
    """An expected row, without its position (checked against the log separately)."""

    time: str
    event: str
    operation: str
    secret: str | None
    version: str | None
    caller: Caller
    request_id: str
    label: tuple[str, str | None, str | None, str] | None = None
    reason: str | None = None
    error: tuple[str, str] | None = None

    def to_json(self, db_arn: str, cache_arn: str) -> dict[str, Any]:
        secret = {"db": db_arn, "cache": cache_arn}.get(self.secret or "", self.secret)
        label, from_version, to_version, reason = self.label or (None, None, None, self.reason)
        return {
            "Time": f"2025-03-19T09:{self.time}.000000Z",
            "Event": self.event,
            "Operation": self.operation,
            "Secret": secret,
            "VersionId": self.version,
            "Label": label,
            "FromVersionId": from_version,
            "ToVersionId": to_version,
            "Reason": reason,
            "ErrorCode": self.error[0] if self.error else None,
            "ErrorMessage": self.error[1] if self.error else None,
            "Principal": self.caller.principal_arn,
            "AccessKeyId": self.caller.access_key_id,
            "SourceIp": self.caller.source_ip,
            "UserAgent": self.caller.user_agent,
            "RequestId": self.request_id,
        }


def moved(
    time: str,
    operation: str,
    caller: Caller,
    request_id: str,
    label: str,
    from_version: str | None,
    to_version: str | None,
    reason: str,
) -> Row:
    return Row(
        time,
        "LabelMoved",
        operation,
        "db",
        None,
        caller,
        request_id,
        label=(label, from_version, to_version, reason),
    )


CREATE, PUT, GET = "CreateSecret", "PutSecretValue", "GetSecretValue"
STAGE = "UpdateSecretVersionStage"
DB_TIMELINE = [
    Row("00:00", "SecretCreated", CREATE, "db", None, ALICE, "r-create"),
    Row("00:00", "VersionCreated", CREATE, "db", token(1), ALICE, "r-create"),
    moved("00:00", CREATE, ALICE, "r-create", AWSCURRENT, None, token(1), "default-current"),
    Row("01:00", "VersionCreated", PUT, "db", token(2), CI, "r-put"),
    moved("01:00", PUT, CI, "r-put", AWSCURRENT, token(1), token(2), "default-current"),
    moved("01:00", PUT, CI, "r-put", "AWSPREVIOUS", None, token(1), "demoted"),
    Row("02:00", "VersionCreated", PUT, "db", token(3), ROTATOR, "r-pending"),
    moved("02:00", PUT, ROTATOR, "r-pending", AWSPENDING, None, token(3), "requested"),
    Row("02:30", "ApiCallRecorded", GET, "db", token(3), ROTATOR, "r-test"),
    moved("03:00", STAGE, ROTATOR, "r-promote", AWSCURRENT, token(2), token(3), "requested"),
    moved("03:00", STAGE, ROTATOR, "r-promote", "AWSPREVIOUS", token(1), token(2), "demoted"),
    moved("03:00", STAGE, ROTATOR, "r-finish", AWSPENDING, token(3), None, "requested"),
    Row("04:00", "ApiCallRecorded", GET, "db", token(3), ALICE, "r-read"),
    Row("04:00", "ApiCallRecorded", GET, "db", token(1), ALICE, "r-read-old"),
    Row(
        "05:00",
        "ApiCallRecorded",
        GET,
        "app/db",
        None,
        CI,
        "r-missing",
        error=("ResourceNotFoundException", NOT_FOUND + token(9)),
    ),
    Row("06:00", "SecretDeletionScheduled", "DeleteSecret", "db", None, ALICE, "r-delete"),
    Row("07:00", "SecretRestored", "RestoreSecret", "db", None, ALICE, "r-restore"),
    moved(
        "08:00", "DeleteSecret", CI, "r-force", AWSCURRENT, token(3), None, "detached-by-deletion"
    ),
    moved(
        "08:00",
        "DeleteSecret",
        CI,
        "r-force",
        "AWSPREVIOUS",
        token(2),
        None,
        "detached-by-deletion",
    ),
    *(
        Row(
            "08:00",
            "VersionDestroyed",
            "DeleteSecret",
            "db",
            token(number),
            CI,
            "r-force",
            reason="forced-deletion",
        )
        for number in (1, 2, 3)
    ),
    Row(
        "08:00",
        "SecretDeleted",
        "DeleteSecret",
        "db",
        None,
        CI,
        "r-force",
        reason="forced-deletion",
    ),
]
CACHE_CREATE = [
    Row("00:30", "SecretCreated", CREATE, "cache", None, CI, "r-cache"),
    Row("00:30", "VersionCreated", CREATE, "cache", token(11), CI, "r-cache"),
    Row(
        "00:30",
        "LabelMoved",
        CREATE,
        "cache",
        None,
        CI,
        "r-cache",
        label=(AWSCURRENT, None, token(11), "default-current"),
    ),
]
CACHE_READ = Row("04:30", "ApiCallRecorded", GET, "cache", token(11), CI, "r-cache-read")
REFUSED_ROW = Row(
    "05:00",
    "ApiCallRecorded",
    GET,
    None,
    None,
    REFUSED,
    "r-refused",
    error=("UnrecognizedClientException", UNRECOGNIZED),
)


@dataclass(frozen=True)
class Written:
    database: str
    db_arn: str
    cache_arn: str
    positions: dict[tuple[str, str, str | None], int]

    def expected(self, rows: list[Row]) -> list[dict[str, Any]]:
        """The JSON of the rows, each with the position of its event in the log."""
        shaped = []
        for row in rows:
            item = row.to_json(self.db_arn, self.cache_arn)
            detail = {
                "LabelMoved": item["Label"],
                "VersionCreated": item["VersionId"],
                "VersionDestroyed": item["VersionId"],
            }
            key = (row.request_id, row.event, detail.get(row.event))
            shaped.append({"Position": self.positions[key], **item})
        return shaped


def positions_in_log(secrets: Secrets) -> dict[tuple[str, str, str | None], int]:
    """(request id, event name, label or version id) -> position, read from the log."""
    positions: dict[tuple[str, str, str | None], int] = {}
    for position, event in log_entries(secrets):
        if not isinstance(event, Secret.Event | ApiCall.Recorded):
            continue
        detail = None
        if isinstance(event, Secret.LabelMoved):
            detail = event.label
        elif isinstance(event, Secret.VersionCreated | Secret.VersionDestroyed):
            detail = event.version_id
        key = (event.request["request_id"], event_name(type(event).TOPIC), detail)
        assert key not in positions, key
        positions[key] = position
    return positions


@pytest.fixture(scope="module", params=["sqlite", POSTGRES])
def written(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Written]:
    """The narrative, written once per backend for every test of the module."""
    if request.param == "sqlite":
        database = str(tmp_path_factory.mktemp("forensics") / "ledger.sqlite")
    else:
        database = request.getfixturevalue("postgres_database_url_for_module")
    ledger = Ledger(database)
    try:
        write_narrative(ledger)
        positions = positions_in_log(ledger.secrets)
        arns = {
            event.name: event.arn
            for _, event in log_entries(ledger.secrets)
            if isinstance(event, Secret.Created)
        }
    finally:
        ledger.close()
    yield Written(database, arns["app/db"], arns["app/cache"], positions)


@pytest.fixture(scope="module")
def postgres_database_url_for_module(postgres_database_pool: Any) -> Iterator[str]:
    database_name = postgres_database_pool.acquire()
    try:
        yield postgres_database_pool.url_for(database_name)
    finally:
        postgres_database_pool.release(database_name)


def forensics(database: str, *arguments: str) -> Result:
    return CliRunner().invoke(main, ["forensics", *arguments, "--db", database])


def timeline(database: str, *arguments: str) -> list[dict[str, Any]]:
    result = forensics(database, *arguments, "--json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_the_timeline_of_a_secret_lists_every_fact_with_its_caller(written: Written) -> None:
    rows = timeline(written.database, "--secret-id", "app/db")

    assert rows == written.expected(DB_TIMELINE)
    assert [row["Position"] for row in rows] == sorted(row["Position"] for row in rows)


def test_a_full_arn_and_a_name_give_the_same_timeline_apart_from_unresolved_calls(
    written: Written,
) -> None:
    by_arn = timeline(written.database, "--secret-id", written.db_arn)

    assert by_arn == written.expected([row for row in DB_TIMELINE if row.secret != "app/db"])


def test_the_table_shows_the_same_rows(written: Written) -> None:
    result = forensics(written.database, "--secret-id", "app/db")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "POSITION",
        "TIME",
        "EVENT",
        "OPERATION",
        "SECRET",
        "VERSION",
        "DETAIL",
        "PRINCIPAL",
        "ACCESS",
        "KEY",
        "SOURCE",
        "IP",
        "USER",
        "AGENT",
        "REQUEST",
        "ID",
    ]
    expected = written.expected(DB_TIMELINE)
    assert len(lines) == 1 + len(expected)
    promoted = next(row for row in expected if row["RequestId"] == "r-promote")
    assert lines[1 + expected.index(promoted)].split() == [
        str(promoted["Position"]),
        "2025-03-19T09:03:00.000000Z",
        "LabelMoved",
        STAGE,
        written.db_arn,
        "-",
        "AWSCURRENT:",
        token(2),
        "->",
        token(3),
        "(requested)",
        ROTATOR.principal_arn,
        ROTATOR.access_key_id,
        ROTATOR.source_ip,
        ROTATOR.user_agent,
        "r-promote",
    ]
    failed = lines[1 + next(i for i, row in enumerate(expected) if row["RequestId"] == "r-missing")]
    assert failed.split()[4:7] == ["app/db", "-", "ResourceNotFoundException"]
    deleted = lines[-1].split()
    assert deleted[2] == "SecretDeleted" and deleted[6] == "forced-deletion"


def test_version_id_keeps_the_rows_about_that_version(written: Written) -> None:
    about_first = timeline(written.database, "--secret-id", "app/db", "--version-id", token(1))
    about_missing = timeline(written.database, "--secret-id", "app/db", "--version-id", token(9))

    assert about_first == written.expected(
        [
            DB_TIMELINE[1],  # created
            DB_TIMELINE[2],  # AWSCURRENT onto it
            DB_TIMELINE[4],  # AWSCURRENT off it
            DB_TIMELINE[5],  # AWSPREVIOUS onto it
            DB_TIMELINE[10],  # AWSPREVIOUS off it
            DB_TIMELINE[13],  # read as an old version
            DB_TIMELINE[19],  # destroyed by the forced deletion
        ]
    )
    assert about_missing == written.expected([DB_TIMELINE[14]]), "the request named it"


def test_since_and_until_are_inclusive(written: Written) -> None:
    rows = timeline(
        written.database,
        "--secret-id",
        "app/db",
        "--since",
        "2025-03-19T09:03:00Z",
        "--until",
        "2025-03-19T09:04",
    )

    assert rows == written.expected(DB_TIMELINE[9:14])


def test_a_principal_timeline_spans_secrets(written: Written) -> None:
    rows = timeline(written.database, "--principal", CI.principal_arn)

    ci_rows = [row for row in DB_TIMELINE if row.caller is CI]
    expected = written.expected([*CACHE_CREATE, CACHE_READ, *ci_rows])
    assert rows == sorted(expected, key=lambda row: row["Position"])


def test_calls_refused_before_authentication_have_an_empty_principal(written: Written) -> None:
    assert timeline(written.database, "--principal", "") == written.expected([REFUSED_ROW])


def test_a_principal_that_did_nothing_has_an_empty_timeline(written: Written) -> None:
    assert timeline(written.database, "--principal", "arn:aws:iam::123456789012:user/nobody") == []
    result = forensics(written.database, "--principal", "arn:aws:iam::123456789012:user/nobody")
    assert result.exit_code == 0 and result.stdout == "nothing happened\n"


def test_a_secret_no_one_ever_named_exits_1(written: Written) -> None:
    result = forensics(written.database, "--secret-id", "app/never", "--json")

    assert result.exit_code == 1
    assert json.loads(result.stderr)["__type"] == "ResourceNotFoundException"


@pytest.mark.parametrize(
    "arguments",
    [
        [],
        ["--secret-id", "app/db", "--principal", CI.principal_arn],
        ["--since", "yesterday", "--secret-id", "app/db"],
    ],
)
def test_usage_errors_exit_2(written: Written, arguments: list[str]) -> None:
    assert forensics(written.database, *arguments).exit_code == 2


def test_timeline_options_before_a_subcommand_are_refused() -> None:
    result = CliRunner().invoke(main, ["forensics", "--secret-id", "x", "value-reuse"])

    assert result.exit_code == 2
    assert "--secret-id: timeline options, not value-reuse's" in result.output


@pytest.mark.slow
def test_calls_refused_by_the_http_endpoint_are_on_the_timeline(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server")
    try:
        server.client().create_secret(Name="app/http", SecretString=CANARY)
        forged = server.call(
            "GetSecretValue", {"SecretId": "app/http"}, principal=ALICE_WITH_WRONG_SECRET
        )
        malformed = server.post(b"{not json", target_headers("GetSecretValue"))
    finally:
        server.stop()
    database = str(server.database)

    refused = timeline(database, "--principal", "")
    by_alice = timeline(database, "--principal", HTTP_ALICE.arn)

    assert [
        (row["Event"], row["Operation"], row["Secret"], row["ErrorCode"]) for row in refused
    ] == [("ApiCallRecorded", "GetSecretValue", None, "InvalidSignatureException")]
    assert refused[0]["AccessKeyId"] == HTTP_ALICE.access_key_id, "the key the caller claimed"
    assert refused[0]["RequestId"] == forged.headers["x-amzn-RequestId"]
    assert refused[0]["SourceIp"] == "127.0.0.1"
    assert [(row["Event"], row["ErrorCode"]) for row in by_alice] == [
        ("SecretCreated", None),
        ("VersionCreated", None),
        ("LabelMoved", None),
        ("ApiCallRecorded", "SerializationException"),
    ]
    assert by_alice[-1]["RequestId"] == malformed.headers["x-amzn-RequestId"]
    assert {row["AccessKeyId"] for row in by_alice} == {HTTP_ALICE.access_key_id}
    assert all(row["UserAgent"] for row in by_alice)


# Value reuse ---------------------------------------------------------------------------


def write_reused_values(database: str, keyring: Path) -> dict[str, str]:
    """Secrets a, b, c and d: a's first value is b's (across secrets); a's second value
    is its third (within a secret); c is unique; d shares a's first value but is
    force-deleted (not live). Returns name -> ARN."""
    secrets = Secrets(database, keyring_path=keyring)
    api = SecretsManagerApi(secrets)
    try:
        values = {"a": f"{CANARY}-x", "b": f"{CANARY}-x", "c": f"{CANARY}-z", "d": f"{CANARY}-x"}
        arns = {}
        for number, (name, value) in enumerate(values.items(), start=1):
            created = api.call(
                "CreateSecret",
                {"Name": name, "ClientRequestToken": token(number), "SecretString": value},
            )
            arns[name] = created["ARN"]
        for number in (5, 6):
            api.call(
                "PutSecretValue",
                {"SecretId": "a", "ClientRequestToken": token(number), "SecretString": CANARY},
            )
        api.call(
            "PutSecretValue",
            {
                "SecretId": "c",
                "ClientRequestToken": token(7),
                "SecretBinary": f"{CANARY}-z".encode(),
            },
        )
        api.call("DeleteSecret", {"SecretId": "d", "ForceDeleteWithoutRecovery": True})
    finally:
        secrets.close()
    return arns


def test_value_reuse_with_another_keyring_exits_1_and_prints_no_value(tmp_path: Path) -> None:
    database = str(tmp_path / "ledger.sqlite")
    write_reused_values(database, tmp_path / "ledger.keyring")
    Keyring.open(tmp_path / "other.keyring", create=True)

    result = CliRunner().invoke(
        main,
        [
            "forensics",
            "value-reuse",
            "--db",
            database,
            "--keyring",
            str(tmp_path / "other.keyring"),
        ],
    )

    assert result.exit_code == 1
    assert CANARY not in result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["sqlite", POSTGRES])
def test_value_reuse_names_versions_that_share_a_value_and_never_a_value(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if kind == "sqlite":
        database = str(tmp_path / "ledger.sqlite")
    else:
        database = request.getfixturevalue("postgres_database_url")
    keyring = tmp_path / "ledger.keyring"
    arns = write_reused_values(database, keyring)
    arguments = ["forensics", "value-reuse", "--db", database, "--keyring", str(keyring)]

    as_json = CliRunner().invoke(main, [*arguments, "--json"])
    as_text = CliRunner().invoke(main, arguments)

    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == {
        "SharedValues": [
            {
                "Scope": "across-secrets",
                "Versions": [
                    {"ARN": arns["a"], "Name": "a", "VersionId": token(1)},
                    {"ARN": arns["b"], "Name": "b", "VersionId": token(2)},
                ],
            },
            {
                "Scope": "within-secret",
                "Versions": [
                    {"ARN": arns["a"], "Name": "a", "VersionId": token(5)},
                    {"ARN": arns["a"], "Name": "a", "VersionId": token(6)},
                ],
            },
        ],
        "SecretsScanned": 3,
        "VersionsCompared": 6,
        "DestroyedVersionsSkipped": 0,
    }
    assert as_text.exit_code == 0, as_text.output
    assert as_text.stdout.splitlines() == [
        "shared value 1 (across secrets):",
        f"  {arns['a']}  {token(1)}",
        f"  {arns['b']}  {token(2)}",
        "shared value 2 (within one secret):",
        f"  {arns['a']}  {token(5)}",
        f"  {arns['a']}  {token(6)}",
        "2 shared values; 6 versions of 3 secrets compared; 0 destroyed versions skipped",
    ]
    for result in (as_json, as_text):
        printed = result.stdout + result.stderr
        assert CANARY not in printed, "no value is ever printed"
        assert not re.search(r"[0-9a-f]{32}|[A-Za-z0-9+/]{40,}={0,2}", printed), "nor a digest"
