"""No secret value reaches the read side: canary values sent through every operation,
successful or failing, appear in no projection table, no exported file and no
output of the read-side commands (nor, on SQLite, anywhere in the database files).
"""

from __future__ import annotations

import base64
import gzip
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_projections_support import Ledger, projection_rows, token

from ledger.api import Caller
from ledger.cli import main
from ledger.errors import UnrecognizedClientException

VALUE_SIZE_BYTES_MAX = 65_536


class Canaries:
    """Unique values, each sent once, and every form in which one could leak."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def new(self) -> str:
        value = f"canary-{uuid.uuid4().hex}"
        self.values.append(value)
        return value

    def new_binary(self) -> bytes:
        return self.new().encode("ascii")

    def forms(self) -> Iterator[str]:
        for value in self.values:
            raw = value.encode("ascii")
            yield value
            yield value.removeprefix("canary-")
            yield base64.b64encode(raw).decode("ascii")
            yield raw.hex()

    def assert_absent(self, text: str, where: str) -> None:
        for form in self.forms():
            assert form not in text, f"a canary leaked into {where}"


def send_canaries_through_every_operation(ledger: Ledger, canaries: Canaries) -> None:
    ledger.call(
        "CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString=canaries.new()
    )
    ledger.tick()
    ledger.call(
        "PutSecretValue",
        SecretId="app/db",
        ClientRequestToken=token(2),
        SecretBinary=canaries.new_binary(),
        VersionStages=["AWSPENDING"],
    )
    ledger.call(
        "UpdateSecret", SecretId="app/db", ClientRequestToken=token(3), SecretString=canaries.new()
    )
    ledger.call(
        "PutSecretValue",
        SecretId="app/db",
        ClientRequestToken=token(4),
        SecretString=canaries.new(),
    )
    failing: list[tuple[str, dict[str, Any]]] = [
        # A reused token with another value.
        (
            "PutSecretValue",
            {"SecretId": "app/db", "ClientRequestToken": token(4), "SecretString": canaries.new()},
        ),
        # Both kinds of value at once.
        (
            "PutSecretValue",
            {
                "SecretId": "app/db",
                "ClientRequestToken": token(5),
                "SecretString": canaries.new(),
                "SecretBinary": canaries.new_binary(),
            },
        ),
        # A name that exists.
        (
            "CreateSecret",
            {"Name": "app/db", "ClientRequestToken": token(6), "SecretString": canaries.new()},
        ),
        # A value too large, and a value of the wrong type.
        (
            "PutSecretValue",
            {
                "SecretId": "app/db",
                "ClientRequestToken": token(7),
                "SecretString": canaries.new() * (VALUE_SIZE_BYTES_MAX // 30),
            },
        ),
        (
            "PutSecretValue",
            {
                "SecretId": "app/db",
                "ClientRequestToken": token(8),
                "SecretString": [canaries.new()],
            },
        ),
        # A secret that does not exist.
        (
            "PutSecretValue",
            {
                "SecretId": "app/none",
                "ClientRequestToken": token(9),
                "SecretString": canaries.new(),
            },
        ),
    ]
    for operation, members in failing:
        assert ledger.attempt(operation, **members) is not None, operation
    ledger.call("GetSecretValue", SecretId="app/db")
    ledger.call("GetSecretValue", SecretId="app/db", VersionStage="AWSPENDING")
    ledger.call("BatchGetSecretValue", SecretIdList=["app/db"])
    ledger.call(
        "UpdateSecretVersionStage",
        SecretId="app/db",
        VersionStage="AWSCURRENT",
        MoveToVersionId=token(2),
        RemoveFromVersionId=token(4),
    )
    ledger.call("DeleteSecret", SecretId="app/db", RecoveryWindowInDays=7)
    assert (
        ledger.attempt(
            "PutSecretValue",
            SecretId="app/db",
            ClientRequestToken=token(10),
            SecretString=canaries.new(),
        )
        == "InvalidRequestException"
    )
    ledger.call("RestoreSecret", SecretId="app/db")
    refused = Caller(principal_arn="", access_key_id="AKIAREFUSED000000000")
    ledger.api.record_denial(
        "PutSecretValue",
        {"SecretId": "app/db", "ClientRequestToken": token(11), "SecretString": canaries.new()},
        refused,
        UnrecognizedClientException("The security token included in the request is invalid."),
    )
    ledger.call("DeleteSecret", SecretId="app/db", ForceDeleteWithoutRecovery=True)


@pytest.fixture
def canaries() -> Canaries:
    return Canaries()


def test_no_value_reaches_tables_exports_or_query_output(
    backend: str, tmp_path: Path, canaries: Canaries
) -> None:
    ledger = Ledger(backend)
    try:
        send_canaries_through_every_operation(ledger, canaries)
        model = ledger.caught_up()
        canaries.assert_absent(repr(projection_rows(model.store)), "the projection tables")
        for path in model.audit.export(tmp_path / "trail"):
            canaries.assert_absent(gzip.decompress(path.read_bytes()).decode(), str(path))
        texts = [record.text for record in model.audit.records()]
        assert len(texts) > 15
        canaries.assert_absent("\n".join(texts), "the audit records")
        canaries.assert_absent(repr(model.labels.history("app/db")), "the label history")
    finally:
        ledger.close()

    if backend == "memory:":
        return
    runner = CliRunner()
    commands = [
        ["labels", "--secret-id", "app/db", "--json", "--include-deprecated"],
        ["history", "--secret-id", "app/db", "--json"],
        ["history", "--secret-id", "app/db"],
        ["diff", "--secret-id", "app/db", "2025-03-19T09:00:00Z", "2025-03-19T10:00:00Z", "--json"],
        ["audit", "query", "--json"],
        ["audit", "query"],
        ["audit", "export", "--out", str(tmp_path / "cli-trail")],
    ]
    for command in commands:
        result = runner.invoke(main, [*command, "--db", backend])
        assert result.exit_code == 0, (command, result.output)
        canaries.assert_absent(result.output, " ".join(command))


def test_no_value_is_anywhere_in_the_sqlite_files(tmp_path: Path, canaries: Canaries) -> None:
    database = str(tmp_path / "ledger.sqlite")
    ledger = Ledger(database)
    try:
        send_canaries_through_every_operation(ledger, canaries)
        ledger.caught_up()
    finally:
        ledger.close()
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for path in tmp_path.iterdir():
        content = path.read_bytes()
        for form in canaries.forms():
            assert form.encode("ascii") not in content, f"a canary is in {path.name}"
    assert len(canaries.values) >= 10
