"""`secretledger keys`: the signing key (create, rotate, export, list) and the rotation
of the key-encryption key (docs/evidence.md RW1-RW4): every data key re-wrapped in
resumable batches, no event or hash row changed, every value still readable."""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import pytest
from click.testing import CliRunner, Result

from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.cli import main
from ledger.crypto import Keyring, version_binding
from ledger.domain import Secret
from ledger.signing_keys import load_verifiers_pem
from ledger.storage import DataKeyRecord, MsgpackTranscoder

NAME: Final = "app/db"
DATA: Final = Path(__file__).parent / "data"
V1_FIXTURE: Final = DATA / "ledger-v1.sqlite"
EVENT_TABLES: Final = {
    "sqlite": ("stored_events", "stored_snapshots", "event_hashes"),
    "postgres": ("ledger_events", "ledger_snapshots", "ledger_event_hashes"),
}


def run(*arguments: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(arguments), input=stdin)


def run_ok(*arguments: str) -> str:
    result = run(*arguments)
    assert result.exit_code == 0, result.output
    return result.stdout


# --------------------------------------------------------------------------------------
# The signing key
# --------------------------------------------------------------------------------------


def test_the_signing_key_is_created_once_rotated_exported_and_listed(tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "ledger.sqlite")]
    path = tmp_path / "ledger.sqlite.signing-key"
    created = json.loads(run_ok("keys", "create-signing", *db, "--json"))
    assert created["path"] == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = run("keys", "create-signing", *db)
    assert again.exit_code == 1
    assert "never overwritten" in again.stderr

    rotated = json.loads(run_ok("keys", "rotate-signing", *db, "--json"))
    assert rotated["active_key_id"] != created["key_id"]
    pem = run_ok("keys", "export-public", *db)
    assert len(load_verifiers_pem(pem, origin=created["origin"])) == 2
    exported = json.loads(run_ok("keys", "export-public", *db, "--json"))
    assert [key["key_id"] for key in exported["keys"]] == [
        created["key_id"],
        rotated["active_key_id"],
    ]
    assert "".join(key["pem"] for key in exported["keys"]) == pem

    listed = json.loads(run_ok("keys", "list", *db, "--json"))
    signing = listed["signing_keys"]
    assert signing["origin"] == created["origin"]
    assert [(key["key_id"], key["active"]) for key in signing["keys"]] == [
        (created["key_id"], False),
        (rotated["active_key_id"], True),
    ]
    kek = listed["key_encryption_keys"]
    assert kek["key_ids"] == [kek["active_key_id"]]
    text = run_ok("keys", "list", *db)
    assert rotated["active_key_id"] in text and kek["active_key_id"] in text
    for value in json.loads(path.read_text())["keys"]:
        assert value["seed"] not in text + json.dumps(listed)
    keyring = json.loads((tmp_path / "ledger.sqlite.keyring").read_text())
    for value in keyring["key_encryption_keys"].values():
        assert value not in text + json.dumps(listed)


def test_a_ledger_without_a_signing_key_file_lists_none(tmp_path: Path) -> None:
    listed = run_ok("keys", "list", "--db", str(tmp_path / "ledger.sqlite"), "--json")
    assert json.loads(listed)["signing_keys"] is None
    text = run_ok("keys", "list", "--db", str(tmp_path / "ledger.sqlite"))
    assert "keys create-signing" in text


def test_postgres_and_memory_ledgers_must_name_their_signing_key() -> None:
    for database in ("memory:", "postgresql://localhost/ledger"):
        result = run("keys", "create-signing", "--db", database)
        assert result.exit_code == 2
        assert "--signing-key" in result.output


# --------------------------------------------------------------------------------------
# KEK rotation
# --------------------------------------------------------------------------------------


def backend_kind(database: str) -> str:
    return "postgres" if database.startswith("postgresql") else "sqlite"


def event_tables(database: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the event, snapshot and hash tables, byte for byte."""
    tables = EVENT_TABLES[backend_kind(database)]
    if backend_kind(database) == "sqlite":
        with sqlite3.connect(database) as connection:
            return {
                table: connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                for table in tables
            }
    import psycopg

    with psycopg.connect(database) as connection:
        return {
            table: [
                tuple(bytes(value) if isinstance(value, memoryview) else value for value in row)
                for row in connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            ]
            for table in tables
        }


def all_data_keys(secrets: Secrets) -> list[DataKeyRecord]:
    return secrets.data_keys.select_data_keys(None, 10_000)


@pytest.fixture
def ledger(persistent_backend: str, tmp_path: Path) -> Iterator[list[str]]:
    """A ledger with a few secrets and versions: its --db and --keyring options."""
    options = ["--db", persistent_backend, "--keyring", str(tmp_path / "ledger.keyring")]
    for number in range(4):
        run_ok("create", "--name", f"{NAME}-{number}", "--secret-string", f"v0-{number}", *options)
        for put in range(1, 3):
            run_ok(
                "put",
                "--secret-id",
                f"{NAME}-{number}",
                "--secret-string",
                f"v{put}-{number}",
                *options,
            )
    run_ok("delete", "--secret-id", f"{NAME}-3", "--force-delete-without-recovery", *options)
    yield options


def open_ledger(options: list[str]) -> Secrets:
    return Secrets(options[1], keyring_path=Path(options[3]))


def assert_every_value_reads(options: list[str]) -> None:
    for number in range(3):
        versions = json.loads(
            run_ok(
                "versions",
                "--secret-id",
                f"{NAME}-{number}",
                "--include-deprecated",
                *options,
                "--json",
            )
        )
        values = {
            json.loads(
                run_ok(
                    "get",
                    "--secret-id",
                    f"{NAME}-{number}",
                    "--version-id",
                    entry["VersionId"],
                    *options,
                    "--json",
                )
            )["SecretString"]
            for entry in versions["Versions"]
        }
        assert values == {f"v{put}-{number}" for put in range(3)}


def test_rotate_kek_rewraps_every_data_key_and_changes_no_event(ledger: list[str]) -> None:
    before = event_tables(ledger[1])
    with open_ledger(ledger) as secrets:
        old_key_id = secrets.keyring.active_key_id
        count = len(all_data_keys(secrets))
    assert count == 9, "3 versions of 3 live secrets; the forced deletion destroyed 3 keys"

    rotated = json.loads(run_ok("keys", "rotate-kek", "--batch-size", "5", *ledger, "--json"))

    assert rotated["active_key_id"] != old_key_id
    assert (rotated["examined"], rotated["rewrapped"], rotated["added"]) == (count, count, True)
    assert event_tables(ledger[1]) == before
    with open_ledger(ledger) as secrets:
        assert secrets.keyring.key_ids == {old_key_id, rotated["active_key_id"]}
        assert {record.key_id for record in all_data_keys(secrets)} == {rotated["active_key_id"]}
    assert_every_value_reads(ledger)
    listed = json.loads(run_ok("keys", "list", *ledger, "--json"))
    assert listed["key_encryption_keys"]["active_key_id"] == rotated["active_key_id"]


def test_a_rotation_stopped_half_way_is_finished_by_resume(ledger: list[str]) -> None:
    before = event_tables(ledger[1])
    with open_ledger(ledger) as secrets:
        new_key_id = secrets.keyring.rotate()
        batches = secrets.rewrap_data_keys(batch_size=4)
        first = next(batches)
        batches.close()  # stopped between two batches, as a killed run is
        keys = all_data_keys(secrets)
    assert (first.examined, first.rewrapped) == (4, 4)
    assert sum(record.key_id == new_key_id for record in keys) == 4

    resumed = json.loads(
        run_ok("keys", "rotate-kek", "--resume", "--batch-size", "3", *ledger, "--json")
    )

    assert (resumed["active_key_id"], resumed["added"]) == (new_key_id, False)
    assert (resumed["examined"], resumed["rewrapped"]) == (len(keys), len(keys) - 4)
    with open_ledger(ledger) as secrets:
        assert {record.key_id for record in all_data_keys(secrets)} == {new_key_id}
    assert event_tables(ledger[1]) == before
    assert_every_value_reads(ledger)
    again = json.loads(run_ok("keys", "rotate-kek", "--resume", *ledger, "--json"))
    assert again["rewrapped"] == 0


def test_a_key_destroyed_during_a_batch_is_skipped_on_the_retry(
    ledger: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_ledger(ledger) as secrets:
        secrets.keyring.rotate()
        select = secrets.data_keys.select_data_keys
        destroyed: list[DataKeyRecord] = []

        def select_then_destroy(after: tuple[UUID, str] | None, limit: int) -> list[DataKeyRecord]:
            batch = select(after, limit)
            if not destroyed and batch:
                victim = next(record for record in batch if not is_current(secrets, record))
                destroyed.append(victim)
                secret = secrets.stored_secret(victim.secret_id)
                SecretsManagerApi(secrets).call(
                    "DestroySecretVersion", {"SecretId": secret.arn, "VersionId": victim.version_id}
                )
            return batch

        monkeypatch.setattr(secrets.data_keys, "select_data_keys", select_then_destroy)
        rewrapped = sum(batch.rewrapped for batch in secrets.rewrap_data_keys(batch_size=5))
        monkeypatch.undo()
        remaining = all_data_keys(secrets)
        assert rewrapped == len(remaining) == 8, "9 keys of live secrets, one destroyed meanwhile"
        assert {record.key_id for record in remaining} == {secrets.keyring.active_key_id}
        assert (destroyed[0].secret_id, destroyed[0].version_id) not in {
            (record.secret_id, record.version_id) for record in remaining
        }


def is_current(secrets: Secrets, record: DataKeyRecord) -> bool:
    return secrets.stored_secret(record.secret_id).labels["AWSCURRENT"] == record.version_id


def v1_bindings(database: Path) -> dict[tuple[UUID, str], bytes]:
    """The binding of every version the v1 log created, read from its events."""
    transcoder = MsgpackTranscoder()
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT originator_id, topic, state FROM stored_events ORDER BY rowid"
        ).fetchall()
    arns: dict[UUID, str] = {}
    bindings: dict[tuple[UUID, str], bytes] = {}
    for originator_id, topic, state in rows:
        secret_id, fields = UUID(originator_id), transcoder.decode(state)
        if topic == Secret.Created.TOPIC:
            arns[secret_id] = fields["arn"]
        elif topic == Secret.VersionCreated.TOPIC:
            bindings[(secret_id, fields["version_id"])] = version_binding(
                secret_arn=arns[secret_id], version_id=fields["version_id"], kind=fields["kind"]
            )
    return bindings


def test_keys_of_removed_purged_and_deleted_versions_of_an_old_log_are_rewrapped(
    tmp_path: Path,
) -> None:
    database = tmp_path / "ledger.sqlite"
    shutil.copyfile(V1_FIXTURE, database)
    keyring = Path(str(database) + ".keyring")
    shutil.copyfile(Path(str(V1_FIXTURE) + ".keyring"), keyring)
    keyring.chmod(0o600)
    with Secrets(str(database)) as secrets:  # adds the (empty) evidence tables
        live = {
            (secret.id, version_id)
            for secret in secrets.iterate_secrets()
            for version_id in secret.versions
        }
    bindings = v1_bindings(database)
    before = event_tables(str(database))

    rotated = json.loads(run_ok("keys", "rotate-kek", "--db", str(database), "--json"))

    assert event_tables(str(database)) == before
    with Secrets(str(database)) as secrets:
        records = all_data_keys(secrets)
    assert rotated["rewrapped"] == len(records) > len(live & set(bindings))
    opened = Keyring.open(keyring, create=False)
    for record in records:
        assert record.key_id == rotated["active_key_id"]
        binding = bindings[(record.secret_id, record.version_id)]
        assert len(opened.unwrap(record.key_id, record.wrapped_key, associated_data=binding)) == 32
