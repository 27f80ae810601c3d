"""Readers racing the lazy purge of a secret whose recovery window has passed.

Every reader that finds the window passed tries to append ``SecretDeleted``; one
wins, and every other must answer as AWS does after a deletion
(``ResourceNotFoundException``), never ``InternalServiceError`` for the conflict.
Threads share one ledger (as a server's workers do); processes each open their
own on the same database. Whatever the interleaving, each secret is purged once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from test_concurrency import (
    CHILD_TIMEOUT_SECONDS,
    PROCESS_START_DELAY_SECONDS,
    TESTS_DIRECTORY,
    logged_events,
    run_in_threads,
    wait_until,
)

from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.domain import Secret
from ledger.errors import SecretsManagerError

THREAD_COUNT = 4
PROCESS_COUNT = 3
ROUND_COUNT = 6
ROUND_SLOT_SECONDS = 0.15
WINDOW_PASSED_DAYS = 8  # scheduled with the 7-day minimum this long ago
READ_OPERATIONS = ("GetSecretValue", "DescribeSecret", "ListSecretVersionIds")


def secret_name(number: int) -> str:
    return f"purge/race-{number}"


@contextmanager
def clock_set_back(secrets: Secrets, days: int) -> Iterator[None]:
    real_clock = secrets.clock
    secrets.clock = lambda: real_clock() - timedelta(days=days)
    try:
        yield
    finally:
        secrets.clock = real_clock


def schedule_expired_secrets(secrets: Secrets) -> None:
    """``ROUND_COUNT`` secrets scheduled for deletion whose recovery window has passed."""
    api = SecretsManagerApi(secrets)
    with clock_set_back(secrets, WINDOW_PASSED_DAYS):
        for number in range(ROUND_COUNT):
            api.call(
                "CreateSecret",
                {
                    "Name": secret_name(number),
                    "ClientRequestToken": f"purge-race-token-{number:016d}",
                    "SecretString": "v",
                },
            )
            api.call("DeleteSecret", {"SecretId": secret_name(number), "RecoveryWindowInDays": 7})


def outcome_of_read(api: SecretsManagerApi, name: str, operation: str = "GetSecretValue") -> str:
    try:
        api.call(operation, {"SecretId": name})
    except SecretsManagerError as error:
        return error.code
    return "answered"


def operation_for(number: int, reader: int) -> str:
    """Readers use different read operations: each goes through the purge."""
    return READ_OPERATIONS[(number + reader) % len(READ_OPERATIONS)]


def check_purged_once(secrets: Secrets) -> None:
    deletions = [
        event
        for event in logged_events(secrets, Secret.Deleted.TOPIC)
        if event.originator_id in expired_secret_ids(secrets)
    ]
    assert len(deletions) == ROUND_COUNT, "each expired secret is purged exactly once"
    assert len({event.originator_id for event in deletions}) == ROUND_COUNT


def expired_secret_ids(secrets: Secrets) -> set[object]:
    return {
        event.originator_id
        for event in logged_events(secrets, Secret.Created.TOPIC)
        if event.name.startswith("purge/")
    }


def test_a_stale_reader_meets_a_purge_already_made(persistent_backend: str, tmp_path: Path) -> None:
    """Deterministic: the loser read the secret before the winner purged it."""
    keyring_path = tmp_path / "ledger.keyring"
    winner = Secrets(persistent_backend, keyring_path=keyring_path)
    loser = Secrets(persistent_backend, keyring_path=keyring_path)
    try:
        schedule_expired_secrets(winner)
        stale = loser.stored_secret(next(iter(expired_secret_ids(loser))))
        assert loser._is_past_recovery_window(stale)
        assert outcome_of_read(SecretsManagerApi(winner), stale.name) == "ResourceNotFoundException"
        assert loser._alive(stale) is None  # it conflicted, read again: deleted
        deletions = [
            event
            for event in logged_events(loser, Secret.Deleted.TOPIC)
            if event.originator_id == stale.id
        ]
        assert len(deletions) == 1
    finally:
        winner.close()
        loser.close()


def test_threads_reading_an_expired_secret_purge_it_once(backend: str, tmp_path: Path) -> None:
    secrets = Secrets(backend, keyring_path=tmp_path / "ledger.keyring")
    try:
        schedule_expired_secrets(secrets)
        api = SecretsManagerApi(secrets)

        def reader(index: int, barrier: threading.Barrier) -> list[str]:
            outcomes = []
            for number in range(ROUND_COUNT):
                barrier.wait()
                outcomes.append(
                    outcome_of_read(api, secret_name(number), operation_for(number, index))
                )
            return outcomes

        for outcomes in run_in_threads(THREAD_COUNT, reader):
            assert outcomes == ["ResourceNotFoundException"] * ROUND_COUNT
        check_purged_once(secrets)
    finally:
        secrets.close()


CHILD = """
from test_purge_race import child_main
child_main(sys.argv[1:])
"""


def child_main(arguments: list[str]) -> None:
    """A reader process: ``database keyring reader start_at``; at ``start_at`` it reads
    one expired secret per time slot and prints its outcomes as one JSON line."""
    database, keyring_path, reader, start_at = arguments
    secrets = Secrets(database, keyring_path=Path(keyring_path))
    try:
        api = SecretsManagerApi(secrets)
        outcomes = []
        for number in range(ROUND_COUNT):
            wait_until(float(start_at) + number * ROUND_SLOT_SECONDS)
            outcomes.append(
                outcome_of_read(api, secret_name(number), operation_for(number, int(reader)))
            )
        print(json.dumps(outcomes))
    finally:
        secrets.close()


def test_processes_reading_an_expired_secret_purge_it_once(
    persistent_backend: str, tmp_path: Path
) -> None:
    keyring_path = tmp_path / "ledger.keyring"
    secrets = Secrets(persistent_backend, keyring_path=keyring_path)
    try:
        schedule_expired_secrets(secrets)
    finally:
        secrets.close()
    start_at = time.time() + PROCESS_START_DELAY_SECONDS
    prelude = f"import sys; sys.path.insert(0, {str(TESTS_DIRECTORY)!r})"
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                prelude + CHILD,
                persistent_backend,
                str(keyring_path),
                str(index),
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(PROCESS_COUNT)
    ]
    for child in children:
        output, errors = child.communicate(timeout=CHILD_TIMEOUT_SECONDS)
        assert child.returncode == 0, errors
        assert json.loads(output) == ["ResourceNotFoundException"] * ROUND_COUNT
    secrets = Secrets(persistent_backend, keyring_path=keyring_path)
    try:
        check_purged_once(secrets)
    finally:
        secrets.close()
