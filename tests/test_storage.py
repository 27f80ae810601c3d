"""The storage layer: how event state is encoded, and how data keys are kept.

A tiny notebook application stands in for the ledger: each revision of a note
carries ciphertext, and its data key is saved in the same transaction.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID, uuid4

import msgpack
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, Transcoder

from ledger import storage
from ledger.storage import (
    DataKeyNotFoundError,
    DataKeyRecord,
    DataKeyStore,
    DurableSQLiteConnectionPool,
    MsgpackTranscoder,
    environment_for_database,
)

CONNECTION_RETRY_WAIT_SECONDS = 0.2  # eventsourcing's recorders wait this long to retry

# --------------------------------------------------------------------------------------
# A throwaway application
# --------------------------------------------------------------------------------------


class Note(Aggregate):
    TOPIC = "tests/storage/Note"

    @event("Created", topic="tests/storage/Note.Created/v1")
    def __init__(self, title: str) -> None:
        self.title = title
        self.revisions: dict[str, bytes] = {}

    @event("Revised", topic="tests/storage/Note.Revised/v1")
    def revise(self, version_id: str, ciphertext: bytes) -> None:
        self.revisions[version_id] = ciphertext

    @event("Shredded", topic="tests/storage/Note.Shredded/v1")
    def shred(self, version_id: str) -> None:
        """Says that a revision's data key goes (saved with ``destroyed_data_keys``)."""
        assert version_id in self.revisions


class Notebook(Application[UUID]):
    name = "Notebook"
    is_snapshotting_enabled = True

    def construct_transcoder(self) -> Transcoder:
        return MsgpackTranscoder()

    @property
    def data_keys(self) -> DataKeyStore:
        assert isinstance(self.recorder, DataKeyStore)
        return self.recorder


@pytest.fixture
def notebook(backend: str) -> Iterator[Notebook]:
    application = Notebook(env=environment_for_database(backend))
    try:
        yield application
    finally:
        application.close()


def data_key_for(note: Note, version_id: str, key_id: str = "kek-1") -> DataKeyRecord:
    return DataKeyRecord(
        secret_id=note.id,
        version_id=version_id,
        key_id=key_id,
        wrapped_key=f"wrapped data key of {version_id} under {key_id}".encode(),
    )


def revised_note(notebook: Notebook, version_id: str) -> tuple[Note, DataKeyRecord]:
    note = Note("shopping list")
    note.revise(version_id, b"\x00ciphertext\xff")
    return note, data_key_for(note, version_id)


# --------------------------------------------------------------------------------------
# Transcoder
# --------------------------------------------------------------------------------------

transcoder = MsgpackTranscoder()


def assert_same_structure(decoded: Any, original: Any) -> None:
    assert type(decoded) is type(original)
    if isinstance(original, dict):
        assert list(decoded) == list(original)
        for key, value in original.items():
            assert_same_structure(decoded[key], value)
    elif isinstance(original, list | tuple):
        assert len(decoded) == len(original)
        for decoded_item, original_item in zip(decoded, original, strict=True):
            assert_same_structure(decoded_item, original_item)
    else:
        assert decoded == original


ROUND_TRIP_VALUES = {
    "bytes": b"\x00\x01binary\xff",
    "empty bytes": b"",
    "tuple": ("AWSCURRENT", "AWSPENDING"),
    "nested tuple": (1, ("a", (b"b", None)), [2, (3,)]),
    "empty tuple": (),
    "uuid": UUID("6f1c2a57-9c3e-4d2b-8f6a-0a1b2c3d4e5f"),
    "utc datetime": datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
    "nested map": {
        "labels": {"AWSCURRENT": "v2", "AWSPREVIOUS": "v1"},
        "versions": [{"id": "v1", "stages": ("AWSPREVIOUS",)}],
        7: "integer key",
        ("tuple", "key"): {"deep": {"deeper": b"bytes"}},
    },
    "frozenset": frozenset({"AWSCURRENT", "custom", ("tuple", 1)}),
    "empty frozenset": frozenset(),
    "decimal": Decimal("-12345.678900"),
    "scalars": [None, True, False, 0, -1, 2**63 - 1, -(2**63), 1.5, "ünïcödé"],
}


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES.values(), ids=ROUND_TRIP_VALUES.keys())
def test_values_survive_an_encoding_round_trip_with_their_types(value: object) -> None:
    assert_same_structure(transcoder.decode(transcoder.encode(value)), value)


def test_a_uuid_used_as_a_map_key_comes_back_as_a_uuid() -> None:
    secret_id = uuid4()
    decoded = transcoder.decode(transcoder.encode({secret_id: "value"}))
    assert decoded == {secret_id: "value"}
    assert type(next(iter(decoded))) is UUID


def test_a_datetime_with_another_offset_comes_back_as_the_same_instant_in_utc() -> None:
    in_paris = datetime(2024, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    decoded = transcoder.decode(transcoder.encode(in_paris))
    assert decoded == in_paris
    assert decoded.utcoffset() == timedelta(0)


def test_bytes_are_stored_as_msgpack_binary_not_as_text() -> None:
    assert transcoder.encode(b"\xff") == b"\xc4\x01\xff"


def test_extension_codes_are_fixed_so_stored_events_stay_readable() -> None:
    uuid = UUID("00112233-4455-6677-8899-aabbccddeeff")
    assert transcoder.encode(uuid) == b"\xd8\x01" + uuid.bytes
    assert transcoder.encode(("a",)) == b"\xc7\x03\x02\x91\xa1a"
    assert transcoder.encode(Decimal("1.5")) == b"\xc7\x03\x04" + b"1.5"
    assert transcoder.encode(frozenset({"b", "a"})) == b"\xc7\x05\x03\x92\xa1a\xa1b"


def test_equal_frozensets_encode_to_equal_bytes_whatever_their_construction_order() -> None:
    elements = [f"label-{number}" for number in range(50)]
    assert transcoder.encode(frozenset(elements)) == transcoder.encode(
        frozenset(reversed(elements))
    )
    encoded_elements = msgpack.unpackb(
        msgpack.unpackb(transcoder.encode(frozenset(elements))).data, raw=False
    )
    assert encoded_elements == sorted(elements, key=transcoder.encode)


def test_a_naive_datetime_is_rejected() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        transcoder.encode({"timestamp": datetime(2024, 1, 1, 12, 0)})


class Stage(StrEnum):
    CURRENT = "AWSCURRENT"


class Pair(NamedTuple):
    left: int
    right: int


class PlainText(str):
    __slots__ = ()


UNSUPPORTED_VALUES = {
    "set": {"mutable", "set"},
    "date": date(2024, 1, 1),
    "object": object(),
    "str enum": Stage.CURRENT,
    "named tuple": Pair(1, 2),
    "ordered dict": OrderedDict(a=1),
    "subclass of str": PlainText("x"),
}


@pytest.mark.parametrize("value", UNSUPPORTED_VALUES.values(), ids=UNSUPPORTED_VALUES.keys())
def test_values_of_unknown_types_are_rejected_rather_than_flattened(value: object) -> None:
    with pytest.raises(TypeError, match="cannot encode a value of type"):
        transcoder.encode({"field": [value]})


def test_a_rejected_value_is_never_repeated_in_the_error_message() -> None:
    with pytest.raises(TypeError) as raised:
        transcoder.encode(PlainText("hunter2-top-secret"))
    assert "hunter2" not in str(raised.value)
    assert "PlainText" in str(raised.value)


def test_an_unknown_extension_code_is_reported_as_corrupt_data() -> None:
    with pytest.raises(ValueError, match="unknown msgpack extension code 99"):
        transcoder.decode(msgpack.packb(msgpack.ExtType(99, b"?")))


def test_a_truncated_uuid_is_reported_as_corrupt_data() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        transcoder.decode(msgpack.packb(msgpack.ExtType(1, b"short")))


def test_events_and_snapshots_round_trip_through_the_store(notebook: Notebook) -> None:
    note = Note("passwords")
    note.revise("v1", b"\x00\x01")
    note.revise("v2", b"\x02\x03")
    notebook.save(note)
    notebook.take_snapshot(note.id, version=2)
    assert notebook.snapshots is not None
    assert len(list(notebook.snapshots.get(note.id))) == 1

    from_snapshot: Note = notebook.repository.get(note.id)
    from_events: Note = notebook.repository.get(note.id, version=3)

    for copy in (from_snapshot, from_events):
        assert copy.title == "passwords"
        assert copy.revisions == {"v1": b"\x00\x01", "v2": b"\x02\x03"}
        assert copy.created_on == note.created_on
        assert copy.created_on.tzinfo is not None


# --------------------------------------------------------------------------------------
# Data keys
# --------------------------------------------------------------------------------------


def test_a_data_key_is_saved_together_with_the_version_that_uses_it(notebook: Notebook) -> None:
    note, data_key = revised_note(notebook, "v1")

    notebook.save(note, data_keys=[data_key])

    assert notebook.data_keys.select_data_key(note.id, "v1") == data_key
    assert notebook.repository.get(note.id).revisions == {"v1": b"\x00ciphertext\xff"}


def test_a_version_without_a_data_key_has_none(notebook: Notebook) -> None:
    note, _ = revised_note(notebook, "v1")
    notebook.save(note)

    assert notebook.data_keys.select_data_key(note.id, "v1") is None
    assert notebook.data_keys.select_data_key(uuid4(), "v1") is None


def test_a_losing_concurrent_writer_leaves_no_data_key_behind(notebook: Notebook) -> None:
    note, first_key = revised_note(notebook, "v1")
    notebook.save(note, data_keys=[first_key])
    writer_a: Note = notebook.repository.get(note.id)
    writer_b: Note = notebook.repository.get(note.id)

    writer_a.revise("v2", b"from a")
    notebook.save(writer_a, data_keys=[data_key_for(note, "v2")])
    writer_b.revise("v3", b"from b")
    with pytest.raises(IntegrityError):
        notebook.save(writer_b, data_keys=[data_key_for(note, "v3")])

    assert notebook.data_keys.select_data_key(note.id, "v2") is not None
    assert notebook.data_keys.select_data_key(note.id, "v3") is None
    assert set(notebook.repository.get(note.id).revisions) == {"v1", "v2"}


def test_a_conflicting_data_key_rolls_back_the_events_saved_with_it(notebook: Notebook) -> None:
    note, data_key = revised_note(notebook, "v1")
    notebook.save(note, data_keys=[data_key])
    version_before: int = notebook.repository.get(note.id).version

    note.revise("v1-again", b"reuses the key row of v1")
    started = time.monotonic()
    with pytest.raises(IntegrityError):
        notebook.save(note, data_keys=[data_key_for(note, "v1", key_id="kek-2")])

    # At once: not mistaken for a dropped connection and retried after a wait.
    assert time.monotonic() - started < CONNECTION_RETRY_WAIT_SECONDS
    assert notebook.repository.get(note.id).version == version_before
    assert notebook.data_keys.select_data_key(note.id, "v1") == data_key


def test_several_aggregates_and_their_keys_commit_as_one(notebook: Notebook) -> None:
    first, first_key = revised_note(notebook, "v1")
    second, second_key = revised_note(notebook, "v1")

    notebook.save(first, second, data_keys=[first_key, second_key])

    assert notebook.data_keys.select_data_key(first.id, "v1") == first_key
    assert notebook.data_keys.select_data_key(second.id, "v1") == second_key


def test_a_data_key_for_an_aggregate_not_being_saved_is_refused(notebook: Notebook) -> None:
    note, _ = revised_note(notebook, "v1")
    stranger = Note("not saved")

    with pytest.raises(ValueError, match="same call"):
        notebook.save(note, data_keys=[data_key_for(stranger, "v1")])

    assert notebook.recorder.max_notification_id() is None


def test_duplicate_data_keys_in_one_save_are_refused(notebook: Notebook) -> None:
    note, data_key = revised_note(notebook, "v1")

    with pytest.raises(ValueError, match="distinct"):
        notebook.save(note, data_keys=[data_key, data_key])

    assert notebook.recorder.max_notification_id() is None


def test_data_keys_must_be_records(notebook: Notebook) -> None:
    note, data_key = revised_note(notebook, "v1")
    with pytest.raises(TypeError, match="DataKeyRecord"):
        notebook.save(note, data_keys=[data_key.wrapped_key])

    note, data_key = revised_note(notebook, "v1")
    with pytest.raises(TypeError, match="list or tuple"):
        notebook.save(note, data_keys=data_key)

    assert notebook.recorder.max_notification_id() is None


def test_destroying_a_data_key_shreds_that_version(notebook: Notebook) -> None:
    note, data_key = revised_note(notebook, "v1")
    note.revise("v2", b"kept")
    notebook.save(note, data_keys=[data_key, data_key_for(note, "v2")])

    note.shred("v1")
    notebook.save(note, destroyed_data_keys=[(note.id, "v1")])

    assert notebook.data_keys.select_data_key(note.id, "v1") is None
    assert notebook.data_keys.select_data_key(note.id, "v2") is not None
    assert notebook.repository.get(note.id).revisions["v1"] == b"\x00ciphertext\xff"


def test_destroying_a_missing_data_key_is_not_an_error(notebook: Notebook) -> None:
    note, data_key = revised_note(notebook, "v1")
    notebook.save(note, data_keys=[data_key])
    note.shred("v1")
    notebook.save(note, destroyed_data_keys=[(note.id, "v1")])

    note.shred("v1")
    notebook.save(note, destroyed_data_keys=[(note.id, "v1"), (note.id, "never-stored")])

    assert notebook.repository.get(note.id).version == note.version


def test_a_conflicting_save_destroys_no_data_key(notebook: Notebook) -> None:
    note, data_key = revised_note(notebook, "v1")
    notebook.save(note, data_keys=[data_key])
    stale = notebook.repository.get(note.id)
    note.revise("v2", b"newer")
    notebook.save(note, data_keys=[data_key_for(note, "v2")])

    stale.shred("v1")
    with pytest.raises(IntegrityError):
        notebook.save(stale, destroyed_data_keys=[(note.id, "v1")])

    assert notebook.data_keys.select_data_key(note.id, "v1") == data_key


def test_destroyed_data_keys_are_checked(notebook: Notebook) -> None:
    note, data_key = revised_note(notebook, "v1")
    notebook.save(note, data_keys=[data_key])
    stranger = Note("not saved")
    cases: list[tuple[object, type[Exception], str]] = [
        ({(note.id, "v1")}, TypeError, "list or tuple"),
        ([(note.id,)], TypeError, "pairs"),
        ([(str(note.id), "v1")], TypeError, "pairs"),
        ([(note.id, "")], ValueError, "version_id"),
        ([(stranger.id, "v1")], ValueError, "same call"),
        ([(note.id, "v1"), (note.id, "v1")], ValueError, "distinct"),
    ]
    for destroyed, error, match in cases:
        note.shred("v1")
        with pytest.raises(error, match=match):
            notebook.save(note, destroyed_data_keys=destroyed)
        note = notebook.repository.get(note.id)
    note.shred("v1")
    with pytest.raises(TypeError, match="defer_erasure"):
        notebook.save(note, destroyed_data_keys=[(note.id, "v1")], defer_erasure="yes")

    assert notebook.data_keys.select_data_key(note.id, "v1") == data_key


def test_replacing_a_data_key_rewraps_it_under_a_new_key_encryption_key(
    notebook: Notebook,
) -> None:
    note, data_key = revised_note(notebook, "v1")
    notebook.save(note, data_keys=[data_key])
    rewrapped = data_key_for(note, "v1", key_id="kek-2")

    notebook.data_keys.replace_data_keys([rewrapped])

    assert notebook.data_keys.select_data_key(note.id, "v1") == rewrapped


def test_a_destroyed_data_key_cannot_be_replaced(notebook: Notebook) -> None:
    note, data_key = revised_note(notebook, "v1")
    notebook.save(note, data_keys=[data_key])
    note.shred("v1")
    notebook.save(note, destroyed_data_keys=[(note.id, "v1")])

    with pytest.raises(DataKeyNotFoundError):
        notebook.data_keys.replace_data_keys([data_key_for(note, "v1", key_id="kek-2")])

    assert notebook.data_keys.select_data_key(note.id, "v1") is None


def test_data_keys_outlive_the_process_on_durable_backends(persistent_backend: str) -> None:
    backend = persistent_backend
    writer = Notebook(env=environment_for_database(backend))
    note, data_key = revised_note(writer, "v1")
    writer.save(note, data_keys=[data_key])
    writer.close()

    reader = Notebook(env=environment_for_database(backend))
    try:
        assert reader.data_keys.select_data_key(note.id, "v1") == data_key
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("secret_id", "not-a-uuid", TypeError),
        ("version_id", "", ValueError),
        ("version_id", "x" * 65, ValueError),
        ("key_id", "", ValueError),
        ("key_id", 7, TypeError),
        ("wrapped_key", b"", ValueError),
        ("wrapped_key", b"x" * 4097, ValueError),
        ("wrapped_key", "text", TypeError),
    ],
)
def test_a_data_key_record_checks_its_fields(
    field: str, value: object, error: type[Exception]
) -> None:
    fields: dict[str, object] = {
        "secret_id": uuid4(),
        "version_id": "v1",
        "key_id": "kek-1",
        "wrapped_key": b"wrapped",
    }
    fields[field] = value
    with pytest.raises(error):
        DataKeyRecord(**fields)  # type: ignore[arg-type]


def test_a_data_key_record_keeps_the_wrapped_key_out_of_its_repr() -> None:
    record = DataKeyRecord(uuid4(), "v1", "kek-1", b"WRAPPED-MATERIAL")
    assert "WRAPPED" not in repr(record)


# --------------------------------------------------------------------------------------
# SQLite durability and erasure
# --------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_notebook(tmp_path: Path) -> Iterator[Notebook]:
    application = Notebook(env=environment_for_database(str(tmp_path / "ledger.sqlite")))
    try:
        yield application
    finally:
        application.close()


def test_every_sqlite_connection_is_durable_and_erases_deleted_content(
    sqlite_notebook: Notebook,
) -> None:
    pool = sqlite_notebook.factory.datastore.pool  # type: ignore[attr-defined]
    assert isinstance(pool, DurableSQLiteConnectionPool)
    connections = [pool.get_connection(), pool.get_connection()]
    try:
        for connection in connections:
            with connection.cursor() as cursor:
                assert cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                assert cursor.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
                assert cursor.execute("PRAGMA secure_delete").fetchone()[0] == 1
    finally:
        for connection in connections:
            pool.put_connection(connection)


def sqlite_file_bytes(database_path: Path) -> bytes:
    suffixes = ("", "-wal", "-shm")
    files = [database_path.with_name(database_path.name + suffix) for suffix in suffixes]
    return b"".join(path.read_bytes() for path in files if path.exists())


def shredded_note(database_path: Path) -> tuple[Notebook, Note, bytes]:
    """A note whose wrapped key (a unique marker) is in the files, about to be shredded."""
    notebook = Notebook(env=environment_for_database(str(database_path)))
    note = Note("to be shredded")
    note.revise("v1", b"ciphertext")
    marker = b"UNIQUE-WRAPPED-KEY-MARKER-" + os.urandom(8).hex().encode()
    notebook.save(note, data_keys=[DataKeyRecord(note.id, "v1", "kek-1", marker)])
    assert marker in sqlite_file_bytes(database_path)
    note.shred("v1")
    return notebook, note, marker


def test_a_destroyed_data_key_is_erased_from_the_sqlite_files_after_the_commit(
    tmp_path: Path,
) -> None:
    database_path = tmp_path / "ledger.sqlite"
    notebook, note, marker = shredded_note(database_path)
    try:
        notebook.save(note, destroyed_data_keys=[(note.id, "v1")])
        assert marker not in sqlite_file_bytes(database_path)
    finally:
        notebook.close()


def test_a_deferred_erasure_waits_for_the_close(tmp_path: Path) -> None:
    database_path = tmp_path / "ledger.sqlite"
    notebook, note, marker = shredded_note(database_path)
    notebook.save(note, destroyed_data_keys=[(note.id, "v1")], defer_erasure=True)
    assert notebook.data_keys.select_data_key(note.id, "v1") is None
    note.revise("v2", b"later")
    notebook.save(note)
    assert marker in sqlite_file_bytes(database_path), "old frames wait for a checkpoint"

    notebook.close()  # the last connection checkpoints and removes the WAL

    assert marker not in sqlite_file_bytes(database_path)


def test_a_deferred_erasure_is_made_by_the_first_commit_once_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delay_seconds = 0.05
    monkeypatch.setattr(storage, "ERASURE_DELAY_SECONDS_MAX", delay_seconds)
    database_path = tmp_path / "ledger.sqlite"
    notebook, note, marker = shredded_note(database_path)
    try:
        notebook.save(note, destroyed_data_keys=[(note.id, "v1")], defer_erasure=True)
        assert marker in sqlite_file_bytes(database_path)
        time.sleep(2 * delay_seconds)
        note.revise("v2", b"later")
        notebook.save(note)
        assert marker not in sqlite_file_bytes(database_path)
    finally:
        notebook.close()


def test_a_replaced_wrapped_key_is_erased_from_the_sqlite_files(tmp_path: Path) -> None:
    database_path = tmp_path / "ledger.sqlite"
    notebook = Notebook(env=environment_for_database(str(database_path)))
    note = Note("to be rewrapped")
    note.revise("v1", b"ciphertext")
    old_marker = b"OLD-WRAPPED-KEY-MARKER-" + os.urandom(8).hex().encode()
    notebook.save(note, data_keys=[DataKeyRecord(note.id, "v1", "kek-1", old_marker)])
    assert old_marker in sqlite_file_bytes(database_path)

    notebook.data_keys.replace_data_keys([DataKeyRecord(note.id, "v1", "kek-2", b"new wrapping")])
    notebook.close()

    assert old_marker not in sqlite_file_bytes(database_path)


# --------------------------------------------------------------------------------------
# PostgreSQL layout
# --------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_data_keys_and_evidence_live_next_to_the_events_of_the_application(
    postgres_database_url: str,
) -> None:
    import psycopg

    notebook = Notebook(env=environment_for_database(postgres_database_url))
    notebook.close()
    with psycopg.connect(postgres_database_url) as connection:
        rows = connection.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' ORDER BY table_name"
        ).fetchall()
    assert [row[0] for row in rows] == [
        "notebook_checkpoints",
        "notebook_data_keys",
        "notebook_event_hashes",
        "notebook_events",
        "notebook_merkle_nodes",
        "notebook_snapshots",
    ]


# --------------------------------------------------------------------------------------
# Choosing a backend from --db
# --------------------------------------------------------------------------------------


def test_memory_selects_the_in_memory_store() -> None:
    assert environment_for_database("memory:") == {
        "PERSISTENCE_MODULE": "ledger.storage:LedgerPOPOFactory",
        "SQLITE_LOCK_TIMEOUT": "10",
    }


def test_any_other_value_is_a_sqlite_file() -> None:
    assert environment_for_database("/var/lib/ledger.sqlite") == {
        "PERSISTENCE_MODULE": "ledger.storage:LedgerSQLiteFactory",
        "SQLITE_DBNAME": "/var/lib/ledger.sqlite",
        "SQLITE_LOCK_TIMEOUT": "10",
    }


def test_a_postgresql_url_selects_postgres_with_every_connection_setting() -> None:
    environment = environment_for_database("postgresql://ledger:s%40cr%3At@db.internal:6543/prod")

    assert environment == {
        "PERSISTENCE_MODULE": "ledger.storage_postgres:LedgerPostgresFactory",
        "POSTGRES_DBNAME": "prod",
        "POSTGRES_HOST": "db.internal",
        "POSTGRES_PORT": "6543",
        "POSTGRES_USER": "ledger",
        "POSTGRES_PASSWORD": "s@cr:t",
        "POSTGRES_SCHEMA": "public",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "SQLITE_LOCK_TIMEOUT": "10",
    }
    assert "POSTGRES_ENABLE_DB_FUNCTIONS" not in environment


def test_a_postgres_url_without_port_or_password_uses_the_defaults() -> None:
    environment = environment_for_database("postgres://postgres@127.0.0.1/postgres")

    assert environment["POSTGRES_PORT"] == "5432"
    assert environment["POSTGRES_PASSWORD"] == ""


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:hunter2@host:5432",
        "postgresql://user:hunter2@host:5432/",
        "postgresql://user:hunter2@host:5432/db/extra",
        "postgresql://:hunter2@host:5432/db",
        "postgresql://user:hunter2@:5432/db",
        "postgresql://user:hunter2@host:port/db",
        "postgresql://user:hunter2@host:70000/db",
        "postgresql://user:hunter2@host:0/db",
        "postgresql://user:hunter2@host/db?sslmode=require",
        "postgresql://user:hunter2@host/db#fragment",
    ],
)
def test_a_malformed_postgres_url_is_refused_without_revealing_the_password(url: str) -> None:
    with pytest.raises(ValueError, match="PostgreSQL URL") as raised:
        environment_for_database(url)
    assert "hunter2" not in str(raised.value)


def test_an_empty_database_value_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        environment_for_database(" ")


def test_the_storage_module_works_without_psycopg_installed() -> None:
    script = (
        "import sys; sys.modules['psycopg'] = None; sys.modules['psycopg_pool'] = None\n"
        "from ledger.storage import environment_for_database\n"
        "from eventsourcing.application import Application\n"
        "Application(env=environment_for_database('memory:')).close()\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
