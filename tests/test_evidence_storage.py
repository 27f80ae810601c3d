"""The storage side of the evidence log: the hash chain written at append, the
checkpoint and Merkle-node tables, data keys in batches, and private database files.

A tiny tally application stands in for the ledger, so that saves of one or several
aggregates, conflicts and concurrent writers are easy to arrange. Run as a script
(``python tests/test_evidence_storage.py DB WRITER COUNT``) it is one of the
concurrent writer processes.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import pkgutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final
from uuid import UUID, uuid4

import hypothesis
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    IntegrityError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    Transcoder,
)
from hypothesis import strategies

from ledger.merkle import GENESIS_CHAIN_HASH, chain_hash, leaf_bytes, leaf_hash
from ledger.storage import (
    CommitGroup,
    DataKeyNotFoundError,
    DataKeyRecord,
    DataKeyStore,
    EventHash,
    EvidenceLogError,
    EvidenceStore,
    MsgpackTranscoder,
    PendingSave,
    StoredCheckpoint,
    environment_for_database,
    make_sqlite_files_private,
)

WRITER_COUNT: Final = 3
SAVES_PER_WRITER: Final = 15
CHILD_TIMEOUT_SECONDS: Final = 120
LOCK_WAIT_OBSERVED_SECONDS: Final = 0.5
PAGE_SIZE: Final = 7  # small, so that reading the log takes several pages


class Tally(Aggregate):
    TOPIC = "tests/evidence/Tally"

    @event("Created", topic="tests/evidence/Tally.Created/v1")
    def __init__(self, label: str) -> None:
        self.label = label
        self.marks: list[bytes] = []

    @event("Marked", topic="tests/evidence/Tally.Marked/v1")
    def mark(self, payload: bytes) -> None:
        self.marks.append(payload)


class Tallies(Application[UUID]):
    name = "Tallies"

    def construct_transcoder(self) -> Transcoder:
        return MsgpackTranscoder()

    @property
    def evidence(self) -> EvidenceStore:
        assert isinstance(self.recorder, EvidenceStore)
        return self.recorder

    @property
    def data_keys(self) -> DataKeyStore:
        assert isinstance(self.recorder, DataKeyStore)
        return self.recorder


def open_tallies(database: str) -> Tallies:
    return Tallies(env=environment_for_database(database))


@pytest.fixture
def tallies(backend: str) -> Iterator[Tallies]:
    application = open_tallies(backend)
    try:
        yield application
    finally:
        application.close()


def started_tally(label: str, marks: int = 1) -> Tally:
    tally = Tally(label)
    for number in range(marks):
        tally.mark(f"{label}:{number}".encode())
    return tally


def all_event_hashes(store: EvidenceStore) -> list[EventHash]:
    hashes: list[EventHash] = []
    while page := store.select_event_hashes(len(hashes), PAGE_SIZE):
        hashes.extend(page)
    return hashes


def assert_chain_matches_the_log(application: Tallies) -> list[EventHash]:
    """Reads the log as a verifier does (events by notification id, hash rows by
    leaf index, a page at a time) and checks every row against a recomputation."""
    hashes = all_event_hashes(application.evidence)
    notifications: list[Any] = []
    while page := application.recorder.select_notifications(
        notifications[-1].id + 1 if notifications else 1, PAGE_SIZE
    ):
        notifications.extend(page)
    assert [h.leaf_index for h in hashes] == list(range(len(notifications))), "dense from 0"
    assert application.evidence.event_hash_count() == len(notifications)
    previous = GENESIS_CHAIN_HASH
    for index, (notification, stored) in enumerate(zip(notifications, hashes, strict=True)):
        assert stored.notification_id == notification.id, "leaf order is log order"
        leaf = leaf_bytes(
            notification_id=notification.id,
            originator_id=notification.originator_id,
            originator_version=notification.originator_version,
            topic=notification.topic,
            state=notification.state,
        )
        previous = chain_hash(previous, index, leaf)
        assert stored == EventHash(index, notification.id, leaf_hash(leaf), previous)
    return hashes


# --------------------------------------------------------------------------------------
# The chain at append
# --------------------------------------------------------------------------------------


def test_every_saved_event_gets_a_dense_hash_row_matching_its_stored_record(
    tallies: Tallies,
) -> None:
    assert tallies.evidence.event_hash_count() == 0
    assert tallies.evidence.select_event_hashes(0, 10) == []

    tallies.save(started_tally("one"))
    tallies.save(started_tally("two", marks=3), started_tally("three", marks=2))
    four = started_tally("four")
    tallies.save(four)
    tally: Tally = tallies.repository.get(four.id)
    tally.mark(b"\x00binary\xff")
    tallies.save(tally)

    hashes = assert_chain_matches_the_log(tallies)
    assert len(hashes) == 2 + 4 + 3 + 2 + 1
    assert tallies.evidence.select_event_hashes(5, 3) == hashes[5:8]
    assert tallies.evidence.select_event_hashes(len(hashes), 3) == []


def test_the_hash_row_of_an_event_is_found_by_its_notification_id(tallies: Tallies) -> None:
    assert tallies.evidence.select_event_hash(1) is None
    tallies.save(started_tally("one", marks=2))
    tallies.save(started_tally("two", marks=3), started_tally("three"))

    hashes = assert_chain_matches_the_log(tallies)
    for row in hashes:
        assert tallies.evidence.select_event_hash(row.notification_id) == row
    assert tallies.evidence.select_event_hash(hashes[-1].notification_id + 1) is None
    assert tallies.evidence.select_event_hash(0) is None


def test_a_conflicting_save_leaves_no_hash_row_and_no_gap(tallies: Tallies) -> None:
    tally = started_tally("contested")
    tallies.save(tally)
    first: Tally = tallies.repository.get(tally.id)
    second: Tally = tallies.repository.get(tally.id)
    first.mark(b"first")
    tallies.save(first)
    count_before = tallies.evidence.event_hash_count()

    second.mark(b"second")
    with pytest.raises(IntegrityError):
        tallies.save(started_tally("innocent bystander"), second)

    assert tallies.evidence.event_hash_count() == count_before
    tallies.save(started_tally("after the conflict"))
    assert_chain_matches_the_log(tallies)


def test_a_save_failing_after_its_hash_rows_leaves_none_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    application = open_tallies(str(tmp_path / "tallies.sqlite"))
    try:
        application.save(started_tally("before"))
        recorder: Any = application.recorder
        original = recorder._insert_event_hashes

        def insert_then_fail(*args: Any) -> None:
            original(*args)
            raise RuntimeError("injected failure before commit")

        monkeypatch.setattr(recorder, "_insert_event_hashes", insert_then_fail)
        with pytest.raises(RuntimeError, match="injected"):
            application.save(started_tally("doomed", marks=2))
        monkeypatch.undo()

        assert application.evidence.event_hash_count() == 2
        application.save(started_tally("after"))
        assert len(assert_chain_matches_the_log(application)) == 4
    finally:
        application.close()


@pytest.mark.postgres
def test_a_save_failing_after_its_hash_rows_leaves_nothing_on_postgres(
    postgres_database_url: str,
) -> None:
    """The append function's last write is the hash rows: a trigger failing there
    must take the events (and the recorder's idea of the log's end) back with it."""
    import psycopg

    application = open_tallies(postgres_database_url)
    try:
        application.save(started_tally("before"))
        with psycopg.connect(postgres_database_url, autocommit=True) as connection:
            connection.execute(
                "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'injected failure after the hash rows'; END $$"
            )
            connection.execute(
                "CREATE TRIGGER fail AFTER INSERT ON tallies_event_hashes "
                "FOR EACH STATEMENT EXECUTE FUNCTION fail()"
            )
        with pytest.raises(PersistenceError, match="injected"):
            application.save(started_tally("doomed", marks=2))
        with psycopg.connect(postgres_database_url, autocommit=True) as connection:
            connection.execute("DROP TRIGGER fail ON tallies_event_hashes")

        assert application.evidence.event_hash_count() == 2
        assert application.recorder.max_notification_id() == 2
        application.save(started_tally("after"))
        assert len(assert_chain_matches_the_log(application)) == 4
    finally:
        application.close()


def test_threads_sharing_a_store_keep_the_chain_dense_and_in_log_order(tallies: Tallies) -> None:
    barrier = threading.Barrier(WRITER_COUNT)
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            barrier.wait()
            for number in range(SAVES_PER_WRITER):
                tallies.save(started_tally(f"thread-{writer}-{number}", marks=number % 3))
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITER_COUNT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    expected = sum(1 + number % 3 for number in range(SAVES_PER_WRITER)) * WRITER_COUNT
    assert len(assert_chain_matches_the_log(tallies)) == expected


def test_processes_writing_one_database_keep_the_chain_dense_and_in_log_order(
    persistent_backend: str,
) -> None:
    open_tallies(persistent_backend).close()  # create the tables once
    children = [
        subprocess.Popen(
            [sys.executable, __file__, persistent_backend, str(writer), str(SAVES_PER_WRITER)],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        for writer in range(WRITER_COUNT)
    ]
    for child in children:
        assert child.wait(timeout=CHILD_TIMEOUT_SECONDS) == 0

    application = open_tallies(persistent_backend)
    try:
        expected = sum(1 + number % 3 for number in range(SAVES_PER_WRITER)) * WRITER_COUNT
        assert len(assert_chain_matches_the_log(application)) == expected
    finally:
        application.close()


# --------------------------------------------------------------------------------------
# Group commit (SQLite)
# --------------------------------------------------------------------------------------


def saved_in_one_group(
    application: Tallies,
    saves: list[tuple[Tally, ...]],
    save_kwargs: list[dict[str, Any]] | None = None,
) -> tuple[list[int], list[Any]]:
    """Holds a first save inside its commit until every one of ``saves`` (each one
    `save` call, in a thread of its own, with its ``save_kwargs``) waits for a
    commit: those then share the next one. Returns the number of saves each commit
    carried, and each save's outcome (its recordings, or the exception it raised)."""
    kwargs = save_kwargs or [{} for _ in saves]
    recorder: Any = application.recorder
    group = recorder.commit_group
    commit_saves = group._commit_saves
    sizes: list[int] = []
    leading, release = threading.Event(), threading.Event()

    def hold_the_first_commit(pending: list[Any]) -> None:
        sizes.append(len(pending))
        if len(sizes) == 1:
            leading.set()
            assert release.wait(CHILD_TIMEOUT_SECONDS)
        commit_saves(pending)

    group._commit_saves = hold_the_first_commit
    outcomes: list[Any] = [None] * len(saves)

    def save(index: int) -> None:
        try:
            outcomes[index] = application.save(*saves[index], **kwargs[index])
        except Exception as error:  # reported to the test
            outcomes[index] = error

    first = threading.Thread(target=application.save, args=(started_tally("first"),))
    first.start()
    assert leading.wait(CHILD_TIMEOUT_SECONDS)
    threads = [threading.Thread(target=save, args=(index,)) for index in range(len(saves))]
    for thread in threads:
        thread.start()
    while len(group._waiting) < len(saves):
        time.sleep(0.001)
    release.set()
    for thread in [first, *threads]:
        thread.join(CHILD_TIMEOUT_SECONDS)
    group._commit_saves = commit_saves
    return sizes, outcomes


def counted_hash_row_inserts(
    recorder: Any, monkeypatch: pytest.MonkeyPatch, errors: dict[int, Exception] | None = None
) -> list[int]:
    """Counts the recorder's hash-row inserts (the list returned grows by one each), and
    makes the n-th (from 1) raise ``errors[n]`` instead."""
    original = recorder._insert_event_hashes
    calls: list[int] = []
    failures = errors or {}

    def counted(c: Any, *args: Any) -> None:
        calls.append(len(calls))
        if len(calls) in failures:
            raise failures[len(calls)]
        original(c, *args)

    monkeypatch.setattr(recorder, "_insert_event_hashes", counted)
    return calls


def test_saves_waiting_during_a_commit_share_the_next_and_a_conflict_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two saves of the same tally from the same version meet in one group: the
    second's insert conflicts, its savepoint alone is rolled back, and the saves
    beside it commit with their hash rows, in that same transaction."""
    application = open_tallies(str(tmp_path / "tallies.sqlite"))
    try:
        contested = started_tally("contested")
        application.save(contested)
        hash_inserts = counted_hash_row_inserts(application.recorder, monkeypatch)
        copies: list[Tally] = [application.repository.get(contested.id) for _ in range(2)]
        for number, copy in enumerate(copies):
            copy.mark(f"copy {number}".encode())
        bystanders = [started_tally(f"bystander {number}", marks=2) for number in range(3)]

        sizes, outcomes = saved_in_one_group(
            application,
            [(bystanders[0],), (copies[0],), (bystanders[1],), (copies[1],), (bystanders[2],)],
        )

        assert sizes == [1, 5]
        assert len(hash_inserts) == 1 + 4, "the conflict fails at its events, nothing is redone"
        conflicts = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
        assert len(conflicts) == 1 and isinstance(conflicts[0], IntegrityError)
        for bystander in bystanders:
            assert application.repository.get(bystander.id).marks == bystander.marks
        stored: Tally = application.repository.get(contested.id)
        assert stored.version == contested.version + 1
        assert stored.marks[-1] in (b"copy 0", b"copy 1")
        assert len(assert_chain_matches_the_log(application)) == 2 + 2 + 1 + 3 * 3
    finally:
        application.close()


def test_a_group_whose_transaction_fails_is_committed_save_by_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure that is neither one save's conflict nor the database's (here a bug,
    at the second save's hash rows) takes the whole transaction back; each save is
    then tried in a transaction of its own, and those that can commit do."""
    application = open_tallies(str(tmp_path / "tallies.sqlite"))
    try:
        # The first save's hash rows, the group's first save's, then this one.
        calls = counted_hash_row_inserts(
            application.recorder, monkeypatch, {3: RuntimeError("injected bug")}
        )
        tallies = [started_tally(f"tally {number}", marks=number) for number in range(3)]

        sizes, outcomes = saved_in_one_group(application, [(tally,) for tally in tallies])

        assert sizes == [1, 3]
        assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)]
        assert len(calls) == 1 + 2 + 3, "two saves in the group, then three alone"
        for tally in tallies:
            assert application.repository.get(tally.id).marks == tally.marks
        assert len(assert_chain_matches_the_log(application)) == 2 + (1 + 2 + 3)
    finally:
        application.close()


def test_a_group_that_meets_a_database_failure_fails_whole_after_one_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A locked, full or failing database would fail each save again, each after its
    own wait: every save of the group gets the failure at once, and nothing of the
    group is written."""
    application = open_tallies(str(tmp_path / "tallies.sqlite"))
    try:
        calls = counted_hash_row_inserts(
            application.recorder, monkeypatch, {3: sqlite3.OperationalError("disk I/O error")}
        )
        tallies = [started_tally(f"tally {number}", marks=number) for number in range(3)]

        sizes, outcomes = saved_in_one_group(application, [(tally,) for tally in tallies])

        assert sizes == [1, 3]
        assert [type(outcome) for outcome in outcomes] == [OperationalError] * 3
        assert len({id(outcome) for outcome in outcomes}) == 3, "each save raises its own"
        assert len(calls) == 1 + 2, "no save is tried again"
        assert len(assert_chain_matches_the_log(application)) == 2
    finally:
        application.close()


def test_a_key_destroyed_in_a_group_is_out_of_the_files_when_its_save_returns(
    tmp_path: Path,
) -> None:
    """Crypto-shredding keeps its promise inside a group: the data key's row is
    deleted in the group's transaction and the WAL checkpointed before any save of
    the group returns, so its bytes are in none of the database files."""
    database = tmp_path / "tallies.sqlite"
    application = open_tallies(str(database))
    try:
        keyed = started_tally("keyed")
        wrapped = f"wrapped key {uuid4().hex}".encode()
        application.save(keyed, data_keys=[DataKeyRecord(keyed.id, "v1", "kek-1", wrapped)])
        assert wrapped in b"".join(
            path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("tallies")
        )
        keyed.mark(b"shredded")
        bystander = started_tally("bystander")

        sizes, outcomes = saved_in_one_group(
            application,
            [(keyed,), (bystander,)],
            [{"destroyed_data_keys": [(keyed.id, "v1")]}, {}],
        )

        assert sizes == [1, 2]
        assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)]
        assert application.data_keys.select_data_key(keyed.id, "v1") is None
        files = b"".join(
            path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("tallies")
        )
        assert wrapped not in files
        assert len(assert_chain_matches_the_log(application)) == 2 + 1 + 2 + 2
    finally:
        application.close()


def test_saves_tried_one_by_one_stop_waiting_at_a_database_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    application = open_tallies(str(tmp_path / "tallies.sqlite"))
    try:
        calls = counted_hash_row_inserts(
            application.recorder,
            monkeypatch,
            {3: RuntimeError("injected bug"), 5: sqlite3.OperationalError("database is locked")},
        )
        tallies = [started_tally(f"tally {number}") for number in range(3)]

        sizes, outcomes = saved_in_one_group(application, [(tally,) for tally in tallies])

        assert sizes == [1, 3]
        kinds = sorted(type(outcome).__name__ for outcome in outcomes)
        assert kinds == ["OperationalError", "OperationalError", "list"], "in any order"
        assert len(calls) == 1 + 2 + 2, "the group, then the first alone, then the failure"
        assert len(assert_chain_matches_the_log(application)) == 2 + 2
    finally:
        application.close()


GROUP_WRITERS: Final = 6
GROUP_SAVES_PER_WRITER: Final = 25
GROUP_TALLIES: Final = 3  # few, so that saves of one tally meet in a group


def test_threads_racing_on_few_tallies_commit_exactly_the_saves_that_returned(
    tmp_path: Path,
) -> None:
    """Writers mark a few shared tallies at once, each mark a save of its own; a
    commit is slowed so that saves pile up into groups. Every save that returned is
    in the log, every save that raised (a conflict) left nothing, and the chain
    matches the log."""
    application = open_tallies(str(tmp_path / "tallies.sqlite"))
    try:
        tallies = [started_tally(f"shared {number}", marks=0) for number in range(GROUP_TALLIES)]
        application.save(*tallies)
        recorder: Any = application.recorder
        group = recorder.commit_group
        commit_saves = group._commit_saves
        sizes: list[int] = []

        def slow_commit(saves: list[PendingSave]) -> None:
            sizes.append(len(saves))
            time.sleep(0.001)
            commit_saves(saves)

        group._commit_saves = slow_commit
        returned: list[bytes] = []
        conflicts: list[bytes] = []
        barrier = threading.Barrier(GROUP_WRITERS)

        def write(writer: int) -> None:
            barrier.wait()
            for number in range(GROUP_SAVES_PER_WRITER):
                mark = f"{writer}:{number}".encode()
                tally: Tally = application.repository.get(tallies[number % GROUP_TALLIES].id)
                tally.mark(mark)
                try:
                    application.save(tally)
                except IntegrityError:
                    conflicts.append(mark)
                else:
                    returned.append(mark)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(GROUP_WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(CHILD_TIMEOUT_SECONDS)

        assert len(returned) + len(conflicts) == GROUP_WRITERS * GROUP_SAVES_PER_WRITER
        assert max(sizes) > 1, "saves shared a commit"
        assert conflicts, "saves of one tally met"
        stored: list[Tally] = [application.repository.get(tally.id) for tally in tallies]
        logged = [mark for tally in stored for mark in tally.marks]
        assert sorted(logged) == sorted(returned)
        assert len(assert_chain_matches_the_log(application)) == GROUP_TALLIES + len(returned)
    finally:
        application.close()


class Interrupt(BaseException):
    """Stands for a KeyboardInterrupt or SystemExit in the thread that commits."""


def test_a_leader_interrupted_mid_commit_leaves_its_group_an_error_never_ids() -> None:
    leading, release = threading.Event(), threading.Event()
    groups: list[int] = []

    def commit_saves(saves: list[PendingSave]) -> None:
        groups.append(len(saves))
        if len(groups) == 1:
            leading.set()
            assert release.wait(CHILD_TIMEOUT_SECONDS)
            for save in saves:
                save.settle([len(groups)])
            return
        raise Interrupt  # before any outcome: the transaction did not commit

    group = CommitGroup(commit_saves)
    saves = [PendingSave((), {}) for _ in range(3)]
    outcomes: list[Any] = [None] * len(saves)

    def commit(index: int) -> None:
        try:
            outcomes[index] = group.commit(saves[index])
        except BaseException as error:  # reported to the test
            outcomes[index] = error

    threads = [threading.Thread(target=commit, args=(index,)) for index in range(3)]
    threads[0].start()
    assert leading.wait(CHILD_TIMEOUT_SECONDS)
    for thread in threads[1:]:
        thread.start()
    while len(group._waiting) < 2:
        time.sleep(0.001)
    release.set()
    for thread in threads:
        thread.join(CHILD_TIMEOUT_SECONDS)

    assert groups == [1, 2]
    assert outcomes[0] == [1]
    assert sorted(type(outcome).__name__ for outcome in outcomes[1:]) == [
        "Interrupt",
        "OperationalError",
    ]
    assert all(save.is_done for save in saves)
    assert [save.notification_ids for save in saves[1:]] == [None, None]


@pytest.mark.postgres
def test_postgres_hashes_the_same_leaves_as_the_verifier(postgres_database_url: str) -> None:
    """The append function builds each leaf in SQL (`<app>_leaf_bytes`); the verifier
    builds it with `ledger.merkle.leaf_bytes`. They must agree byte for byte, on
    the largest ids and versions, empty and non-ASCII topics, and any state."""
    application = open_tallies(postgres_database_url)
    recorder: Any = application.recorder

    @hypothesis.settings(max_examples=200, deadline=None)
    @hypothesis.given(
        notification_id=strategies.integers(min_value=0, max_value=2**63 - 1),
        originator_id=strategies.uuids(),
        originator_version=strategies.integers(min_value=0, max_value=2**63 - 1),
        topic=strategies.text(
            strategies.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")
        ),
        state=strategies.binary(max_size=300),
    )
    def agree(
        notification_id: int, originator_id: UUID, originator_version: int, topic: str, state: bytes
    ) -> None:
        fields = (notification_id, originator_id, originator_version, topic, state)
        with recorder.datastore.get_connection() as connection:
            row = connection.execute(recorder.leaf_bytes_statement, fields).fetchone()
        assert bytes(row["leaf"]) == leaf_bytes(
            notification_id=notification_id,
            originator_id=originator_id,
            originator_version=originator_version,
            topic=topic,
            state=state,
        )

    try:
        agree()
    finally:
        application.close()


@pytest.mark.postgres
def test_two_ledgers_taking_turns_on_postgres_each_append_after_the_other(
    postgres_database_url: str,
) -> None:
    """Each recorder remembers where it last saw the log end; after the other one
    appends, that is stale. The append function answers the end it found, and the
    batch is computed again for it: no save fails and the chain stays dense."""
    first = open_tallies(postgres_database_url)
    second = open_tallies(postgres_database_url)
    try:
        for turn in range(6):
            writer = (first, second)[turn % 2]
            writer.save(started_tally(f"turn-{turn}", marks=turn % 2))
        assert len(assert_chain_matches_the_log(first)) == 3 * 1 + 3 * 2
        assert first.recorder.max_notification_id() == 9
    finally:
        first.close()
        second.close()


def write_as_a_child_process(database: str, writer: int, count: int) -> None:
    application = open_tallies(database)
    try:
        for number in range(count):
            application.save(started_tally(f"process-{writer}-{number}", marks=number % 3))
    finally:
        application.close()


def test_a_save_after_the_newest_event_was_deleted_is_refused_on_sqlite(tmp_path: Path) -> None:
    """SQLite reuses the rowid of a deleted newest event: the next event would get
    the notification id that the chain's head already names."""
    database = tmp_path / "tallies.sqlite"
    application = open_tallies(str(database))
    try:
        application.save(started_tally("kept"))
        with sqlite3.connect(database) as connection:
            connection.execute("DELETE FROM stored_events WHERE rowid = 2")
        with pytest.raises(EvidenceLogError, match="verify"):
            application.save(started_tally("refused"))
        assert application.evidence.event_hash_count() == 2
        assert application.recorder.max_notification_id() == 1
    finally:
        application.close()


@pytest.mark.postgres
def test_a_save_that_would_not_extend_the_chain_is_refused_and_rolled_back_on_postgres(
    postgres_database_url: str,
) -> None:
    import psycopg

    application = open_tallies(postgres_database_url)
    try:
        application.save(started_tally("kept"))
        with psycopg.connect(postgres_database_url, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO tallies_event_hashes VALUES (2, 1000000, %s, %s)",
                (bytes(32), bytes(32)),
            )
        with pytest.raises(EvidenceLogError, match="verify"):
            application.save(started_tally("refused"))
        assert application.evidence.event_hash_count() == 3
        assert application.recorder.max_notification_id() == 2
    finally:
        application.close()


def test_a_stored_id_respelt_on_sqlite_is_reported_as_stored_not_as_the_same_uuid(
    tmp_path: Path,
) -> None:
    """Upper case spells the same UUID, but hides the event from its aggregate."""
    database = tmp_path / "tallies.sqlite"
    application = open_tallies(str(database))
    try:
        tally = started_tally("respelt")
        application.save(tally)
        with sqlite3.connect(database) as connection:
            connection.execute(
                "UPDATE stored_events SET originator_id = upper(originator_id) WHERE rowid = 2"
            )
        first, second = application.recorder.select_notifications(1, 10)
        assert first.originator_id == tally.id
        assert second.originator_id == tally.id.hex.upper()
    finally:
        application.close()


# --------------------------------------------------------------------------------------
# Checkpoints and Merkle nodes
# --------------------------------------------------------------------------------------


def test_checkpoints_round_trip_in_sequence_order_and_a_sequence_is_taken_once(
    tallies: Tallies,
) -> None:
    store = tallies.evidence
    assert store.select_checkpoints() == []
    assert store.select_latest_checkpoint() is None
    store.insert_checkpoint(1, 7, '{"tree_size": 7, "note": "\u2014 signed"}')
    store.insert_checkpoint(0, 3, '{"tree_size": 3}')

    with pytest.raises(IntegrityError):
        store.insert_checkpoint(1, 9, '{"tree_size": 9}')

    first, second = (
        StoredCheckpoint(0, 3, '{"tree_size": 3}'),
        StoredCheckpoint(1, 7, '{"tree_size": 7, "note": "\u2014 signed"}'),
    )
    assert store.select_checkpoints() == [first, second]
    assert store.select_checkpoints(start=1) == [second]
    assert store.select_checkpoints(start=2) == []
    assert store.select_latest_checkpoint() == second


def test_a_checkpoint_is_found_by_its_size_and_a_missing_size_by_its_neighbours(
    tallies: Tallies,
) -> None:
    store = tallies.evidence
    assert store.select_checkpoint_of_size(0) is None
    assert store.select_checkpoint_sizes_beside(5) == (None, None)
    for sequence, tree_size in enumerate([0, 4, 9, 4, 12]):  # a size signed again: C6
        store.insert_checkpoint(sequence, tree_size, f"line {sequence}")

    assert store.select_checkpoint_of_size(0) == StoredCheckpoint(0, 0, "line 0")
    assert store.select_checkpoint_of_size(4) == StoredCheckpoint(3, 4, "line 3")  # the latest
    assert store.select_checkpoint_of_size(12) == StoredCheckpoint(4, 12, "line 4")
    assert store.select_checkpoint_of_size(5) is None
    assert store.select_checkpoint_sizes_beside(5) == (4, 9)
    assert store.select_checkpoint_sizes_beside(4) == (0, 9)
    assert store.select_checkpoint_sizes_beside(0) == (None, 4)
    assert store.select_checkpoint_sizes_beside(2**63 - 1) == (12, None)


def node_hash(level: int, node_index: int) -> bytes:
    return hashlib.sha256(f"{level}/{node_index}".encode()).digest()


def test_merkle_nodes_round_trip_and_a_stored_node_keeps_its_hash(tallies: Tallies) -> None:
    store = tallies.evidence
    nodes = [(level, index, node_hash(level, index)) for level in (1, 2) for index in range(400)]
    store.insert_merkle_nodes(nodes)
    store.insert_merkle_nodes([(1, 0, bytes(32)), (3, 0, node_hash(3, 0))])
    store.insert_merkle_nodes([])

    wanted = [(level, index) for level, index, _ in nodes] + [(3, 0), (3, 1), (9, 9)]
    found = store.select_merkle_nodes(wanted)

    assert len(found) == len(nodes) + 1, "more keys than one SELECT takes, missing ones left out"
    assert found[(1, 0)] == node_hash(1, 0), "the first hash stored stays"
    assert found[(2, 399)] == node_hash(2, 399)
    assert found[(3, 0)] == node_hash(3, 0)
    assert store.select_merkle_nodes([]) == {}


# --------------------------------------------------------------------------------------
# Data keys in batches (re-wrapping under a new key-encryption key)
# --------------------------------------------------------------------------------------


def saved_data_keys(tallies: Tallies, count: int) -> list[DataKeyRecord]:
    records: list[DataKeyRecord] = []
    for number in range(count):
        tally = started_tally(f"keyed-{number}", marks=2)
        version_ids = [f"{number:02d}-{uuid4().hex}" for _ in range(2)]
        keys = [DataKeyRecord(tally.id, v, "kek-1", f"wrapped {v}".encode()) for v in version_ids]
        tallies.save(tally, data_keys=keys)
        records.extend(keys)
    return sorted(records, key=lambda record: (record.secret_id, record.version_id))


def test_data_keys_are_read_in_resumable_batches_in_key_order(tallies: Tallies) -> None:
    assert tallies.data_keys.data_key_count() == 0
    records = saved_data_keys(tallies, 5)
    batches: list[list[DataKeyRecord]] = []
    after: tuple[UUID, str] | None = None
    while batch := tallies.data_keys.select_data_keys(after, 3):
        batches.append(batch)
        after = (batch[-1].secret_id, batch[-1].version_id)

    assert [len(batch) for batch in batches] == [3, 3, 3, 1]
    assert [record for batch in batches for record in batch] == records
    assert tallies.data_keys.data_key_count() == len(records)
    first: Tally = tallies.repository.get(records[0].secret_id)
    first.mark(b"shredded")
    tallies.save(first, destroyed_data_keys=[(records[0].secret_id, records[0].version_id)])
    assert tallies.data_keys.data_key_count() == len(records) - 1
    with pytest.raises(ValueError, match="limit"):
        tallies.data_keys.select_data_keys(None, 0)


def rewrapped(record: DataKeyRecord) -> DataKeyRecord:
    return DataKeyRecord(record.secret_id, record.version_id, "kek-2", b"re" + record.wrapped_key)


def test_a_batch_of_data_keys_is_replaced_all_or_none(tallies: Tallies) -> None:
    records = saved_data_keys(tallies, 3)
    tallies.data_keys.replace_data_keys([rewrapped(record) for record in records[:4]])

    destroyed = records[5]
    tally: Tally = tallies.repository.get(destroyed.secret_id)
    tally.mark(b"shredded")
    tallies.save(tally, destroyed_data_keys=[(destroyed.secret_id, destroyed.version_id)])
    assert tallies.data_keys.select_data_key(destroyed.secret_id, destroyed.version_id) is None
    with pytest.raises(DataKeyNotFoundError):
        tallies.data_keys.replace_data_keys([rewrapped(records[4]), rewrapped(destroyed)])

    remaining = tallies.data_keys.select_data_keys(None, 100)
    assert remaining == [rewrapped(record) for record in records[:4]] + [records[4]]
    with pytest.raises(ValueError, match="distinct"):
        tallies.data_keys.replace_data_keys([records[4], records[4]])
    tallies.data_keys.replace_data_keys([])


# --------------------------------------------------------------------------------------
# Private database files
# --------------------------------------------------------------------------------------


def file_modes(database: Path) -> dict[str, int]:
    paths = [database, *(database.with_name(database.name + s) for s in ("-wal", "-shm"))]
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in paths if path.exists()}


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("permissive_umask")
def test_the_ledger_creates_its_sqlite_files_private(tmp_path: Path) -> None:
    database = tmp_path / "tallies.sqlite"
    application = open_tallies(str(database))
    try:
        application.save(started_tally("private"))
        modes = file_modes(database)
        assert set(modes) == {"tallies.sqlite", "tallies.sqlite-wal", "tallies.sqlite-shm"}
        assert set(modes.values()) == {0o600}
    finally:
        application.close()


@pytest.mark.usefixtures("permissive_umask")
def test_the_projection_views_create_the_sqlite_file_private(tmp_path: Path) -> None:
    from projections.store import open_view_store

    database = tmp_path / "views.sqlite"
    store = open_view_store(str(database))
    try:
        with store.write() as cursor:
            cursor.execute("CREATE TABLE projection_probe (x INTEGER)")
        modes = file_modes(database)
        assert "views.sqlite-wal" in modes
        assert set(modes.values()) == {0o600}
    finally:
        store.close()


def test_existing_sqlite_files_open_to_others_are_made_private(tmp_path: Path) -> None:
    database = tmp_path / "old.sqlite"
    sqlite3.connect(database).close()
    wal = database.with_name("old.sqlite-wal")
    wal.write_bytes(b"")
    for path in (database, wal):
        path.chmod(0o664)

    make_sqlite_files_private(str(database))

    assert file_modes(database) == {"old.sqlite": 0o600, "old.sqlite-wal": 0o600}


def test_a_database_in_a_missing_directory_is_left_for_sqlite_to_report(tmp_path: Path) -> None:
    database = tmp_path / "missing" / "ledger.sqlite"
    make_sqlite_files_private(str(database))
    assert not database.parent.exists()


# --------------------------------------------------------------------------------------
# PostgreSQL specifics
# --------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_refuses_the_database_functions_that_skip_the_chain(
    postgres_database_url: str,
) -> None:
    environment = {**environment_for_database(postgres_database_url)}
    environment["POSTGRES_ENABLE_DB_FUNCTIONS"] = "y"
    with pytest.raises(ProgrammingError, match="POSTGRES_ENABLE_DB_FUNCTIONS"):
        Tallies(env=environment)


@pytest.mark.postgres
def test_postgres_refuses_a_database_whose_transactions_are_not_read_committed(
    postgres_database_url: str,
) -> None:
    import psycopg

    database_name = postgres_database_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_database_url, autocommit=True) as connection:
        connection.execute(
            f'ALTER DATABASE "{database_name}" SET default_transaction_isolation = '
            "'repeatable read'"
        )
    try:
        with pytest.raises(ProgrammingError, match="read committed"):
            open_tallies(postgres_database_url)
    finally:
        with psycopg.connect(postgres_database_url, autocommit=True) as connection:
            connection.execute(
                f'ALTER DATABASE "{database_name}" RESET default_transaction_isolation'
            )


@pytest.mark.postgres
def test_postgres_appends_under_the_exclusive_table_lock(postgres_database_url: str) -> None:
    """Appends take ``LOCK TABLE <app>_events IN EXCLUSIVE MODE`` before reading the
    end of the log: while another transaction holds that lock a save waits, and
    readers do not."""
    import psycopg

    application = open_tallies(postgres_database_url)
    try:
        application.save(started_tally("before"))
        saved = threading.Event()
        with psycopg.connect(postgres_database_url) as holder:
            holder.execute("LOCK TABLE tallies_events IN EXCLUSIVE MODE")
            writer = threading.Thread(
                target=lambda: (application.save(started_tally("waits")), saved.set())
            )
            writer.start()
            assert not saved.wait(timeout=LOCK_WAIT_OBSERVED_SECONDS)
            assert application.recorder.max_notification_id() == 2, "reads go on"
            holder.commit()
        writer.join(timeout=CHILD_TIMEOUT_SECONDS)
        assert saved.is_set()
        assert len(assert_chain_matches_the_log(application)) == 4
    finally:
        application.close()


# --------------------------------------------------------------------------------------
# The library's hooks the chain relies on
# --------------------------------------------------------------------------------------


def library_hooks() -> dict[str, Callable[..., Any]]:
    """Every method of eventsourcing that the ledger overrides, replaces or relies on:
    its private hooks (`ledger.eventsourcing_hooks`), the ``save`` that `Secrets`
    replaces and the ``_notify`` it calls, and the table creation whose one
    transaction holds the PostgreSQL recorder's advisory lock."""
    from eventsourcing import application, popo, postgres, sqlite

    return {
        "application.Application.save": application.Application.save,
        "application.Application._notify": application.Application._notify,
        "sqlite.SQLiteConnectionPool._create_connection": (
            sqlite.SQLiteConnectionPool._create_connection
        ),
        "popo.POPOAggregateRecorder._assert_uniqueness": (
            popo.POPOAggregateRecorder._assert_uniqueness
        ),
        "postgres.PostgresRecorder.create_table": postgres.PostgresRecorder.create_table,
        "postgres.PostgresRecorder._create_table": postgres.PostgresRecorder._create_table,
        "sqlite.SQLiteTransaction.__enter__": sqlite.SQLiteTransaction.__enter__,
        "sqlite.SQLiteAggregateRecorder.insert_events": (
            sqlite.SQLiteAggregateRecorder.insert_events
        ),
        "sqlite.SQLiteApplicationRecorder._insert_events": (
            sqlite.SQLiteApplicationRecorder._insert_events
        ),
        "popo.POPOAggregateRecorder._insert_events": popo.POPOAggregateRecorder._insert_events,
        "popo.POPOAggregateRecorder._update_table": popo.POPOAggregateRecorder._update_table,
    }


# SHA-256 (first 16 hex digits) of the source of each hook in eventsourcing 9.5.6.
LIBRARY_HOOK_FINGERPRINTS: Final = {
    "application.Application.save": "4e9747d14b8fd046",
    "application.Application._notify": "6b32f9fc4b4cf455",
    "sqlite.SQLiteConnectionPool._create_connection": "4635cb356e9ae4ec",
    "popo.POPOAggregateRecorder._assert_uniqueness": "9044e5bdd6449649",
    "postgres.PostgresRecorder.create_table": "112d77b968e2da3c",
    "postgres.PostgresRecorder._create_table": "2a02b9fe6d23ddc9",
    "sqlite.SQLiteTransaction.__enter__": "f0629bdfee895c92",
    "sqlite.SQLiteAggregateRecorder.insert_events": "32f60619a2ca6e6a",
    "sqlite.SQLiteApplicationRecorder._insert_events": "413cdf219c7bae63",
    "popo.POPOAggregateRecorder._insert_events": "f778911e63d38a89",
    "popo.POPOAggregateRecorder._update_table": "5dd59375e55d37ba",
}


def test_the_private_library_methods_the_ledger_relies_on_are_unchanged() -> None:
    """The chain is written in overrides of eventsourcing's private hooks, where the
    write lock is held (see ``docs/evidence.md``, "Storage"). If this fails after an
    upgrade, re-check that each hook still runs inside the events' transaction and
    after the lock (SQLite: deferred BEGIN, event INSERTs first), then update the
    fingerprints. On PostgreSQL the ledger replaces ``insert_events`` as a whole
    (``<app>_append_events``) and relies on no private insert hook."""
    fingerprints = {
        name: hashlib.sha256(inspect.getsource(hook).encode()).hexdigest()[:16]
        for name, hook in library_hooks().items()
    }
    changed = sorted(
        name for name in fingerprints if fingerprints[name] != LIBRARY_HOOK_FINGERPRINTS[name]
    )
    assert changed == [], f"eventsourcing changed: {changed}"


def test_private_library_methods_are_overridden_in_one_module_and_fingerprinted() -> None:
    """An override of a private eventsourcing method outside `ledger.eventsourcing_hooks`,
    or one that the fingerprints above do not cover, would go unnoticed when the
    library changes it."""
    import ledger
    import projections

    overrides: dict[str, str] = {}  # "<module>.<Class>.<name>" -> library method
    for package in (ledger, projections):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name == "ledger.storage_postgres" and not importlib.util.find_spec("psycopg"):
                continue
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ != module.__name__:
                    continue
                for name in vars(cls):
                    if not name.startswith("_") or name.startswith("__") or name == "_abc_impl":
                        continue
                    base = next(
                        (
                            b
                            for b in cls.__mro__[1:]
                            if b.__module__.startswith("eventsourcing.") and name in vars(b)
                        ),
                        None,
                    )
                    if base is not None:
                        library = base.__module__.removeprefix("eventsourcing.")
                        overrides[f"{cls.__module__}.{cls.__name__}.{name}"] = (
                            f"{library}.{base.__name__}.{name}"
                        )
    assert overrides, "the hooks module overrides the library's insert hooks"
    elsewhere = sorted(
        name for name in overrides if not name.startswith("ledger.eventsourcing_hooks.")
    )
    assert elsewhere == []
    unpinned = sorted(set(overrides.values()) - set(LIBRARY_HOOK_FINGERPRINTS))
    assert unpinned == []


if __name__ == "__main__":
    write_as_a_child_process(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
