"""A running read model keeps up with the log while several writers (separate
applications, as separate processes would be) append to it: PostgreSQL wakes it with
NOTIFY, SQLite and memory are polled."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest
from test_projections_support import Ledger, token

from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.storage import DatabaseKind, database_kind
from projections import start_in_background
from projections.log import Entry
from projections.runner import BackgroundRunner
from projections.store import ViewCursor

WRITERS = 3
PUTS_PER_WRITER = 15
CAUGHT_UP_TIMEOUT_SECONDS = 10.0
# Longer than the test may take: on PostgreSQL only a NOTIFY can wake the runner in time.
POLL_INTERVAL_SECONDS = 120.0


@pytest.fixture
def ledger(backend: str) -> Iterator[Ledger]:
    ledger = Ledger(backend)
    yield ledger
    ledger.close()


def test_a_running_read_model_keeps_up_with_several_writers(ledger: Ledger) -> None:
    database = ledger.database
    application = ledger.secrets if database == "memory:" else None
    poll_interval_seconds = (
        POLL_INTERVAL_SECONDS if database_kind(database) is DatabaseKind.POSTGRES else 0.02
    )
    running = start_in_background(
        database, application=application, poll_interval_seconds=poll_interval_seconds
    )
    try:
        for number in range(WRITERS):
            ledger.call(
                "CreateSecret",
                Name=f"app-{number}",
                ClientRequestToken=token(number),
                SecretString="v",
            )
        assert running.wait_until(
            ledger.secrets.recorder.max_notification_id() or 0, CAUGHT_UP_TIMEOUT_SECONDS
        )
        # Separate applications (as separate processes would be), except in memory; all
        # of them share the ledger's keyring, as the servers of one ledger do (KR3).
        writers = (
            [ledger.secrets] * WRITERS
            if application is not None
            else [Secrets(database, keyring=ledger.secrets.keyring) for _ in range(WRITERS)]
        )

        def write(writer_number: int) -> None:
            api = SecretsManagerApi(writers[writer_number])
            for number in range(PUTS_PER_WRITER):
                api.call(
                    "PutSecretValue",
                    {
                        "SecretId": f"app-{writer_number}",
                        "ClientRequestToken": token(1000 * (writer_number + 1) + number),
                        "SecretString": "v",
                    },
                )

        threads = [threading.Thread(target=write, args=(number,)) for number in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        last = ledger.secrets.recorder.max_notification_id() or 0

        assert running.wait_until(last, CAUGHT_UP_TIMEOUT_SECONDS)
        for number in range(WRITERS):
            moves = running.read_model.labels.history(f"app-{number}", label="AWSCURRENT")
            assert len(moves) == 1 + PUTS_PER_WRITER
            described = ledger.call("DescribeSecret", SecretId=f"app-{number}")
            current = running.read_model.labels.label_map(f"app-{number}")
            assert current.version_ids_to_stages() == described["VersionIdsToStages"]
        for writer in writers:
            if writer is not ledger.secrets:
                writer.close()
    finally:
        running.stop()


def test_a_failing_pass_is_retried_and_reported(ledger: Ledger) -> None:
    """A database error in the runner thread does not kill it: it backs off, keeps the
    error for whoever supervises it, and catches up once the database answers again."""
    runner = ledger.read_model.runner
    original = runner.catch_up
    failures = iter([RuntimeError("database restarting")])

    def flaky_catch_up(**arguments: object) -> int:
        for failure in failures:
            raise failure
        return original()

    runner.catch_up = flaky_catch_up  # type: ignore[method-assign]
    background = BackgroundRunner(runner, poll_interval_seconds=0.02).start()
    try:
        ledger.call("CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="v")
        assert background.wait_until(
            ledger.secrets.recorder.max_notification_id() or 0, CAUGHT_UP_TIMEOUT_SECONDS
        )
        assert isinstance(background.last_error, RuntimeError)
    finally:
        background.stop()


def test_a_failed_batch_leaves_no_trace_and_the_next_one_redoes_it(ledger: Ledger) -> None:
    """One projection failing rolls the whole batch back, position included, and the
    projections forget what they cached about rows that were never committed."""
    ledger.call("CreateSecret", Name="app/db", ClientRequestToken=token(1), SecretString="v")
    ledger.call("PutSecretValue", SecretId="app/db", ClientRequestToken=token(2), SecretString="w")
    model = ledger.read_model
    audit = model.runner.projection("audit")
    original = audit.process

    def failing_process(cursor: ViewCursor, entries: Sequence[Entry]) -> None:
        raise RuntimeError("disk full")

    audit.process = failing_process  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="disk full"):
        model.catch_up()
    assert set(model.runner.positions().values()) == {0}

    audit.process = original  # type: ignore[method-assign]
    model.catch_up()

    assert model.labels.label_map("app/db").labels == {
        "AWSCURRENT": token(2),
        "AWSPREVIOUS": token(1),
    }
    assert [record.event_name for record in model.audit.records()] == [
        "CreateSecret",
        "PutSecretValue",
    ]
