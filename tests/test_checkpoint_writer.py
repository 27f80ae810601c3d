"""The checkpoint writer (rules W1-W9 of docs/evidence.md) and `serve`'s background writer."""

from __future__ import annotations

import datetime
import json
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from eventsourcing.persistence import IntegrityError, OperationalError
from http_harness import start_server
from ledger_helpers import StandIn

import ledger.cli.evidence as evidence_cli
from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.checkpoints import parse_checkpoint_line, sign_checkpoint, to_line
from ledger.cli import main
from ledger.cli.evidence import CheckpointScheduler, checkpoint_keys
from ledger.evidence import (
    CHECKPOINT_FILE_MODE,
    NODES_ALTERED,
    CheckedCheckpoints,
    CheckpointKeys,
    CheckpointStore,
    Tampered,
    read_checkpoint_file,
    verify_evidence,
    write_checkpoint,
)
from ledger.merkle import root
from ledger.signed_note import Signer
from ledger.storage import StoredCheckpoint

SIGNER = Signer("writer.test/1", bytes(range(32)))
KEYS = CheckpointKeys(SIGNER, (SIGNER.verifier,))
MOMENT = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
CHECKPOINT_WAIT_SECONDS = 20


def now() -> datetime.datetime:
    return MOMENT


def add_events(secrets: Secrets, count: int) -> None:
    """About ``count`` events: puts to one secret (created first)."""
    api = SecretsManagerApi(secrets, record_calls=False)
    if secrets.recorder.max_notification_id() is None:
        api.call("CreateSecret", {"Name": "s", "SecretString": "v", "ClientRequestToken": token()})
    start = secrets.recorder.max_notification_id() or 0
    while (secrets.recorder.max_notification_id() or 0) < start + count:
        api.call(
            "PutSecretValue", {"SecretId": "s", "SecretString": "v", "ClientRequestToken": token()}
        )


def token() -> str:
    return str(uuid.uuid4())


def store_of(secrets: Secrets) -> CheckpointStore:
    store: CheckpointStore = secrets.recorder  # type: ignore[assignment]
    return store


def test_each_checkpoint_resumes_from_stored_nodes_and_signs_the_true_root() -> None:
    secrets = Secrets("memory:")
    store = store_of(secrets)
    for count in (1, 2, 5, 13, 40):
        add_events(secrets, count)
        written = write_checkpoint(store, KEYS, now=now, checkpoint_path=None)
        assert written.checkpoint is not None
        leaves = [row.leaf_hash for row in store.select_event_hashes(0, 10_000)]
        assert written.checkpoint.root == root(leaves)
        assert written.checkpoint.tree_size == len(leaves)
    assert write_checkpoint(store, KEYS, now=now, checkpoint_path=None).checkpoint is None
    assert verify_evidence(store, KEYS.verifiers, None).intact


def test_missing_nodes_make_the_writer_walk_from_the_start(tmp_path: Path) -> None:
    database = str(tmp_path / "ledger.db")
    secrets = Secrets(database)
    add_events(secrets, 20)
    write_checkpoint(store_of(secrets), KEYS, now=now, checkpoint_path=None)
    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM merkle_nodes")
    add_events(secrets, 5)
    written = write_checkpoint(store_of(secrets), KEYS, now=now, checkpoint_path=None)
    assert written.checkpoint is not None
    assert verify_evidence(store_of(secrets), KEYS.verifiers, None).intact
    secrets.close()


def test_an_altered_node_makes_the_writer_refuse_to_sign(tmp_path: Path) -> None:
    database = str(tmp_path / "ledger.db")
    secrets = Secrets(database)
    add_events(secrets, 20)
    write_checkpoint(store_of(secrets), KEYS, now=now, checkpoint_path=None)
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE merkle_nodes SET hash = zeroblob(32)")
    add_events(secrets, 5)
    with pytest.raises(Tampered) as refused:
        write_checkpoint(store_of(secrets), KEYS, now=now, checkpoint_path=None)
    assert refused.value.problem.kind == NODES_ALTERED
    assert len(store_of(secrets).select_checkpoints()) == 1
    secrets.close()


class Racing(StandIn):
    """A store where another writer stores the same sequence just before this one."""

    def insert_checkpoint(self, sequence: int, tree_size: int, line: str) -> None:
        other = Signer("writer.test/1", bytes(32))
        rival = sign_checkpoint(
            other,
            tree_size=tree_size,
            root=parse_checkpoint_line(line).root,
            position=parse_checkpoint_line(line).position,
            chain_head=parse_checkpoint_line(line).chain_head,
            time=MOMENT,
            previous=None,
        )
        self.wrapped.insert_checkpoint(sequence, tree_size, to_line(rival))
        self.wrapped.insert_checkpoint(sequence, tree_size, line)


def test_a_sequence_taken_by_another_writer_writes_nothing(tmp_path: Path) -> None:
    secrets = Secrets("memory:")
    add_events(secrets, 3)
    racing: CheckpointStore = Racing(store_of(secrets))  # type: ignore[assignment]
    path = tmp_path / "checkpoints"
    written = write_checkpoint(racing, KEYS, now=now, checkpoint_path=path)
    assert written.checkpoint is None
    assert "another writer" in written.reason
    assert not path.exists()
    with pytest.raises(IntegrityError):
        store_of(secrets).insert_checkpoint(0, 1, "x")


def test_the_file_is_public_fsynced_and_catches_up_with_the_database(tmp_path: Path) -> None:
    secrets = Secrets("memory:")
    path = tmp_path / "ledger.checkpoints"
    for _ in range(3):
        add_events(secrets, 2)
        write_checkpoint(store_of(secrets), KEYS, now=now, checkpoint_path=path)
    assert stat.S_IMODE(path.stat().st_mode) == CHECKPOINT_FILE_MODE
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1]) + "\n")  # a crash lost the last two appends
    add_events(secrets, 2)
    write_checkpoint(store_of(secrets), KEYS, now=now, checkpoint_path=path)
    stored: Sequence[StoredCheckpoint] = store_of(secrets).select_checkpoints()
    assert read_checkpoint_file(path).lines == tuple(row.line for row in stored)


def test_a_file_ahead_of_the_database_stops_the_writer(tmp_path: Path) -> None:
    secrets = Secrets("memory:")
    path = tmp_path / "ledger.checkpoints"
    add_events(secrets, 2)
    write_checkpoint(store_of(secrets), KEYS, now=now, checkpoint_path=path)
    path.write_text(path.read_text() * 2)
    add_events(secrets, 2)
    with pytest.raises(Tampered) as refused:
        write_checkpoint(store_of(secrets), KEYS, now=now, checkpoint_path=path)
    assert refused.value.problem.kind == "checkpoint-missing"


class CountingReads(StandIn):
    """A store that counts the checkpoint rows it hands out."""

    rows_read = 0

    def select_checkpoints(self, start: int = 0) -> list[StoredCheckpoint]:
        rows: list[StoredCheckpoint] = self.wrapped.select_checkpoints(start=start)
        self.rows_read += len(rows)
        return rows


def checkpoints_kept(
    store: CheckpointStore, secrets: Secrets, count: int, path: Path | None
) -> CheckedCheckpoints:
    """``count`` checkpoints by one writer that keeps what it checked, as `serve`'s does."""
    checked = CheckedCheckpoints()
    for _ in range(count):
        add_events(secrets, 2)
        written = write_checkpoint(store, KEYS, now=now, checkpoint_path=path, checked=checked)
        checked = written.checked
    return checked


def test_a_writer_that_keeps_what_it_checked_reads_only_what_is_newer(tmp_path: Path) -> None:
    """A server signs a checkpoint every thousand events for as long as it runs: the
    cost of one must not grow with the checkpoints stored before it."""
    secrets = Secrets("memory:")
    path = tmp_path / "ledger.checkpoints"
    counting = CountingReads(store_of(secrets))
    store: CheckpointStore = counting  # type: ignore[assignment]
    checked = checkpoints_kept(store, secrets, 30, path)
    counting.rows_read = 0
    add_events(secrets, 2)
    written = write_checkpoint(store, KEYS, now=now, checkpoint_path=path, checked=checked)
    assert written.checkpoint is not None
    assert counting.rows_read == 3  # the newest checked, then the new one twice
    assert (written.checked.count, written.checked.file_lines) == (31, 31)
    assert written.checked.file_size_bytes == path.stat().st_size
    stored = store_of(secrets).select_checkpoints()
    assert read_checkpoint_file(path).lines == tuple(row.line for row in stored)


def test_a_database_that_lost_its_newest_checkpoints_stops_the_writer_that_saw_them(
    tmp_path: Path,
) -> None:
    """Restored from an older backup, say; PostgreSQL servers keep no file by default."""
    database = str(tmp_path / "ledger.db")
    secrets = Secrets(database)
    checked = checkpoints_kept(store_of(secrets), secrets, 3, None)
    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM checkpoints WHERE sequence = 2")
    add_events(secrets, 2)
    with pytest.raises(Tampered) as refused:
        write_checkpoint(store_of(secrets), KEYS, now=now, checkpoint_path=None, checked=checked)
    assert refused.value.problem.kind == "checkpoint-missing"
    assert len(store_of(secrets).select_checkpoints()) == 2
    secrets.close()


def test_a_gap_among_older_checkpoints_stops_a_writer_that_checks_them_all(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "ledger.db")
    secrets = Secrets(database)
    checkpoints_kept(store_of(secrets), secrets, 3, None)
    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM checkpoints WHERE sequence = 1")
    add_events(secrets, 2)
    with pytest.raises(Tampered) as refused:
        write_checkpoint(store_of(secrets), KEYS, now=now, checkpoint_path=None)
    assert refused.value.problem.kind == "checkpoint-missing"
    assert "not checkpoint 1" in refused.value.problem.detail
    secrets.close()


def test_lines_another_writer_appended_are_read_and_a_shortened_file_is_read_again(
    tmp_path: Path,
) -> None:
    secrets = Secrets("memory:")
    path = tmp_path / "ledger.checkpoints"
    checked = checkpoints_kept(store_of(secrets), secrets, 2, path)
    add_events(secrets, 2)  # another server, writing the same file
    write_checkpoint(store_of(secrets), KEYS, now=now, checkpoint_path=path)
    add_events(secrets, 2)
    written = write_checkpoint(
        store_of(secrets), KEYS, now=now, checkpoint_path=path, checked=checked
    )
    assert (written.checked.count, written.checked.file_lines) == (4, 4)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1]) + "\n")  # a crash lost the last appends
    add_events(secrets, 2)
    written = write_checkpoint(
        store_of(secrets), KEYS, now=now, checkpoint_path=path, checked=written.checked
    )
    assert (written.checked.count, written.checked.file_lines) == (5, 5)
    stored = store_of(secrets).select_checkpoints()
    assert read_checkpoint_file(path).lines == tuple(row.line for row in stored)


class SilentDatabase(StandIn):
    """A store whose log size does not come back: a database that stopped answering."""

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self.asked = threading.Event()
        self.answer = threading.Event()

    def event_hash_count(self) -> int:
        self.asked.set()
        self.answer.wait(30)
        count: int = self.wrapped.event_hash_count()
        return count


def test_a_database_that_does_not_answer_does_not_hold_the_shutdown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(evidence_cli, "CHECKPOINT_STOP_SECONDS_MAX", 0.5)
    secrets = Secrets("memory:")
    add_events(secrets, 2)
    silent = SilentDatabase(store_of(secrets))
    store: CheckpointStore = silent  # type: ignore[assignment]
    scheduler = CheckpointScheduler(store, KEYS, None, every_events=1, every_seconds=0.05)
    scheduler.start()
    assert silent.asked.wait(5)
    started = time.monotonic()
    scheduler.stop()
    assert time.monotonic() - started < 2
    assert "last checkpoint not written" in capsys.readouterr().err
    silent.answer.set()


class FailingOnce(StandIn):
    """A store whose first read of the log's size fails, as when a connection drops."""

    failures_left = 1

    def event_hash_count(self) -> int:
        if self.failures_left:
            self.failures_left -= 1
            raise OperationalError("connection lost")
        count: int = self.wrapped.event_hash_count()
        return count


def test_a_failed_poll_does_not_stop_the_checkpoint_writer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    secrets = Secrets("memory:")
    add_events(secrets, 2)
    store: CheckpointStore = FailingOnce(store_of(secrets))  # type: ignore[assignment]
    scheduler = CheckpointScheduler(store, KEYS, None, every_events=1, every_seconds=0.05)
    scheduler.start()
    deadline = time.monotonic() + 5
    while not store_of(secrets).select_checkpoints() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store_of(secrets).select_checkpoints()  # by the writer's thread, after it
    scheduler.stop()
    assert "cannot read the log's size: OperationalError" in capsys.readouterr().err


def test_postgres_needs_a_signing_key_file() -> None:
    with pytest.raises(click.ClickException, match="--signing-key"):
        checkpoint_keys("postgresql://localhost/ledger", None, has_checkpoints=False)


def test_no_new_signing_key_for_a_ledger_with_checkpoints(tmp_path: Path) -> None:
    database = str(tmp_path / "ledger.db")
    with pytest.raises(click.ClickException, match=r"ledger\.db\.signing-key does not exist"):
        checkpoint_keys(database, None, has_checkpoints=True)
    keys = checkpoint_keys(database, None, has_checkpoints=False)
    assert Path(database + ".signing-key").exists()
    assert keys.signer.verifier in keys.verifiers


def test_serve_writes_checkpoints_every_n_events_and_at_shutdown(tmp_path: Path) -> None:
    server = start_server(
        tmp_path, options=["--checkpoint-every-events", "5", "--checkpoint-every-seconds", "600"]
    )
    path = Path(str(server.database) + ".checkpoints")
    try:
        client = server.client()
        client.create_secret(Name="app/key", SecretString="v0", ClientRequestToken=token())
        for number in range(1, 4):
            client.put_secret_value(
                SecretId="app/key", SecretString=f"v{number}", ClientRequestToken=token()
            )
        deadline = time.monotonic() + CHECKPOINT_WAIT_SECONDS
        while not (path.exists() and path.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path.exists() and path.read_text(), server.log()
        client.get_secret_value(SecretId="app/key")
    finally:
        server.stop()
    last = parse_checkpoint_line(path.read_text().splitlines()[-1])
    with sqlite3.connect(server.database) as connection:
        (count,) = connection.execute("SELECT count(*) FROM event_hashes").fetchone()
    assert last.tree_size == count, "the shutdown checkpoint covers every event"
    result = CliRunner().invoke(main, ["verify", "--db", str(server.database), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checkpoints"]["file"] >= 2
