"""What is written stays written, reads back the same, and never reads back wrong.

* A SQLite ledger reopened in a new process shows the same secrets: metadata,
  versions, labels and values.
* Reading with the wrong key fails loudly with DecryptionFailure, never with
  garbage: another keyring file, a keyring whose key-encryption key was replaced
  under the same id, a lost keyring file, a destroyed data key.
* A writer killed with SIGKILL in the middle of a stream of puts leaves no partial
  version: every version in the log has its data key and decrypts, the label
  invariants hold, and every put the writer acknowledged (printed after the call
  returned) is there.
* A save that fails inside the database transaction (an error injected after the
  events and the data key were written, before the commit) leaves nothing behind,
  and the same token can be used again afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError

from ledger.api import SecretsManagerApi, to_wire
from ledger.application import Secrets
from ledger.crypto import KeyringError
from ledger.domain import secret_id_for_arn
from ledger.errors import SecretsManagerError
from ledger.eventsourcing_hooks import InsertedEvents

TESTS_DIRECTORY = Path(__file__).resolve().parent
CHILD_TIMEOUT_SECONDS = 60
CRASH_ROUNDS = 3
CRASH_SECRET_COUNT = 3
CRASH_PUTS_MAX = 300  # per round; the child is killed long before, see test
ACKNOWLEDGED_PUTS_BEFORE_KILL = (12, 25, 40)
EVENTS_SCANNED_MAX = 100_000
VERSION_CREATED_TOPIC = "secretledger/VersionCreated"


def token_for(prefix: str, index: int) -> str:
    """A 36-character token, as an SDK's UUID4 would be."""
    return f"{prefix}-{index:08d}".rjust(36, "0")


def value_for(token: str) -> dict[str, Any]:
    """The value a test writes with a token: binary for every third token."""
    if int(token[-8:]) % 3 == 2:
        return {"SecretBinary": f"binary value of {token}".encode()}
    return {"SecretString": f"string value of {token}"}


def ledger_state(api: SecretsManagerApi, secret_ids: Sequence[str]) -> Any:
    """Everything a client can see of some secrets, as JSON-compatible data."""
    state = {}
    listing = {"IncludeDeprecated": True}
    for secret_id in secret_ids:
        values = {}
        if "DeletedDate" not in api.call("DescribeSecret", {"SecretId": secret_id}):
            for version in api.call("ListSecretVersionIds", {"SecretId": secret_id, **listing})[
                "Versions"
            ]:
                request = {"SecretId": secret_id, "VersionId": version["VersionId"]}
                values[version["VersionId"]] = api.call("GetSecretValue", request)
        # Described and listed after the reads, which set LastAccessedDate (LA-2).
        description = api.call("DescribeSecret", {"SecretId": secret_id})
        versions = api.call("ListSecretVersionIds", {"SecretId": secret_id, **listing})["Versions"]
        state[secret_id] = {"describe": description, "versions": versions, "values": values}
    return json.loads(json.dumps(to_wire(state), sort_keys=True))


def print_state(database: str, secret_ids: Sequence[str]) -> None:
    """Entry point of the child process that reopens a ledger."""
    secrets = Secrets(database)
    try:
        print(json.dumps(ledger_state(SecretsManagerApi(secrets, record_calls=False), secret_ids)))
    finally:
        secrets.close()


def run_python(code: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    prelude = f"import sys; sys.path.insert(0, {str(TESTS_DIRECTORY)!r}); "
    return subprocess.run(
        [sys.executable, "-c", prelude + code, *arguments],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
        check=False,
    )


def build_a_ledger(api: SecretsManagerApi) -> list[str]:
    """Secrets with a history: text and binary values, custom labels, a rotation,
    a rollback, a description, one secret scheduled for deletion."""
    api.call(
        "CreateSecret",
        {
            "Name": "prod/db",
            "ClientRequestToken": token_for("db", 0),
            **value_for(token_for("db", 0)),
        },
    )
    for index in (1, 2):
        token = token_for("db", index)
        api.call(
            "PutSecretValue",
            {"SecretId": "prod/db", "ClientRequestToken": token, **value_for(token)},
        )
    pending = token_for("db", 3)
    api.call(
        "PutSecretValue",
        {
            "SecretId": "prod/db",
            "ClientRequestToken": pending,
            "VersionStages": ["AWSPENDING", "blue"],
            **value_for(pending),
        },
    )
    current = api.call("DescribeSecret", {"SecretId": "prod/db"})["VersionIdsToStages"]
    holder = next(version for version, labels in current.items() if "AWSCURRENT" in labels)
    api.call(
        "UpdateSecretVersionStage",
        {
            "SecretId": "prod/db",
            "VersionStage": "AWSCURRENT",
            "MoveToVersionId": pending,
            "RemoveFromVersionId": holder,
        },
    )
    api.call("UpdateSecret", {"SecretId": "prod/db", "Description": "orders database"})
    api.call("CreateSecret", {"Name": "prod/empty"})
    api.call(
        "CreateSecret",
        {
            "Name": "old/key",
            "ClientRequestToken": token_for("old", 2),
            **value_for(token_for("old", 2)),
        },
    )
    api.call("DeleteSecret", {"SecretId": "old/key", "RecoveryWindowInDays": 7})
    return ["prod/db", "prod/empty", "old/key"]


@pytest.fixture
def closed_ledger(tmp_path: Path) -> Iterator[tuple[str, Any, list[str]]]:
    """A SQLite ledger written and closed: (database path, its visible state, secret ids)."""
    database = str(tmp_path / "ledger.sqlite")
    secrets = Secrets(database)
    try:
        api = SecretsManagerApi(secrets, record_calls=False)
        secret_ids = build_a_ledger(api)
        state = ledger_state(api, secret_ids)
    finally:
        secrets.close()
    yield database, state, secret_ids


# Reopening


def test_a_new_process_sees_the_same_secrets(closed_ledger: tuple[str, Any, list[str]]) -> None:
    database, state, secret_ids = closed_ledger
    child = run_python(
        "from test_durability import print_state; print_state(sys.argv[1], sys.argv[2:])",
        database,
        *secret_ids,
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == state
    assert state["prod/db"]["values"], "the comparison includes values"


# Wrong or missing keys


def reopened(database: str, keyring_path: Path | None = None) -> Secrets:
    return Secrets(database, keyring_path=keyring_path)


def described(secrets: Secrets, secret_id: str) -> Any:
    answer = SecretsManagerApi(secrets, record_calls=False).call(
        "DescribeSecret", {"SecretId": secret_id}
    )
    return json.loads(json.dumps(to_wire(answer), sort_keys=True))


def check_reads_fail(secrets: Secrets, state: Any, secret_id: str) -> None:
    """Metadata still reads; every value read fails with DecryptionFailure."""
    assert described(secrets, secret_id) == state[secret_id]["describe"]
    api = SecretsManagerApi(secrets)
    assert state[secret_id]["values"], "there are values to try"
    for version_id in state[secret_id]["values"]:
        with pytest.raises(SecretsManagerError) as caught:
            api.call("GetSecretValue", {"SecretId": secret_id, "VersionId": version_id})
        assert caught.value.code == "DecryptionFailure", caught.value
    with pytest.raises(SecretsManagerError) as caught:
        api.call("GetSecretValue", {"SecretId": secret_id})
    assert caught.value.code == "DecryptionFailure", caught.value


def test_a_missing_keyring_is_never_created_for_a_ledger_that_holds_events(
    closed_ledger: tuple[str, Any, list[str]], tmp_path: Path
) -> None:
    """KR2: a new keyring could open none of the stored values, so opening refuses and
    names the file it expected; nothing is created."""
    database, _, _ = closed_ledger
    stray = tmp_path / "another.keyring"
    with pytest.raises(KeyringError, match=f"keyring {stray} does not exist"):
        reopened(database, keyring_path=stray)
    assert not stray.exists()


def test_a_replaced_key_encryption_key_is_refused_at_open(
    closed_ledger: tuple[str, Any, list[str]],
) -> None:
    """KR3: same key id, other key bytes: no stored data key unwraps, so opening refuses
    instead of failing every read with DecryptionFailure."""
    database, _, _ = closed_ledger
    keyring_path = Path(database + ".keyring")
    content = json.loads(keyring_path.read_text())
    active = content["active_key_id"]
    content["key_encryption_keys"][active] = base64.b64encode(os.urandom(32)).decode("ascii")
    keyring_path.write_text(json.dumps(content))
    with pytest.raises(KeyringError, match="opens none of the"):
        reopened(database)


def test_another_ledgers_keyring_is_refused_at_open(
    closed_ledger: tuple[str, Any, list[str]], tmp_path: Path
) -> None:
    """KR3: an existing keyring of another ledger opens nothing stored here."""
    database, _, _ = closed_ledger
    other = Secrets(str(tmp_path / "other.db"))
    other.close()
    with pytest.raises(KeyringError, match=f"keyring {tmp_path / 'other.db.keyring'} opens none"):
        reopened(database, keyring_path=tmp_path / "other.db.keyring")


def test_a_lost_keyring_file_is_refused_not_replaced(
    closed_ledger: tuple[str, Any, list[str]],
) -> None:
    """KR2: the default keyring beside the database is gone: opening refuses, naming it."""
    database, _, _ = closed_ledger
    keyring_path = Path(database + ".keyring")
    keyring_path.unlink()
    with pytest.raises(KeyringError, match="already holds events"):
        reopened(database)
    assert not keyring_path.exists()


def test_a_destroyed_version_fails_for_that_version_only(
    closed_ledger: tuple[str, Any, list[str]],
) -> None:
    """Shredded by destroy-version in one process, gone for the next one."""
    database, state, _ = closed_ledger
    versions = state["prod/db"]["values"]
    current = state["prod/db"]["describe"]["VersionIdsToStages"]
    shredded = next(
        version_id for version_id in versions if "AWSCURRENT" not in current.get(version_id, [])
    )
    kept = [version_id for version_id in versions if version_id != shredded]
    secrets = reopened(database)
    try:
        SecretsManagerApi(secrets).call(
            "DestroySecretVersion", {"SecretId": "prod/db", "VersionId": shredded}
        )
    finally:
        secrets.close()
    secrets = reopened(database)
    try:
        api = SecretsManagerApi(secrets)
        with pytest.raises(SecretsManagerError) as caught:
            api.call("GetSecretValue", {"SecretId": "prod/db", "VersionId": shredded})
        assert caught.value.code == "ResourceNotFoundException"
        for version_id in kept:
            answer = api.call("GetSecretValue", {"SecretId": "prod/db", "VersionId": version_id})
            assert json.loads(json.dumps(to_wire(answer), sort_keys=True)) == versions[version_id]
    finally:
        secrets.close()


# A writer killed mid-put

CRASH_CHILD = """
from test_durability import put_until_killed
put_until_killed(sys.argv[1], sys.argv[2])
"""


def put_until_killed(database: str, round_name: str) -> None:
    """Entry point of the writer: puts round-robin to the crash secrets, printing each
    acknowledged (name, token) after the call returned. Every put moves labels:
    AWSCURRENT and AWSPREVIOUS, or AWSPENDING (see `is_pending`)."""
    secrets = Secrets(database)
    api = SecretsManagerApi(secrets)
    for index in range(CRASH_PUTS_MAX):
        name = f"crash/{index % CRASH_SECRET_COUNT}"
        token = token_for(round_name, index)
        request: dict[str, Any] = {
            "SecretId": name,
            "ClientRequestToken": token,
            **value_for(token),
        }
        if is_pending(token):
            request["VersionStages"] = ["AWSPENDING"]
        api.call("PutSecretValue", request)
        print(name, token, flush=True)


def read_acknowledgements_then_kill(
    child: subprocess.Popen[bytes], acknowledged_before_kill: int
) -> list[tuple[str, str]]:
    """Reads lines until enough puts are acknowledged, kills the child with SIGKILL,
    then keeps every complete line it had printed."""
    assert child.stdout is not None
    output = b""
    deadline = time.monotonic() + CHILD_TIMEOUT_SECONDS
    while output.count(b"\n") < acknowledged_before_kill:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the writer acknowledged too few puts in time"
        readable, _, _ = select.select([child.stdout], [], [], remaining)
        if readable:
            chunk = os.read(child.stdout.fileno(), 65_536)
            if not chunk:
                error_output = child.stderr.read().decode() if child.stderr else ""
                pytest.fail(f"the writer stopped early: {error_output}")
            output += chunk
    child.send_signal(signal.SIGKILL)
    output += child.stdout.read()
    assert child.wait(timeout=CHILD_TIMEOUT_SECONDS) == -signal.SIGKILL
    complete_lines = output.split(b"\n")[:-1]
    return [tuple(line.decode().split(" ")) for line in complete_lines]  # type: ignore[misc]


def check_after_crash(database: str, acknowledged: list[tuple[str, str]]) -> set[str]:
    """No partial version, the invariants, and every acknowledged put; returns the
    version ids present."""
    secrets = Secrets(database)
    try:
        notifications = secrets.recorder.select_notifications(
            start=None, limit=EVENTS_SCANNED_MAX, topics=[VERSION_CREATED_TOPIC]
        )
        for notification in notifications:
            event: Any = secrets.mapper.to_domain_event(notification)
            assert isinstance(notification.originator_id, UUID)
            key = secrets.data_keys.select_data_key(notification.originator_id, event.version_id)
            assert key is not None, f"version {event.version_id} has no data key"
        api = SecretsManagerApi(secrets, record_calls=False)
        present: set[str] = set()
        for index in range(CRASH_SECRET_COUNT):
            name = f"crash/{index}"
            versions = api.call(
                "ListSecretVersionIds", {"SecretId": name, "IncludeDeprecated": True}
            )
            check_labels(versions["Versions"])
            for version in versions["Versions"]:
                token = version["VersionId"]
                answer = api.call("GetSecretValue", {"SecretId": name, "VersionId": token})
                assert {k: answer[k] for k in value_for(token)} == value_for(token)
                present.add(token)
        assert len(notifications) == len(present), "every logged version is listed"
        missing = {token for _, token in acknowledged} - present
        assert not missing, f"acknowledged puts lost: {sorted(missing)}"
        return present
    finally:
        secrets.close()


def is_pending(token: str) -> bool:
    """Every fourth put of a round names AWSPENDING; the others are default puts."""
    return not token.lstrip("0").startswith("first") and int(token[-8:]) % 4 == 3


def write_order(token: str) -> tuple[int, int]:
    """Creates first, then rounds in order, each in the order the writer put them."""
    prefix = token.lstrip("0").split("-")[0]
    round_index = -1 if prefix == "first" else int(prefix.removeprefix("round"))
    return round_index, int(token[-8:])


def expected_holders(tokens: Iterable[str]) -> dict[str, str]:
    """Label -> version after these puts in write order (P1, P3, P4, P5)."""
    holders: dict[str, str] = {}
    for token in sorted(tokens, key=write_order):
        if is_pending(token):
            holders["AWSPENDING"] = token
            continue
        if "AWSCURRENT" in holders:
            holders["AWSPREVIOUS"] = holders["AWSCURRENT"]
        holders["AWSCURRENT"] = token
    return holders


def check_labels(versions: list[dict[str, Any]]) -> None:
    """Each label on one version, and where the puts in write order put it."""
    holders: dict[str, str] = {}
    for version in versions:
        for label in version.get("VersionStages", []):
            assert label not in holders, f"{label} on two versions"
            holders[label] = version["VersionId"]
    assert holders == expected_holders(version["VersionId"] for version in versions)


def test_a_writer_killed_mid_put_leaves_no_partial_version(tmp_path: Path) -> None:
    database = str(tmp_path / "ledger.sqlite")
    secrets = Secrets(database)
    try:
        api = SecretsManagerApi(secrets)
        for index in range(CRASH_SECRET_COUNT):
            token = token_for("first", index)
            api.call(
                "CreateSecret",
                {"Name": f"crash/{index}", "ClientRequestToken": token, **value_for(token)},
            )
    finally:
        secrets.close()
    acknowledged: list[tuple[str, str]] = []
    for round_index, kill_after in enumerate(ACKNOWLEDGED_PUTS_BEFORE_KILL):
        prelude = f"import sys; sys.path.insert(0, {str(TESTS_DIRECTORY)!r})"
        child = subprocess.Popen(
            [sys.executable, "-c", prelude + CRASH_CHILD, database, f"round{round_index}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            acknowledged += read_acknowledgements_then_kill(child, kill_after)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=CHILD_TIMEOUT_SECONDS)
        present = check_after_crash(database, acknowledged)
        assert any(f"round{round_index}-" in token for token in present), "the round wrote"
    assert len(acknowledged) >= sum(ACKNOWLEDGED_PUTS_BEFORE_KILL)


# A save that fails before its commit


def fail_inside_the_transaction(
    secrets: Secrets, backend: str, error: Exception
) -> Callable[[], None]:
    """Makes every save that creates a version raise ``error`` after the recorder has
    inserted its events and data keys and before the transaction commits (other
    saves, such as the audit record of the failed call, go through). Returns undo.

    SQLite: the recorder's insert hook raises ``error`` itself. PostgreSQL, where a
    save is one call of the append function: a trigger on the data-key table (only
    saves that create a version insert keys) raises a server error of the same kind.
    """
    if backend.startswith("postgresql://"):
        return fail_inside_the_append_function(backend, error)
    recorder: Any = secrets.recorder
    original = recorder.insert_evidence

    def insert_then_fail(cursor: Any, inserted: InsertedEvents) -> None:
        original(cursor, inserted)
        if any(stored.topic == VERSION_CREATED_TOPIC for stored in inserted.stored_events):
            raise error

    recorder.insert_evidence = insert_then_fail

    def undo() -> None:
        del recorder.insert_evidence

    return undo


def fail_inside_the_append_function(url: str, error: Exception) -> Callable[[], None]:
    import psycopg

    state = "unique_violation" if isinstance(error, IntegrityError) else "raise_exception"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "CREATE FUNCTION injected_failure() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{error}' USING ERRCODE = '{state}'; END $$"
        )
        connection.execute(
            "CREATE TRIGGER injected_failure AFTER INSERT ON ledger_data_keys "
            "FOR EACH ROW EXECUTE FUNCTION injected_failure()"
        )

    def undo() -> None:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("DROP TRIGGER injected_failure ON ledger_data_keys")

    return undo


@pytest.mark.parametrize(
    "injected",
    [IntegrityError("injected conflict"), RuntimeError("injected failure")],
    ids=["integrity-error", "runtime-error"],
)
def test_a_save_that_fails_before_commit_leaves_nothing(
    persistent_backend: str, tmp_path: Path, injected: Exception
) -> None:
    backend = persistent_backend
    secrets = Secrets(backend, keyring_path=tmp_path / "ledger.keyring")
    try:
        api = SecretsManagerApi(secrets)
        first = token_for("first", 0)
        created = api.call(
            "CreateSecret", {"Name": "app/db", "ClientRequestToken": first, **value_for(first)}
        )
        before = ledger_state(SecretsManagerApi(secrets, record_calls=False), ["app/db"])
        log_length = secrets.recorder.max_notification_id() or 0
        token = token_for("doomed", 1)
        undo = fail_inside_the_transaction(secrets, backend, injected)
        with pytest.raises(SecretsManagerError) as caught:
            api.call(
                "PutSecretValue",
                {"SecretId": "app/db", "ClientRequestToken": token, **value_for(token)},
            )
        undo()
        assert caught.value.code == "InternalServiceError"
        assert secrets.recorder.max_notification_id() == log_length + 1, "only the audit record"
        assert secrets.data_keys.select_data_key(secret_id_for_arn(created["ARN"]), token) is None
        assert ledger_state(SecretsManagerApi(secrets, record_calls=False), ["app/db"]) == before
        answer = api.call(
            "PutSecretValue",
            {"SecretId": "app/db", "ClientRequestToken": token, **value_for(token)},
        )
        assert answer["VersionStages"] == ["AWSCURRENT"], "the token was never used"
    finally:
        secrets.close()
    reopened_ledger = Secrets(backend, keyring_path=tmp_path / "ledger.keyring")
    try:
        state = ledger_state(SecretsManagerApi(reopened_ledger, record_calls=False), ["app/db"])
        assert sorted(state["app/db"]["values"]) == sorted([first, token])
    finally:
        reopened_ledger.close()


@pytest.mark.postgres
def test_a_postgresql_ledger_needs_an_explicit_keyring(
    postgres_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KR1: no keyring is made relative to whatever directory a server starts in."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyringError, match="needs an explicit keyring"):
        Secrets(postgres_database_url)
    assert list(tmp_path.iterdir()) == []
    secrets = Secrets(postgres_database_url, keyring_path=tmp_path / "shared.keyring")
    secrets.close()
