"""A secret value never appears anywhere but in GetSecretValue's answer.

Distinctive random values ("canaries") go in through every path that carries a
value: CreateSecret, PutSecretValue (text, binary, with a RotationToken),
UpdateSecret, a rotation's staged version filled and replayed, and calls that
fail while carrying one (a reused token with another value, an oversized value,
both values at once, a secret scheduled for deletion, an unknown secret, a
malformed token or label list, a name that exists). The passwords
GetRandomPassword generates are secret values too: each is added to the canaries
once answered, and must appear in no other place. Then
every place a value could leak is scanned: the SQLite files (database, -wal and
-shm, while open and after closing), every stored event's bytes and decoded
attributes, the snapshots table, every answer and exception (with its chained
causes), the log at DEBUG, and the output of the ``secretledger`` commands.

Each canary is searched for as UTF-8, UTF-16 (both byte orders), UTF-32, base64
(standard and URL-safe) and hex. GetSecretValue, and ``secretledger get``, must
return the values (and GetRandomPassword its passwords): that is the control
showing the scan would see a leak.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets as random_source
import sqlite3
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.cli import main
from ledger.domain import secret_id_for_arn
from ledger.errors import InternalServiceError, SecretsManagerError

SECRET_NAME = "canary/app"
BINARY_SECRET_NAME = "canary/binary"
ROTATED_SECRET_NAME = "canary/rotated"
VALUE_SIZE_BYTES_MAX = 65_536
EVENTS_SCANNED_MAX = 10_000


def new_token() -> str:
    return str(random_source.token_hex(16))


@dataclass
class Canaries:
    """Random values, and every encoding in which a careless layer might store one."""

    texts: list[str] = field(default_factory=list)
    binaries: list[bytes] = field(default_factory=list)
    passwords: list[str] = field(default_factory=list)

    def text(self, purpose: str) -> str:
        value = f"CANARY-{purpose}-{random_source.token_hex(12)}"
        self.texts.append(value)
        return value

    def binary(self) -> bytes:
        value = b"\x00\xffCANARY" + os.urandom(20)
        self.binaries.append(value)
        return value

    def password(self, password: str) -> None:
        """A generated password: scanned for like any text canary."""
        self.passwords.append(password)
        self.texts.append(password)

    def raw_forms(self) -> list[bytes]:
        forms = []
        for text in self.texts:
            for encoding in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
                forms.append(text.encode(encoding))
            forms += encoded_forms(text.encode("utf-8"))
        for binary in self.binaries:
            forms.append(binary)
            forms += encoded_forms(binary)
        return forms

    def text_forms(self) -> list[str]:
        """What may show up in printed or logged text: the value, base64 or hex."""
        return [*self.texts, *(form.decode("ascii") for form in self.ascii_forms())]

    def ascii_forms(self) -> list[bytes]:
        return [
            form
            for value in [*(text.encode("utf-8") for text in self.texts), *self.binaries]
            for form in encoded_forms(value)
        ]


def encoded_forms(value: bytes) -> list[bytes]:
    """Base64 (of the longest prefix that encodes without padding, so it also matches
    a longer value that starts with the canary) and hex."""
    prefix = value[: len(value) - len(value) % 3]
    return [
        base64.b64encode(prefix),
        base64.urlsafe_b64encode(prefix),
        value.hex().encode("ascii"),
    ]


def hits_in_bytes(content: bytes, canaries: Canaries) -> list[bytes]:
    return [form for form in canaries.raw_forms() if form in content]


def hits_in_text(content: str, canaries: Canaries) -> list[str]:
    return [form for form in canaries.text_forms() if form in content]


def hits_in_object(value: Any, canaries: Canaries) -> list[Any]:
    """Walks strings, bytes, mappings, sequences and object attributes."""
    if isinstance(value, str):
        return hits_in_text(value, canaries) + hits_in_bytes(value.encode("utf-8"), canaries)
    if isinstance(value, bytes | bytearray):
        return hits_in_bytes(bytes(value), canaries)
    if isinstance(value, Mapping):
        return [hit for key, item in value.items() for hit in hits_in_object((key, item), canaries)]
    if isinstance(value, list | tuple | set | frozenset):
        return [hit for item in value for hit in hits_in_object(item, canaries)]
    if hasattr(value, "__dict__"):
        return hits_in_object(vars(value), canaries)
    return []


@dataclass
class CanaryRun:
    """What the calls left behind: answers (by operation), errors, the ledger's files."""

    canaries: Canaries
    directory: Path
    database: Path
    answers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    errors: list[SecretsManagerError] = field(default_factory=list)
    files_while_open: dict[str, bytes] = field(default_factory=dict)
    stored_states: list[bytes] = field(default_factory=list)
    decoded_events: list[Any] = field(default_factory=list)
    log_text: str = ""


class CanaryCaller:
    """Runs calls, keeping every answer and every error."""

    def __init__(self, api: SecretsManagerApi, run: CanaryRun) -> None:
        self.api = api
        self.run = run

    def ok(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        answer = self.api.call(operation, request)
        self.run.answers.append((operation, answer))
        return answer

    def refused(self, operation: str, request: dict[str, Any], code: str) -> None:
        with pytest.raises(SecretsManagerError) as caught:
            self.api.call(operation, request)
        assert caught.value.code == code, caught.value
        self.run.errors.append(caught.value)


def put_values_through_every_path(caller: CanaryCaller, canaries: Canaries) -> list[str]:
    """Every call that carries a value, succeeding or failing; returns the ARNs."""
    first_token, pending_token = new_token(), new_token()
    created = caller.ok(
        "CreateSecret",
        {
            "Name": SECRET_NAME,
            "ClientRequestToken": first_token,
            "SecretString": canaries.text("create"),
        },
    )
    caller.ok(
        "PutSecretValue",
        {
            "SecretId": SECRET_NAME,
            "ClientRequestToken": pending_token,
            "SecretString": canaries.text("put-pending"),
            "VersionStages": ["AWSPENDING"],
            "RotationToken": canaries.text("rotation-token-accepted-and-ignored"),
        },
    )
    caller.ok(
        "PutSecretValue",
        {
            "SecretId": SECRET_NAME,
            "ClientRequestToken": new_token(),
            "SecretBinary": canaries.binary(),
        },
    )
    caller.ok(
        "UpdateSecret",
        {
            "SecretId": SECRET_NAME,
            "ClientRequestToken": new_token(),
            "SecretString": canaries.text("update"),
            "Description": "rotated by the canary test",
        },
    )
    binary_secret = caller.ok(
        "CreateSecret",
        {
            "Name": BINARY_SECRET_NAME,
            "ClientRequestToken": new_token(),
            "SecretBinary": canaries.binary(),
        },
    )
    refuse_values(caller, canaries, first_token, pending_token)
    return [created["ARN"], binary_secret["ARN"], rotate_through_values(caller, canaries)]


def rotate_through_values(caller: CanaryCaller, canaries: Canaries) -> str:
    """A rotation played by the caller (RO-3 to RO-6): the staged version is filled,
    replayed, refused another value, then made current."""
    created = caller.ok(
        "CreateSecret",
        {
            "Name": ROTATED_SECRET_NAME,
            "ClientRequestToken": new_token(),
            "SecretString": canaries.text("before-rotation"),
        },
    )
    token = new_token()
    caller.ok(
        "RotateSecret",
        {
            "SecretId": ROTATED_SECRET_NAME,
            "ClientRequestToken": token,
            "RotationLambdaARN": "arn:aws:lambda:us-east-1:123456789012:function:canary",
            "RotationRules": {"AutomaticallyAfterDays": 7},
        },
    )
    caller.refused(
        "GetSecretValue",
        {"SecretId": ROTATED_SECRET_NAME, "VersionStage": "AWSPENDING"},
        "ResourceNotFoundException",
    )
    fill = {
        "SecretId": ROTATED_SECRET_NAME,
        "ClientRequestToken": token,
        "SecretString": canaries.text("rotated"),
        "VersionStages": ["AWSPENDING"],
    }
    caller.ok("PutSecretValue", fill)
    caller.ok("PutSecretValue", fill)
    caller.refused(
        "PutSecretValue",
        {**fill, "SecretString": canaries.text("refill")},
        "ResourceExistsException",
    )
    caller.ok(
        "UpdateSecretVersionStage",
        {
            "SecretId": ROTATED_SECRET_NAME,
            "VersionStage": "AWSCURRENT",
            "MoveToVersionId": token,
            "RemoveFromVersionId": created["VersionId"],
        },
    )
    caller.ok("CancelRotateSecret", {"SecretId": ROTATED_SECRET_NAME})
    arn: str = created["ARN"]
    return arn


def refuse_values(
    caller: CanaryCaller, canaries: Canaries, first_token: str, pending_token: str
) -> None:
    put = "PutSecretValue"
    caller.refused(
        put,
        {
            "SecretId": SECRET_NAME,
            "ClientRequestToken": pending_token,
            "SecretString": canaries.text("reuse"),
        },
        "ResourceExistsException",
    )
    caller.refused(
        "UpdateSecret",
        {
            "SecretId": SECRET_NAME,
            "ClientRequestToken": first_token,
            "SecretBinary": canaries.binary(),
        },
        "ResourceExistsException",
    )
    oversized = canaries.text("oversized") + "x" * VALUE_SIZE_BYTES_MAX
    caller.refused(
        put,
        {"SecretId": SECRET_NAME, "ClientRequestToken": new_token(), "SecretString": oversized},
        "ValidationException",
    )
    caller.refused(
        put,
        {
            "SecretId": SECRET_NAME,
            "ClientRequestToken": new_token(),
            "SecretString": canaries.text("both"),
            "SecretBinary": canaries.binary(),
        },
        "InvalidParameterException",
    )
    caller.refused(
        put,
        {
            "SecretId": SECRET_NAME,
            "ClientRequestToken": "short",
            "SecretString": canaries.text("short-token"),
            "VersionStages": ["x" * 300],
            "RotationToken": "!" + canaries.text("bad-rotation-token"),
        },
        "ValidationException",
    )
    caller.refused(
        put,
        {
            "SecretId": "canary/unknown",
            "ClientRequestToken": new_token(),
            "SecretString": canaries.text("unknown"),
        },
        "ResourceNotFoundException",
    )
    caller.refused(
        "CreateSecret",
        {
            "Name": SECRET_NAME,
            "ClientRequestToken": new_token(),
            "SecretString": canaries.text("exists"),
        },
        "ResourceExistsException",
    )
    caller.ok("DeleteSecret", {"SecretId": BINARY_SECRET_NAME, "RecoveryWindowInDays": 7})
    caller.refused(
        put,
        {
            "SecretId": BINARY_SECRET_NAME,
            "ClientRequestToken": new_token(),
            "SecretString": canaries.text("scheduled"),
        },
        "InvalidRequestException",
    )
    caller.ok("RestoreSecret", {"SecretId": BINARY_SECRET_NAME})


def generate_passwords(caller: CanaryCaller, canaries: Canaries) -> None:
    """GetRandomPassword's answers, with every character type and with the space."""
    for members in ({}, {"PasswordLength": 64, "IncludeSpace": True, "ExcludeCharacters": "x"}):
        canaries.password(caller.ok("GetRandomPassword", members)["RandomPassword"])


def read_everything_back(caller: CanaryCaller, arns: list[str]) -> None:
    """Every read there is: the values come back from GetSecretValue only."""
    for arn in arns:
        caller.ok("DescribeSecret", {"SecretId": arn})
        listing = caller.ok("ListSecretVersionIds", {"SecretId": arn, "IncludeDeprecated": True})
        for version in listing["Versions"]:
            caller.ok("GetSecretValue", {"SecretId": arn, "VersionId": version["VersionId"]})
    caller.ok("ListSecrets", {"IncludePlannedDeletion": True})


def files_in(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()}


@pytest.fixture
def canary_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[CanaryRun]:
    caplog.set_level(logging.DEBUG)
    database = tmp_path / "ledger.sqlite"
    run = CanaryRun(canaries=Canaries(), directory=tmp_path, database=database)
    secrets = Secrets(str(database))
    try:
        caller = CanaryCaller(SecretsManagerApi(secrets), run)
        arns = put_values_through_every_path(caller, run.canaries)
        generate_passwords(caller, run.canaries)
        read_everything_back(caller, arns)
        for arn in arns:
            secrets.take_snapshot(secret_id_for_arn(arn))
        notifications = secrets.recorder.select_notifications(start=None, limit=EVENTS_SCANNED_MAX)
        assert len(notifications) < EVENTS_SCANNED_MAX, "every event was scanned"
        run.stored_states = [notification.state for notification in notifications]
        run.decoded_events = [secrets.mapper.to_domain_event(item) for item in notifications]
        run.files_while_open = files_in(tmp_path)
    finally:
        secrets.close()
    run.log_text = caplog.text
    yield run


def test_get_secret_value_returns_every_canary(canary_run: CanaryRun) -> None:
    """The control: the scan below looks for values that really are in the ledger."""
    returned = [
        answer.get("SecretString", answer.get("SecretBinary"))
        for operation, answer in canary_run.answers
        if operation == "GetSecretValue"
    ]
    stored = [
        value
        for value in [*canary_run.canaries.texts, *canary_run.canaries.binaries]
        if value in returned
    ]
    assert len(stored) == 7, (
        "create, put (pending and binary), update, create binary, create and fill the rotated"
    )
    assert hits_in_object(returned, canary_run.canaries)


def test_get_random_password_returned_every_password(canary_run: CanaryRun) -> None:
    """The control for passwords: they are in the answers the scan excludes."""
    returned = [
        answer["RandomPassword"]
        for operation, answer in canary_run.answers
        if operation == "GetRandomPassword"
    ]
    assert returned == canary_run.canaries.passwords and len(returned) == 2
    assert hits_in_object(returned, canary_run.canaries)


def test_no_answer_but_get_secret_value_holds_a_value(canary_run: CanaryRun) -> None:
    for operation, answer in canary_run.answers:
        if operation not in ("GetSecretValue", "GetRandomPassword"):
            assert hits_in_object(answer, canary_run.canaries) == [], operation


def test_no_exception_holds_a_value(canary_run: CanaryRun) -> None:
    assert len(canary_run.errors) == 10
    for error in canary_run.errors:
        rendered = "".join(traceback.format_exception(error))
        assert hits_in_text(rendered + repr(error) + error.message, canary_run.canaries) == []


def test_no_log_line_holds_a_value(canary_run: CanaryRun) -> None:
    assert hits_in_text(canary_run.log_text, canary_run.canaries) == []


def test_no_stored_event_holds_a_value(canary_run: CanaryRun) -> None:
    assert canary_run.stored_states, "the calls were recorded"
    for state in canary_run.stored_states:
        assert hits_in_bytes(state, canary_run.canaries) == []
    for event in canary_run.decoded_events:
        assert hits_in_object(event, canary_run.canaries) == [], type(event).__qualname__


def test_the_database_files_hold_no_value_in_any_encoding(canary_run: CanaryRun) -> None:
    assert {"ledger.sqlite", "ledger.sqlite-wal"} <= set(canary_run.files_while_open)
    for name, content in canary_run.files_while_open.items():
        assert hits_in_bytes(content, canary_run.canaries) == [], f"{name}, while open"
    after_closing = files_in(canary_run.directory)
    assert "ledger.sqlite" in after_closing
    for name, content in after_closing.items():
        assert hits_in_bytes(content, canary_run.canaries) == [], f"{name}, after closing"


def test_the_snapshots_hold_no_value(canary_run: CanaryRun) -> None:
    with sqlite3.connect(canary_run.database) as connection:
        rows = connection.execute("SELECT * FROM stored_snapshots").fetchall()
    assert len(rows) == 3, "one snapshot per secret"
    assert hits_in_object(rows, canary_run.canaries) == []


# The command line


@dataclass
class CommandRun:
    command: list[str]
    exit_code: int
    output: str


@dataclass
class CommandRuns:
    gets: list[CommandRun]
    others: list[CommandRun]
    previous_value: str  # read from a file by the second put
    current_value: str  # base64, as given to the third put


def run_commands(database: Path, canaries: Canaries, directory: Path) -> CommandRuns:
    """`secretledger` commands that carry values, succeeding or failing, then reads."""
    runner = CliRunner()
    value_file = directory / "value.txt"
    previous_value = canaries.text("cli-file")
    value_file.write_text(previous_value, encoding="utf-8")
    reused_token = new_token()
    name = "canary/cli"
    binary = base64.b64encode(canaries.binary()).decode("ascii")
    both = base64.b64encode(canaries.binary()).decode("ascii")
    db = ["--db", str(database)]
    others = [
        ["create", "--name", name, "--secret-string", canaries.text("cli-create"), *db],
        [
            "put",
            "--secret-id",
            name,
            "--secret-string-file",
            str(value_file),
            "--client-request-token",
            reused_token,
            *db,
        ],
        ["put", "--secret-id", name, "--secret-binary", binary, "--json", *db],
        [
            "put",
            "--secret-id",
            name,
            "--secret-string",
            canaries.text("cli-reuse"),
            "--client-request-token",
            reused_token,
            *db,
        ],
        [
            "put",
            "--secret-id",
            name,
            "--secret-string",
            canaries.text("cli-reuse-json"),
            "--client-request-token",
            reused_token,
            "--json",
            *db,
        ],
        [
            "put",
            "--secret-id",
            name,
            "--secret-string",
            canaries.text("cli-both"),
            "--secret-binary",
            both,
            *db,
        ],
        [
            "put",
            "--secret-id",
            name,
            "--secret-string",
            canaries.text("cli-stdin-ignored"),
            "--secret-string-file",
            "-",
            *db,
        ],
        ["describe", "--secret-id", name, *db],
        ["describe", "--secret-id", name, "--json", *db],
        ["versions", "--secret-id", name, "--include-deprecated", *db],
        ["versions", "--secret-id", name, "--include-deprecated", "--json", *db],
        ["list", *db],
        ["list", "--json", *db],
        # The evidence and the read side print facts about versions, never a value.
        ["checkpoint", "--json", *db],
        ["verify", "--json", "--projections", *db],
        ["prove", "--secret-id", name, "--version-id", reused_token, *db],
        ["forensics", "--secret-id", name, "--json", *db],
        ["history", "--secret-id", name, *db],
        ["audit", "query", "--json", *db],
        ["keys", "list", "--json", *db],
    ]
    other_runs = [invoke(runner, command) for command in others]
    gets = [
        ["get", "--secret-id", name, *db],
        ["get", "--secret-id", name, "--version-stage", "AWSPREVIOUS", *db],
        ["get", "--secret-id", name, "--version-stage", "AWSPREVIOUS", "--json", *db],
    ]
    get_runs = [invoke(runner, command) for command in gets]
    return CommandRuns(get_runs, other_runs, previous_value, binary)


def invoke(runner: CliRunner, command: list[str]) -> CommandRun:
    result = runner.invoke(main, command, input="stdin value is never read here")
    return CommandRun(command, result.exit_code, result.output + result.stderr)


def test_secretledger_prints_a_value_only_for_get(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    canaries = Canaries()
    database = tmp_path / "cli.sqlite"
    runs = run_commands(database, canaries, tmp_path)
    exit_codes = [run.exit_code for run in runs.others]
    assert exit_codes == [0, 0, 0, 1, 1, 1, 2, 0, 0, 0, 0, 0, 0, *[0] * 7], runs.others
    for run in runs.others:
        assert hits_in_text(run.output, canaries) == [], run.command
    assert all(run.exit_code == 0 for run in runs.gets), runs.gets
    printed = "".join(run.output for run in runs.gets)
    assert runs.current_value in printed
    assert runs.previous_value in printed
    assert hits_in_text(caplog.text, canaries) == []
    value_file = tmp_path / "value.txt"
    value_file.unlink()
    for name, content in files_in(tmp_path).items():
        assert hits_in_bytes(content, canaries) == [], name


def test_an_unexpected_failure_is_logged_without_its_message(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug's exception message might quote a value: the log keeps its type and
    stack only, and the caller gets an AWS-shaped InternalServiceError."""
    canary = "CANARY-" + random_source.token_hex(8)
    ledger = Secrets("memory:")
    api = SecretsManagerApi(ledger)
    api.call("CreateSecret", {"Name": "buggy/secret"})

    def broken(**_: object) -> None:
        raise RuntimeError(f"value was {canary}")

    monkeypatch.setattr(ledger, "describe_secret", broken)
    with caplog.at_level(logging.DEBUG), pytest.raises(InternalServiceError):
        api.call("DescribeSecret", {"SecretId": "buggy/secret"})
    assert "RuntimeError" in caplog.text
    assert canary not in caplog.text
