"""Tampering with a ledger as an attacker with write access to its database would.

Each test builds a ledger (events, then checkpoint 0 after ``FIRST_EVENTS`` events,
more events, then checkpoint 1), edits the database directly (the SQLite file with
the sqlite3 module, PostgreSQL by SQL with psycopg), and checks that ``secretledger
verify`` exits 3 and names the kind and the first bad position (docs/evidence.md,
V1-V9). An untouched ledger verifies (exit 0).
"""

from __future__ import annotations

import datetime
import json
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.checkpoints import parse_checkpoint_line, sign_checkpoint, to_line
from ledger.cli import main
from ledger.cli.evidence import EXIT_NOT_INTACT, EXIT_PROJECTIONS_DIFFER
from ledger.evidence import record_leaf
from ledger.merkle import GENESIS_CHAIN_HASH, chain_hash, leaf_hash
from ledger.signed_note import Signer

DATA = Path(__file__).parent / "data"
SECRET_NAMES = ("payments/api-key", "reports/db-password")


@dataclass
class Ledger:
    """One tamperable ledger: how to reach it, and SQL in the dialect of its engine."""

    database: str
    options: list[str]
    checkpoints: Path
    execute: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
    tables: dict[str, str]
    first_size: int  # events under checkpoint 0

    def sql(self, statement: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.execute(statement.format(**self.tables), parameters)

    def verify(self, *extra: str) -> tuple[int, dict[str, Any]]:
        result = run(["verify", "--db", self.database, *self.options, "--json", *extra])
        return result.exit_code, json.loads(result.stdout)


def run(arguments: list[str]) -> Result:
    return CliRunner().invoke(main, arguments, catch_exceptions=False)


def populate(secrets: Secrets, rounds: range) -> None:
    """Round 0 creates the secrets, later rounds put new values; one read per round."""
    api = SecretsManagerApi(secrets)
    for number in rounds:
        for name in SECRET_NAMES:
            members = {"SecretString": f"value {number}", "ClientRequestToken": str(uuid.uuid4())}
            if number == 0:
                api.call("CreateSecret", {**members, "Name": name})
            else:
                api.call("PutSecretValue", {**members, "SecretId": name})
        api.call("GetSecretValue", {"SecretId": SECRET_NAMES[0]})


def build(database: str, options: list[str], keyring: Path) -> int:
    """Events, checkpoint 0, more events, checkpoint 1; the size of checkpoint 0."""
    secrets = Secrets(database, keyring_path=keyring)
    try:
        populate(secrets, range(2))
        assert run(["checkpoint", "--db", database, *options]).exit_code == 0
        first_size = secrets.recorder.event_hash_count()  # type: ignore[attr-defined]
        populate(secrets, range(2, 4))
        assert run(["checkpoint", "--db", database, *options]).exit_code == 0
    finally:
        secrets.close()
    return int(first_size)


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Ledger:
    database = str(tmp_path / "ledger.db")
    first_size = build(database, [], tmp_path / "ledger.db.keyring")

    def execute(statement: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        with sqlite3.connect(database) as connection:
            return connection.execute(statement, tuple(parameters)).fetchall()

    tables = {
        "events": "stored_events",
        "id": "rowid",
        "hashes": "event_hashes",
        "checkpoints": "checkpoints",
    }
    return Ledger(database, [], Path(database + ".checkpoints"), execute, tables, first_size)


@pytest.fixture
def postgres_ledger(postgres_database_url: str, tmp_path: Path) -> Iterator[Ledger]:
    import psycopg

    checkpoints = tmp_path / "ledger.checkpoints"
    options = [
        "--signing-key",
        str(tmp_path / "ledger.signing-key"),
        "--checkpoints",
        str(checkpoints),
    ]
    first_size = build(postgres_database_url, options, tmp_path / "ledger.keyring")

    def execute(statement: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        with psycopg.connect(postgres_database_url, autocommit=True) as connection:
            cursor = connection.execute(statement.replace("?", "%s"), tuple(parameters))
            return cursor.fetchall() if cursor.description else []

    tables = {
        "events": "ledger_events",
        "id": "notification_id",
        "hashes": "ledger_event_hashes",
        "checkpoints": "ledger_checkpoints",
    }
    yield Ledger(postgres_database_url, options, checkpoints, execute, tables, first_size)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest) -> Ledger:
    fixture = "sqlite_ledger" if request.param == "sqlite" else "postgres_ledger"
    built: Ledger = request.getfixturevalue(fixture)
    return built


def positions(ledger: Ledger) -> list[int]:
    return [row[0] for row in ledger.sql("SELECT {id} FROM {events} ORDER BY {id}")]


def assert_not_intact(ledger: Ledger, kind: str, position: int | None) -> dict[str, Any]:
    exit_code, report = ledger.verify()
    assert exit_code == EXIT_NOT_INTACT, report
    assert report["intact"] is False
    assert (report["kind"], report["position"]) == (kind, position), report
    return report


def test_an_untouched_ledger_verifies(ledger: Ledger) -> None:
    exit_code, report = ledger.verify()
    assert exit_code == 0, report
    assert report["intact"] is True
    assert report["checkpoints"] == {"database": 2, "file": 2}
    assert report["tree_size"] == len(positions(ledger))


def test_a_modified_event_same_length_bytes(ledger: Ledger) -> None:
    target = positions(ledger)[3]
    (state,) = ledger.sql("SELECT state FROM {events} WHERE {id} = ?", [target])[0]
    edited = bytearray(state)
    edited[len(edited) // 2] ^= 0x01
    ledger.sql("UPDATE {events} SET state = ? WHERE {id} = ?", [bytes(edited), target])
    assert_not_intact(ledger, "modified", target)


def test_a_deleted_event(ledger: Ledger) -> None:
    target = positions(ledger)[4]
    ledger.sql("DELETE FROM {events} WHERE {id} = ?", [target])
    assert_not_intact(ledger, "deleted", target)


def test_a_deleted_event_and_its_hash_row(ledger: Ledger) -> None:
    target = positions(ledger)[4]
    ledger.sql("DELETE FROM {events} WHERE {id} = ?", [target])
    ledger.sql("DELETE FROM {hashes} WHERE notification_id = ?", [target])
    assert_not_intact(ledger, "deleted", target)


def test_reordered_events(ledger: Ledger) -> None:
    first, second = positions(ledger)[5:7]
    ledger.sql("UPDATE {events} SET {id} = -1 WHERE {id} = ?", [first])
    ledger.sql("UPDATE {events} SET {id} = ? WHERE {id} = ?", [first, second])
    ledger.sql("UPDATE {events} SET {id} = ? WHERE {id} = -1", [second])
    assert_not_intact(ledger, "reordered", first)


def insert_a_copy(ledger: Ledger, source: int) -> None:
    ledger.sql(
        "INSERT INTO {events} (originator_id, originator_version, topic, state) "
        "SELECT originator_id, originator_version + 1000, topic, state FROM {events} "
        "WHERE {id} = ?",
        [source],
    )


def test_an_inserted_event(ledger: Ledger) -> None:
    insert_a_copy(ledger, positions(ledger)[2])
    assert_not_intact(ledger, "inserted", positions(ledger)[-1])


def test_an_altered_chain_value(ledger: Ledger) -> None:
    target = positions(ledger)[7]
    ledger.sql("UPDATE {hashes} SET chain_hash = ? WHERE notification_id = ?", [bytes(32), target])
    assert_not_intact(ledger, "chain-altered", target)


def test_events_and_chain_rewritten_consistently_are_forged(ledger: Ledger) -> None:
    """An attacker who recomputes the whole chain with ledger.merkle still differs from
    the checkpoint signed before: the first position after the last matching one."""
    target = positions(ledger)[ledger.first_size]
    (state,) = ledger.sql("SELECT state FROM {events} WHERE {id} = ?", [target])[0]
    edited = bytearray(state)
    edited[len(edited) // 2] ^= 0x01
    ledger.sql("UPDATE {events} SET state = ? WHERE {id} = ?", [bytes(edited), target])
    rechain(ledger)
    assert_not_intact(ledger, "forged", target)


def rechain(ledger: Ledger) -> None:
    """Recompute every hash row from the stored events, as ledger.merkle defines them."""
    rows = ledger.sql(
        "SELECT {id}, originator_id, originator_version, topic, state FROM {events} ORDER BY {id}"
    )
    previous = GENESIS_CHAIN_HASH
    for leaf_index, (position, originator_id, version, topic, state) in enumerate(rows):
        record = StoredRow(position, uuid.UUID(str(originator_id)), version, topic, bytes(state))
        leaf = record_leaf(record)
        assert leaf is not None
        previous = chain_hash(previous, leaf_index, leaf)
        ledger.sql(
            "UPDATE {hashes} SET leaf_hash = ?, chain_hash = ? WHERE leaf_index = ?",
            [leaf_hash(leaf), previous, leaf_index],
        )


@dataclass(frozen=True)
class StoredRow:
    id: int
    originator_id: uuid.UUID
    originator_version: int
    topic: str
    state: bytes


def test_a_truncated_tail_against_the_checkpoint_file(ledger: Ledger) -> None:
    """The newest events, their hash rows and the newest database checkpoint are gone;
    the checkpoint file kept elsewhere still holds checkpoint 1."""
    keep = positions(ledger)[ledger.first_size - 1]
    ledger.sql("DELETE FROM {events} WHERE {id} > ?", [keep])
    ledger.sql("DELETE FROM {hashes} WHERE notification_id > ?", [keep])
    ledger.sql("DELETE FROM {checkpoints} WHERE sequence = 1")
    assert_not_intact(ledger, "truncated", keep + 1)


def test_an_altered_checkpoint_line(ledger: Ledger) -> None:
    lines = ledger.checkpoints.read_text().splitlines()
    document = json.loads(lines[1])
    moment = document["time"]
    altered = moment.replace(moment[:4], str(int(moment[:4]) - 1))
    lines[1] = lines[1].replace(moment, altered)
    ledger.checkpoints.write_text("\n".join(lines) + "\n")
    report = assert_not_intact(ledger, "checkpoint-invalid", int(document["position"]))
    assert report["checkpoint"] == 1


def test_a_checkpoint_signed_by_another_key(ledger: Ledger) -> None:
    """A well-formed next checkpoint, linked to the last one, signed by a stranger's key
    under the log's own name, in both the database and the file."""
    latest = parse_checkpoint_line(ledger.checkpoints.read_text().splitlines()[-1])
    stranger = Signer(latest.origin, bytes(range(32)))
    forged = sign_checkpoint(
        stranger,
        tree_size=latest.tree_size,
        root=latest.root,
        position=latest.position,
        chain_head=latest.chain_head,
        time=datetime.datetime.now(datetime.UTC),
        previous=latest,
    )
    line = to_line(forged)
    ledger.sql(
        "INSERT INTO {checkpoints} (sequence, tree_size, line) VALUES (2, ?, ?)",
        [forged.tree_size, line],
    )
    with ledger.checkpoints.open("a") as stream:
        stream.write(line + "\n")
    report = assert_not_intact(ledger, "checkpoint-invalid", latest.position)
    assert report["checkpoint"] == 2
    assert "no signature of the note is by a known key" in report["problem"]


def test_a_deleted_database_checkpoint(ledger: Ledger) -> None:
    latest = parse_checkpoint_line(ledger.checkpoints.read_text().splitlines()[-1])
    ledger.sql("DELETE FROM {checkpoints} WHERE sequence = 1")
    report = assert_not_intact(ledger, "checkpoint-missing", latest.position)
    assert report["checkpoint"] == 1


def test_a_deleted_database_checkpoint_in_the_middle(ledger: Ledger) -> None:
    ledger.sql("DELETE FROM {checkpoints} WHERE sequence = 0")
    report = assert_not_intact(ledger, "checkpoint-missing", None)
    assert report["checkpoint"] == 0


def test_the_writer_refuses_to_sign_past_a_problem(ledger: Ledger) -> None:
    """It walks what was appended since the last checkpoint: here an event without a
    chain entry."""
    insert_a_copy(ledger, positions(ledger)[2])
    result = run(["checkpoint", "--db", ledger.database, *ledger.options, "--json"])
    assert result.exit_code == EXIT_NOT_INTACT
    assert json.loads(result.stdout)["kind"] == "inserted"
    assert len(ledger.sql("SELECT sequence FROM {checkpoints}")) == 2


def test_a_deleted_projection_row_shows_with_projections(sqlite_ledger: Ledger) -> None:
    exit_code, report = sqlite_ledger.verify("--projections")
    assert (exit_code, report["projections"]) == (0, "identical")
    sqlite_ledger.sql(
        "DELETE FROM projection_audit_records WHERE rowid = "
        "(SELECT max(rowid) FROM projection_audit_records)"
    )
    exit_code, report = sqlite_ledger.verify("--projections")
    assert exit_code == EXIT_PROJECTIONS_DIFFER, report
    assert report["intact"] is True
    assert report["projections"]["table"] == "projection_audit_records"
    assert report["projections"]["live"] is None or report["projections"]["rebuilt"] is not None


# A log written before the chain existed


@pytest.fixture
def v1_ledger(tmp_path: Path) -> str:
    copy = tmp_path / "ledger.sqlite"
    shutil.copyfile(DATA / "ledger-v1.sqlite", copy)
    copy.chmod(0o600)
    return str(copy)


def test_a_log_older_than_the_chain_is_reported_as_such(v1_ledger: str) -> None:
    result = run(["verify", "--db", v1_ledger, "--json"])
    assert result.exit_code == EXIT_NOT_INTACT
    report = json.loads(result.stdout)
    assert (report["kind"], report["position"]) == ("unchained", 1)
    assert "predate the hash chain" in report["problem"]
    assert "--adopt-unchained" in report["problem"]


def test_adoption_signs_a_first_checkpoint_and_says_so(v1_ledger: str) -> None:
    result = run(["checkpoint", "--db", v1_ledger, "--adopt-unchained"])
    assert result.exit_code == 0, result.output
    assert "evidence for them starts at this checkpoint" in result.stdout
    first_line = Path(v1_ledger + ".checkpoints").read_text().splitlines()[0]
    assert first_line.startswith('{"adoption":')
    verified = run(["verify", "--db", v1_ledger])
    assert verified.exit_code == 0, verified.output
    assert "predate the hash chain and were adopted" in verified.stdout
    again = run(["checkpoint", "--db", v1_ledger, "--adopt-unchained"])
    assert again.exit_code == 1
    assert "nothing to adopt" in again.output


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def unchained_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    """A ledger whose hash rows are all gone and that has no checkpoint: what a log
    written before the chain existed looks like, on either engine."""
    built: Ledger = request.getfixturevalue(f"{request.param}_ledger")
    built.sql("DELETE FROM {hashes}")
    built.sql("DELETE FROM {checkpoints}")
    built.checkpoints.write_text("")
    return built


def test_adoption_on_every_engine(unchained_ledger: Ledger) -> None:
    exit_code, report = unchained_ledger.verify()
    assert (exit_code, report["kind"]) == (EXIT_NOT_INTACT, "unchained")
    adopt = ["checkpoint", "--db", unchained_ledger.database, *unchained_ledger.options]
    assert run([*adopt, "--adopt-unchained"]).exit_code == 0
    exit_code, report = unchained_ledger.verify()
    assert exit_code == 0, report
    assert report["adopted_unchained"] == len(positions(unchained_ledger))
