"""Concurrent writers never lose an acknowledged version and never break a label rule.

Threads (sharing one ledger, as a server's workers do) and processes (each with its
own ledger on the same database) write to one secret at once:

* with distinct tokens: every acknowledged VersionId is there afterwards, the log
  holds exactly one ``VersionCreated`` per put, and the labels show that the puts
  were applied one after another (AWSCURRENT on the last one written, AWSPREVIOUS
  on the one before: no update was lost or applied over a stale state);
* with the same token and value: every writer gets the same VersionId; one
  creates the version, the others replay it (their calls are audited as no-ops);
* creating the same name: exactly one writer wins, the others get
  ResourceExistsException.

The ledger retries an optimistic-concurrency conflict a bounded number of times
and then answers InternalServiceError; writers here retry that, with the same
token, as an AWS SDK retries a 500 (at most ``CLIENT_ATTEMPTS_MAX`` times).

Threads run on every backend; processes on SQLite and on PostgreSQL (when
``SECRETLEDGER_TEST_POSTGRES_URL`` is set).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.domain import secret_id_for_arn
from ledger.errors import SecretsManagerError

TESTS_DIRECTORY = Path(__file__).resolve().parent
SECRET_NAME = "shared/secret"
THREAD_COUNT = 4
PROCESS_COUNT = 3
PUTS_PER_WRITER = 20
RACE_ROUNDS = 8
CLIENT_ATTEMPTS_MAX = 10
BARRIER_TIMEOUT_SECONDS = 30
CHILD_TIMEOUT_SECONDS = 120
PROCESS_START_DELAY_SECONDS = 2.0  # time for every child to import and open the ledger
OWN_PUTS_SECONDS = 1.5  # then the writers race, slot by slot, once all are done
RACE_SLOT_SECONDS = 0.1
EVENTS_SCANNED_MAX = 100_000


def token_for(writer: str, index: int) -> str:
    return f"{writer}-{index:08d}".rjust(36, "0")


def value_for(token: str) -> str:
    return f"value written with {token}"


def call_with_retries(api: SecretsManagerApi, operation: str, request: dict[str, Any]) -> Any:
    """An SDK's retry of InternalServiceError (HTTP 500), with the same request."""
    for attempt in range(1, CLIENT_ATTEMPTS_MAX + 1):
        try:
            return api.call(operation, request)
        except SecretsManagerError as error:
            if error.code != "InternalServiceError" or attempt == CLIENT_ATTEMPTS_MAX:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def put(api: SecretsManagerApi, token: str) -> str:
    request = {
        "SecretId": SECRET_NAME,
        "ClientRequestToken": token,
        "SecretString": value_for(token),
    }
    version_id: str = call_with_retries(api, "PutSecretValue", request)["VersionId"]
    return version_id


def open_ledger(database: str, keyring_path: Path) -> Secrets:
    return Secrets(database, keyring_path=keyring_path)


def create_shared_secret(database: str, keyring_path: Path) -> str:
    """The secret every writer puts to, created before any writer starts; returns the
    token of its first version."""
    secrets = open_ledger(database, keyring_path)
    try:
        return create_shared_secret_in(secrets)
    finally:
        secrets.close()


def create_shared_secret_in(secrets: Secrets) -> str:
    token = token_for("first", 0)
    SecretsManagerApi(secrets).call(
        "CreateSecret",
        {"Name": SECRET_NAME, "ClientRequestToken": token, "SecretString": value_for(token)},
    )
    return token


# What the log must show afterwards


def logged_events(secrets: Secrets, topic: str, secret_name: str | None = None) -> list[Any]:
    """The events of a topic in log order; only one secret's if ``secret_name`` is given."""
    notifications = secrets.recorder.select_notifications(
        start=None, limit=EVENTS_SCANNED_MAX, topics=[topic]
    )
    assert len(notifications) < EVENTS_SCANNED_MAX, "every event was read"
    if secret_name is not None:
        api = SecretsManagerApi(secrets, record_calls=False)
        arn = api.call("DescribeSecret", {"SecretId": secret_name})["ARN"]
        notifications = [
            notification
            for notification in notifications
            if notification.originator_id == secret_id_for_arn(arn)
        ]
    return [secrets.mapper.to_domain_event(notification) for notification in notifications]


def versions_created(secrets: Secrets) -> list[str]:
    """The shared secret's version ids in the order the log holds them."""
    events = logged_events(secrets, "secretledger/VersionCreated", SECRET_NAME)
    return [event.version_id for event in events]


def check_no_update_was_lost(secrets: Secrets, acknowledged: Sequence[str]) -> None:
    """Every acknowledged version is there once, with its value; the labels are what
    putting the versions one after another in log order gives."""
    api = SecretsManagerApi(secrets, record_calls=False)
    created = versions_created(secrets)
    assert sorted(created) == sorted(set(created)), "one VersionCreated per version"
    assert set(acknowledged) <= set(created), "an acknowledged version is missing"
    listing = api.call("ListSecretVersionIds", {"SecretId": SECRET_NAME, "IncludeDeprecated": True})
    listed = [version["VersionId"] for version in listing["Versions"]]
    assert listed == list(reversed(created)), "every logged version is listed, newest first"
    holders = {
        label: version["VersionId"]
        for version in listing["Versions"]
        for label in version.get("VersionStages", [])
    }
    assert holders == {"AWSCURRENT": created[-1], "AWSPREVIOUS": created[-2]}
    for version_id in created:
        answer = api.call("GetSecretValue", {"SecretId": SECRET_NAME, "VersionId": version_id})
        assert answer["SecretString"] == value_for(version_id)
    moves = [
        (event.label, event.from_version_id, event.to_version_id)
        for event in logged_events(secrets, "secretledger/LabelMoved", SECRET_NAME)
        if event.label == "AWSCURRENT"
    ]
    expected_moves = [("AWSCURRENT", None, created[0])] + [
        ("AWSCURRENT", older, newer) for older, newer in itertools.pairwise(created)
    ]
    assert moves == expected_moves, "each put moved AWSCURRENT from the version before it"


def check_replays(secrets: Secrets, tokens: Sequence[str], writer_count: int) -> None:
    """Each raced token made one version, and every other writer's call was an
    audited, successful no-op (a replay)."""
    created = versions_created(secrets)
    replays = [
        event.resources[0]["version_id"]
        for event in logged_events(secrets, "secretledger/ApiCallRecorded")
        if event.request["operation"] == "PutSecretValue" and event.error_code is None
    ]
    for token in tokens:
        assert created.count(token) == 1, token
        assert replays.count(token) == writer_count - 1, token


# Threads


def run_in_threads(count: int, work: Callable[[int, threading.Barrier], Any]) -> list[Any]:
    barrier = threading.Barrier(count, timeout=BARRIER_TIMEOUT_SECONDS)
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(work, index, barrier) for index in range(count)]
        return [future.result() for future in futures]


def test_threads_putting_distinct_tokens_lose_no_version(backend: str, tmp_path: Path) -> None:
    keyring_path = tmp_path / "ledger.keyring"
    secrets = open_ledger(backend, keyring_path)
    try:
        first = create_shared_secret_in(secrets)
        api = SecretsManagerApi(secrets)

        def writer(index: int, barrier: threading.Barrier) -> list[str]:
            barrier.wait()
            return [
                put(api, token_for(f"thread{index}", number)) for number in range(PUTS_PER_WRITER)
            ]

        acknowledged = [first] + [
            version_id
            for versions in run_in_threads(THREAD_COUNT, writer)
            for version_id in versions
        ]
        assert len(set(acknowledged)) == 1 + THREAD_COUNT * PUTS_PER_WRITER
        check_no_update_was_lost(secrets, acknowledged)
    finally:
        secrets.close()


def test_threads_racing_one_token_all_get_its_version(backend: str, tmp_path: Path) -> None:
    secrets = open_ledger(backend, tmp_path / "ledger.keyring")
    try:
        create_shared_secret_in(secrets)
        api = SecretsManagerApi(secrets)
        tokens = [token_for("raced", number) for number in range(RACE_ROUNDS)]

        def writer(index: int, barrier: threading.Barrier) -> list[str]:
            answers = []
            for token in tokens:
                barrier.wait()
                answers.append(put(api, token))
            return answers

        for answers in run_in_threads(THREAD_COUNT, writer):
            assert answers == tokens
        check_replays(secrets, tokens, THREAD_COUNT)
    finally:
        secrets.close()


def test_threads_racing_to_create_one_name_leave_one_winner(backend: str, tmp_path: Path) -> None:
    secrets = open_ledger(backend, tmp_path / "ledger.keyring")
    try:
        api = SecretsManagerApi(secrets)

        def creator(index: int, barrier: threading.Barrier) -> list[str]:
            outcomes = []
            for number in range(RACE_ROUNDS):
                barrier.wait()
                outcomes.append(
                    create_or_report(api, f"race/name-{number}", f"creator{index}", number)
                )
            return outcomes

        results = run_in_threads(THREAD_COUNT, creator)
        for number in range(RACE_ROUNDS):
            outcomes = sorted(result[number] for result in results)
            assert outcomes == ["created"] + ["exists"] * (THREAD_COUNT - 1), outcomes
        check_one_secret_per_name(secrets)
    finally:
        secrets.close()


def create_or_report(api: SecretsManagerApi, name: str, writer: str, number: int) -> str:
    """ "created", or "exists" for ResourceExistsException with AWS's text."""
    token = token_for(writer, number)
    request = {"Name": name, "ClientRequestToken": token, "SecretString": value_for(token)}
    try:
        call_with_retries(api, "CreateSecret", request)
    except SecretsManagerError as error:
        assert error.code == "ResourceExistsException", error
        assert error.message == f"The operation failed because the secret {name} already exists."
        return "exists"
    return "created"


def check_one_secret_per_name(secrets: Secrets) -> None:
    """One SecretCreated per name, and the live secret holds the winner's value."""
    api = SecretsManagerApi(secrets, record_calls=False)
    created = logged_events(secrets, "secretledger/SecretCreated")
    names = [event.name for event in created if event.name.startswith("race/")]
    assert sorted(names) == sorted(set(names)) and len(names) == RACE_ROUNDS
    for name in names:
        answer = api.call("GetSecretValue", {"SecretId": name})
        assert answer["SecretString"] == value_for(answer["VersionId"])


# Processes

CHILD = """
from test_concurrency import child_main
child_main(sys.argv[1:])
"""


def child_main(arguments: list[str]) -> None:
    """Entry point of a writer process: ``database keyring writer start_at``. At
    ``start_at`` (wall clock) it puts its own tokens, then races the shared tokens
    and the shared names in time slots, printing one JSON line of what it saw."""
    database, keyring_path, writer, start_at = arguments
    secrets = open_ledger(database, Path(keyring_path))
    try:
        api = SecretsManagerApi(secrets)
        wait_until(float(start_at))
        own = [put(api, token_for(writer, number)) for number in range(PUTS_PER_WRITER)]
        raced = []
        created = []
        race_start = float(start_at) + OWN_PUTS_SECONDS
        for number in range(RACE_ROUNDS):
            wait_until(race_start + 2 * number * RACE_SLOT_SECONDS)
            raced.append(put(api, token_for("raced", number)))
            wait_until(race_start + (2 * number + 1) * RACE_SLOT_SECONDS)
            created.append(create_or_report(api, f"race/name-{number}", writer, number))
        print(json.dumps({"own": own, "raced": raced, "created": created}))
    finally:
        secrets.close()


def wait_until(moment: float) -> None:
    delay_seconds = moment - time.time()
    if delay_seconds > 0:
        time.sleep(delay_seconds)


def test_processes_writing_at_once_lose_nothing(persistent_backend: str, tmp_path: Path) -> None:
    keyring_path = tmp_path / "ledger.keyring"
    first = create_shared_secret(persistent_backend, keyring_path)
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
                f"process{index}",
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(PROCESS_COUNT)
    ]
    reports = []
    for child in children:
        output, errors = child.communicate(timeout=CHILD_TIMEOUT_SECONDS)
        assert child.returncode == 0, errors
        reports.append(json.loads(output))
    raced_tokens = [token_for("raced", number) for number in range(RACE_ROUNDS)]
    for report in reports:
        assert report["raced"] == raced_tokens
    for number in range(RACE_ROUNDS):
        outcomes = sorted(report["created"][number] for report in reports)
        assert outcomes == ["created"] + ["exists"] * (PROCESS_COUNT - 1), outcomes
    secrets = open_ledger(persistent_backend, keyring_path)
    try:
        acknowledged = [first] + [token for report in reports for token in report["own"]]
        check_no_update_was_lost(secrets, acknowledged + raced_tokens)
        check_replays(secrets, raced_tokens, PROCESS_COUNT)
        check_one_secret_per_name(secrets)
    finally:
        secrets.close()
