"""A projection process killed mid-stream resumes exactly where its last commit left it.

The runner runs as a real subprocess (``secretledger follow``) in tiny pages, is sent
SIGKILL while it is half-way through the log, and is restarted; its rows must equal
those of an uninterrupted rebuild: nothing applied twice, nothing skipped. On
PostgreSQL, logs written before appends took the ids after the newest one have gaps
in their notification ids (failed inserts consumed ids of a sequence), so paging
must never assume contiguous positions: the test opens such gaps.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_projections_support import Ledger, projection_rows, token

from ledger.storage import DatabaseKind, database_kind
from projections import ReadModel
from projections.labels import LABELS_PROJECTION_NAME

RUNNER_COMMAND = "import sys; from ledger.cli import main; sys.exit(main())"
KILL_DEADLINE_SECONDS = 120.0
RESUME_TIMEOUT_SECONDS = 300.0
POLL_SECONDS = 0.002
SECRETS_COUNT = 10
PUTS_COUNT = 500
GAPS_COUNT = 25

pytestmark = pytest.mark.slow


def write_log(ledger: Ledger) -> list[str]:
    arns = [
        ledger.call(
            "CreateSecret", Name=f"app-{number}", ClientRequestToken=token(number), SecretString="v"
        )["ARN"]
        for number in range(SECRETS_COUNT)
    ]
    for number in range(PUTS_COUNT):
        ledger.tick(0.5)
        name = f"app-{number % SECRETS_COUNT}"
        ledger.call(
            "PutSecretValue",
            SecretId=name,
            ClientRequestToken=token(1000 + number),
            SecretString="v",
        )
        if number % 10 == 0:
            ledger.attempt("GetSecretValue", SecretId=name)
    return arns


def open_id_gaps(database: str) -> None:
    """Moves the newest ``GAPS_COUNT`` events (and their hash rows) up by
    ``GAPS_COUNT`` ids, as failed inserts left holes in logs written by older code.
    (The chain's leaves name the old ids; this test does not verify the chain.)"""
    import psycopg

    with psycopg.connect(database) as connection:
        connection.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
        for table in ("ledger_events", "ledger_event_hashes"):
            connection.execute(
                f"UPDATE {table} SET notification_id = notification_id + %s "
                "WHERE notification_id > (SELECT max(notification_id) FROM ledger_events) - %s",
                (GAPS_COUNT, GAPS_COUNT),
            )


def start_runner(database: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            RUNNER_COMMAND,
            "follow",
            "--once",
            "--page-size",
            "2",
            "--db",
            database,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def labels_position(model: ReadModel) -> int:
    try:
        return model.runner.positions()[LABELS_PROJECTION_NAME]
    except Exception:  # the runner may not have created its tables yet
        return 0


def kill_half_way(database: str, model: ReadModel, last_position: int) -> int:
    runner = start_runner(database)
    deadline = time.monotonic() + KILL_DEADLINE_SECONDS
    try:
        while time.monotonic() < deadline:
            position = labels_position(model)
            if position >= last_position // 3:
                runner.send_signal(signal.SIGKILL)
                runner.wait()
                return labels_position(model)
            assert runner.poll() is None, runner.stderr.read() if runner.stderr else ""
            time.sleep(POLL_SECONDS)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    raise AssertionError("the runner never got a third of the way")


def resume_with_follow(database: str) -> None:
    """``secretledger follow --once`` in a subprocess, which must succeed."""
    resumed = subprocess.run(
        [sys.executable, "-c", RUNNER_COMMAND, "follow", "--once", "--db", database],
        capture_output=True,
        timeout=RESUME_TIMEOUT_SECONDS,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr.decode()


def test_a_killed_runner_resumes_without_duplicates_or_gaps(
    persistent_backend: str, tmp_path: Path
) -> None:
    backend = persistent_backend  # an in-memory log cannot be read by another process
    ledger = Ledger(backend)
    try:
        write_log(ledger)
        if database_kind(backend) is DatabaseKind.POSTGRES:
            open_id_gaps(backend)
            ledger.call(
                "PutSecretValue",
                SecretId="app-0",
                ClientRequestToken=token(99_999),
                SecretString="after the gaps",
            )
        last_position = ledger.secrets.recorder.max_notification_id() or 0
    finally:
        ledger.close()
    model = ReadModel.open(backend)
    try:
        if database_kind(backend) is DatabaseKind.POSTGRES:
            with model.store.read() as cursor:
                (count,) = cursor.execute("SELECT count(*) FROM ledger_events").fetchone() or (0,)
            assert last_position - count >= GAPS_COUNT, "the log has gaps in its ids"

        killed_at = kill_half_way(backend, model, last_position)
        assert 0 < killed_at < last_position, "killed mid-stream"
        resume_with_follow(backend)
        assert set(model.runner.positions().values()) == {last_position}
        resumed_rows = projection_rows(model.store)

        model.rebuild()
        assert projection_rows(model.store) == resumed_rows
    finally:
        model.close()
