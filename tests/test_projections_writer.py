"""A rebuild whose SQL runs in a writer process gives exactly the rows of one that runs
in-process, and keeps the promises of the runner: a failed write is reported and
takes its whole transaction (and those sent after it) with it, a projection moved by
another runner is noticed, and a rebuild killed mid-stream resumes exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_projections_crash import labels_position, resume_with_follow
from test_projections_determinism import run_workload
from test_projections_support import Ledger, projection_rows, token

from ledger.storage import DatabaseKind, database_kind
from projections import ReadModel, start_in_background
from projections.runner import ProjectionRunner
from projections.store import ExpectationFailed
from projections.writer import WriterProcessError, WriterProcessStore

EXIT_WAIT_SECONDS = 30.0
POLL_SECONDS = 0.005
# Small pages and transactions: many transactions in flight at once.
PAGE_SIZE = 3
TRANSACTION_EVENTS_MAX = 7

REBUILD_COMMAND = (
    "import sys; from projections import ReadModel; "
    "model = ReadModel.open(sys.argv[1], page_size=1, transaction_events_max=1); "
    "model.rebuild()"
)


@pytest.fixture
def database(persistent_backend: str) -> str:
    """SQLite or PostgreSQL: an in-memory view store lives in the process that writes
    the ledger, so it has no writer process."""
    return persistent_backend


def written_ledger(database: str, rounds: int = 30) -> None:
    ledger = Ledger(database)
    try:
        run_workload(ledger, rounds=rounds)
    finally:
        ledger.close()


def test_a_rebuild_through_the_writer_process_gives_the_rows_of_an_in_process_one(
    database: str,
) -> None:
    written_ledger(database)
    with ReadModel.open(
        database, page_size=PAGE_SIZE, transaction_events_max=TRANSACTION_EVENTS_MAX
    ) as model:
        in_process_position = model.rebuild(writer_process=False)
        in_process_rows = projection_rows(model.store)
        position = model.rebuild(writer_process=True)
        assert position == in_process_position > 100
        assert projection_rows(model.store) == in_process_rows


def test_a_failed_write_is_reported_and_takes_its_transaction_and_later_ones(
    database: str,
) -> None:
    with WriterProcessStore(database) as store:
        with store.write() as cursor:
            cursor.execute("CREATE TABLE projection_writer_test (key BIGINT PRIMARY KEY)")
            cursor.executemany("INSERT INTO projection_writer_test VALUES (?)", [(1,), (2,)])
        with store.write() as cursor:
            cursor.execute("INSERT INTO projection_writer_test VALUES (?)", (3,))
            cursor.execute("INSERT INTO projection_writer_test VALUES (?)", (1,))  # duplicate
        with store.write() as cursor:  # sent after the failure: dropped
            cursor.execute("INSERT INTO projection_writer_test VALUES (?)", (4,))
        with pytest.raises(WriterProcessError, match=r"(?i)unique|duplicate"):
            store.settle()

        with store.write() as cursor:  # the store goes on after reporting
            cursor.execute("INSERT INTO projection_writer_test VALUES (?)", (5,))
        with store.read() as cursor:
            rows = cursor.execute("SELECT key FROM projection_writer_test ORDER BY key").fetchall()
        assert rows == [(1,), (2,), (5,)]
        with store.write() as cursor:
            cursor.execute("DROP TABLE projection_writer_test")


def test_a_read_inside_a_transaction_sees_the_writes_sent_before_it(database: str) -> None:
    with WriterProcessStore(database) as store:
        failed = pytest.raises(ExpectationFailed, match=r"found \[\(8,\)\]")
        with failed, store.write() as cursor:
            cursor.execute("CREATE TABLE projection_writer_test (key BIGINT PRIMARY KEY)")
            cursor.executemany("INSERT INTO projection_writer_test VALUES (?)", [(7,), (8,)])
            count = cursor.execute("SELECT count(*) FROM projection_writer_test").fetchone()
            assert count == (2,)
            cursor.expect("SELECT max(key) FROM projection_writer_test", (), [(9,)])
            cursor.fetchall()
        with store.read() as cursor:
            kind = store.relation_kind(cursor, "projection_writer_test")
        assert kind is None, "the failed expectation rolled the transaction back"


def test_a_projection_moved_by_another_runner_is_noticed_and_caught_up(database: str) -> None:
    ledger = Ledger(database)
    try:
        run_workload(ledger, rounds=6)
        with ReadModel.open(database, page_size=PAGE_SIZE) as model:
            model.runner.prepare()
            with WriterProcessStore(database) as store:
                pipelined = ProjectionRunner(
                    model.log, store, model.runner.projections, page_size=PAGE_SIZE
                )
                pipelined.catch_up()
                run_workload_more(ledger, first_token=10_000)
                model.catch_up()  # another runner moves every projection on
                run_workload_more(ledger, first_token=20_000)
                reached = pipelined.catch_up()
            assert reached == model.log.last_position()
            followed_rows = projection_rows(model.store)
            model.rebuild(writer_process=False)
            assert projection_rows(model.store) == followed_rows
    finally:
        ledger.close()


def test_a_rebuild_beside_a_runner_following_the_log_gives_exact_rows(database: str) -> None:
    """``replay`` while ``serve`` follows the log: the follower picks up the reset
    projections too; whenever one of its commits fails the rebuild's expectations
    (the test above makes that happen for sure), the rebuild goes on from the
    stored positions, until both are done."""
    written_ledger(database, rounds=60)
    options: dict[str, Any] = {
        "page_size": PAGE_SIZE,
        "transaction_events_max": TRANSACTION_EVENTS_MAX,
    }
    running = start_in_background(database, poll_interval_seconds=0.001, **options)
    try:
        with ReadModel.open(database, **options) as model:
            position = model.rebuild()
            assert position == model.log.last_position()
            assert running.wait_until(position, EXIT_WAIT_SECONDS)
            rebuilt_beside_rows = projection_rows(model.store)
    finally:
        running.stop()
    with ReadModel.open(database) as model:
        model.rebuild(writer_process=False)
        assert projection_rows(model.store) == rebuilt_beside_rows


def run_workload_more(ledger: Ledger, first_token: int) -> None:
    for number in range(5):
        ledger.tick()
        ledger.call(
            "PutSecretValue",
            SecretId="team-2/db",
            ClientRequestToken=token(first_token + number),
            SecretString="v",
        )


def test_the_writer_process_ending_is_reported(database: str) -> None:
    with WriterProcessStore(database) as store:
        os.kill(store.pid, signal.SIGKILL)
        ended = pytest.raises(WriterProcessError, match="ended")
        with ended, store.write() as cursor:
            cursor.execute("SELECT 1").fetchone()


def test_a_database_the_writer_cannot_open_is_reported(database: str) -> None:
    if database_kind(database) is DatabaseKind.POSTGRES:
        unopenable = database.rsplit("/", 1)[0] + "/no_such_database"
    else:
        unopenable = str(Path(database).parent / "no-such-directory" / "ledger.db")
    # SQLite fails when the writer starts; PostgreSQL connects at the first transaction.
    failed = pytest.raises(WriterProcessError, match="OperationalError")
    with failed, WriterProcessStore(unopenable) as store, store.write() as cursor:
        cursor.execute("SELECT 1").fetchone()


def test_a_killed_writer_fails_the_rebuild_which_then_resumes_exactly(database: str) -> None:
    with rebuild_under_way(database) as under_way:
        os.kill(under_way.writer_pid, signal.SIGKILL)
        _, errors = under_way.process.communicate(timeout=EXIT_WAIT_SECONDS)
        assert under_way.process.returncode != 0
        assert b"WriterProcessError" in errors and b"ended" in errors
        killed_at = labels_position(under_way.model)
        assert 0 < killed_at < under_way.last_position, "killed mid-stream"

        resume_with_follow(database)
        assert projection_rows(under_way.model.store) == under_way.expected_rows


def test_a_killed_rebuild_leaves_no_writer_behind_and_resumes_exactly(database: str) -> None:
    """The writer still applies the whole transactions already sent, rolls back the
    one left open, and exits at the end of the pipe."""
    with rebuild_under_way(database) as under_way:
        under_way.process.send_signal(signal.SIGKILL)
        under_way.process.wait()
        wait_until(lambda: has_exited(under_way.writer_pid))

        resume_with_follow(database)
        assert projection_rows(under_way.model.store) == under_way.expected_rows


@dataclass(frozen=True)
class RebuildUnderWay:
    model: ReadModel
    process: subprocess.Popen[bytes]
    writer_pid: int
    expected_rows: dict[str, list[tuple[Any, ...]]]
    last_position: int


@contextmanager
def rebuild_under_way(database: str) -> Iterator[RebuildUnderWay]:
    """A written ledger, its rows from an in-process rebuild, and a ``ReadModel``
    rebuild in a subprocess (one entry per transaction) that has committed part of
    the first half of the log."""
    written_ledger(database, rounds=150)
    with ReadModel.open(database) as model:
        model.rebuild(writer_process=False)
        expected_rows = projection_rows(model.store)
        last_position = model.log.last_position()
        process = subprocess.Popen(
            [sys.executable, "-c", REBUILD_COMMAND, database],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            writer_pid = wait_for_writer(process.pid)
            wait_until(lambda: 0 < labels_position(model) < last_position // 2)
            yield RebuildUnderWay(model, process, writer_pid, expected_rows, last_position)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()


def wait_for_writer(pid: int) -> int:
    """The id of the writer process started by process ``pid`` (Linux; other
    children, such as ``ldconfig`` run by ctypes to find libpq, are passed over)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found: list[int] = []

    def started() -> bool:
        for child in children.read_text().split():
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue  # ended meanwhile
            if b"projections.writer" in command:
                found.append(int(child))
        return bool(found)

    wait_until(started)
    return found[0]


def has_exited(pid: int) -> bool:
    """Gone, or a zombie nobody reaped (its parent was killed)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_until(condition: object) -> None:
    assert callable(condition)
    deadline = time.monotonic() + EXIT_WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(POLL_SECONDS)
