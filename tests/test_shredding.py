"""Crypto-shredding: a destroyed version's value cannot be recovered from the store.

Four ways destroy a version's wrapped data key, each in the transaction of the
events that say so: ``DestroySecretVersion`` (the CLI's ``destroy-version``), a
forced delete, the purge after the recovery window, and retention removing an old
deprecated version. After each, on SQLite and PostgreSQL:

(a) the attacker's recipe fails: the version's ciphertext from its stored event,
    plus whatever the data-key table holds, plus the keyring, opens nothing (and the
    same recipe opened the value before, so the check can fail);
(b) the wrapped key's bytes are in none of the SQLite files (db, -wal, -shm); on
    PostgreSQL the row is gone (VACUUM caveat: docs/decisions.md);
(c) the stored events are untouched: the rows before are the first rows after;
(d) the hash chain covers every event, the shredding save's included, and walks intact;
(e) the process's cache of data keys read (`ledger.storage.DataKeyCache`) no longer
    holds the key, though it held it just before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ledger_helpers import AWSCURRENT, AWSPREVIOUS, Harness, open_harness, token

import ledger.storage
from ledger.application import Secrets
from ledger.cli import main
from ledger.crypto import DecryptionError, Envelope
from ledger.domain import Secret, secret_id_for_arn
from ledger.errors import token_in_use, version_destroyed, version_not_found
from ledger.evidence import verify_evidence
from ledger.storage import DataKeyRecord, EvidenceStore, MsgpackTranscoder
from projections import AuditFilter

NAME = "prod/db"
DAY = timedelta(days=1)
NOTIFICATIONS_MAX = 100_000
SQLITE_FILE_SUFFIXES = ("", "-wal", "-shm")
RETENTION_PUTS = 100
CANARY = "canary-value-of-the-destroyed-version"


# --------------------------------------------------------------------------------------
# What an attacker with the database files and the keyring can do
# --------------------------------------------------------------------------------------


def stored_rows(secrets: Secrets) -> list[tuple[Any, ...]]:
    notifications = secrets.recorder.select_notifications(start=1, limit=NOTIFICATIONS_MAX)
    assert len(notifications) < NOTIFICATIONS_MAX, "the test log stays small"
    return [
        (item.id, item.originator_id, item.originator_version, item.topic, item.state)
        for item in notifications
    ]


def version_created(secrets: Secrets, arn: str, version_id: str) -> Secret.VersionCreated:
    """The version's event, read from the store as an attacker would (no aggregate)."""
    for stored in secrets.recorder.select_events(secret_id_for_arn(arn)):
        event = secrets.mapper.to_domain_event(stored)
        if isinstance(event, Secret.VersionCreated) and event.version_id == version_id:
            return event
    raise AssertionError(f"no VersionCreated event for {version_id}")


def stored_data_key(secrets: Secrets, arn: str, version_id: str) -> DataKeyRecord | None:
    return secrets.data_keys.select_data_key(secret_id_for_arn(arn), version_id)


def opened_from_store(secrets: Secrets, arn: str, version_id: str) -> bytes | None:
    """The value, from the stored event, the stored wrapped key and the keyring; None
    when the store holds no key that opens it."""
    created = version_created(secrets, arn, version_id)
    data_key = stored_data_key(secrets, arn, version_id)
    if data_key is None:
        return None
    try:
        return Envelope(secrets.keyring).open(
            ciphertext=created.ciphertext,
            nonce=created.nonce,
            key_id=data_key.key_id,
            wrapped_key=data_key.wrapped_key,
            secret_arn=arn,
            version_id=version_id,
            kind=created.kind,
            sealing=created.sealing,
        )
    except DecryptionError:
        return None


def sqlite_file_bytes(database: str) -> bytes:
    paths = [Path(database + suffix) for suffix in SQLITE_FILE_SUFFIXES]
    return b"".join(path.read_bytes() for path in paths if path.exists())


def is_sqlite(database: str) -> bool:
    return not database.startswith("postgresql://")


# --------------------------------------------------------------------------------------
# The four ways a version is destroyed
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shredded:
    """A scenario's outcome: the versions it destroyed and the event types it appended."""

    arn: str
    version_ids: list[str]
    appended: list[str]


def destroy_on_request(manager: Harness) -> Shredded:
    """v1 holds AWSPREVIOUS and "blue": both leave it, then it is destroyed."""
    arn = manager.create(NAME, token(1), "value 1")["ARN"]
    manager.put(NAME, token(2), "value 2")
    manager.stage(NAME, "blue", token(1))
    log_before = manager.log_length()
    response = manager.call("DestroySecretVersion", SecretId=NAME, VersionId=token(1))
    assert response == {"ARN": arn, "Name": NAME, "VersionId": token(1)}
    events = manager.events_since(log_before)
    moves = [(e.label, e.from_version_id, e.to_version_id, e.reason) for e in events[:-1]]
    assert moves == [
        (AWSPREVIOUS, token(1), None, "detached-by-destroy"),
        ("blue", token(1), None, "detached-by-destroy"),
    ]
    assert (events[-1].version_id, events[-1].reason) == (token(1), "requested")
    assert manager.labels(NAME) == {token(2): [AWSCURRENT]}
    return Shredded(arn, [token(1)], [type(event).__qualname__ for event in events])


def assert_deletion_order(events: list[Any], reason: str) -> None:
    """D-1: the labels come off, then every version is destroyed (creation order),
    then the secret is deleted and its name released, all in one request."""
    assert [type(event).__qualname__ for event in events] == [
        "Secret.LabelMoved",
        "Secret.LabelMoved",
        "Secret.VersionDestroyed",
        "Secret.VersionDestroyed",
        "Secret.Deleted",
        "SecretName.Released",
    ]
    moves = [(e.label, e.from_version_id, e.to_version_id, e.reason) for e in events[:2]]
    assert moves == [
        (AWSCURRENT, token(2), None, "detached-by-deletion"),
        (AWSPREVIOUS, token(1), None, "detached-by-deletion"),
    ]
    destroyed = [(e.version_id, e.reason) for e in events[2:4]]
    assert destroyed == [(token(1), reason), (token(2), reason)]
    assert events[4].labels_detached
    assert len({event.request["request_id"] for event in events}) == 1


def forced_delete(manager: Harness) -> Shredded:
    arn = manager.create(NAME, token(1), "value 1")["ARN"]
    manager.put(NAME, token(2), "value 2")
    log_before = manager.log_length()
    manager.call("DeleteSecret", SecretId=NAME, ForceDeleteWithoutRecovery=True)
    events = manager.events_since(log_before)
    assert_deletion_order(events, "forced-deletion")
    return Shredded(arn, [token(1), token(2)], [type(event).__qualname__ for event in events])


def purge_after_the_window(manager: Harness) -> Shredded:
    arn = manager.create(NAME, token(1), "value 1")["ARN"]
    manager.put(NAME, token(2), "value 2")
    manager.call("DeleteSecret", SecretId=NAME, RecoveryWindowInDays=7)
    manager.clock.advance(8 * DAY)
    log_before = manager.log_length()
    manager.quietly("ListSecrets")  # the lazy purge
    events = manager.events_since(log_before)
    assert_deletion_order(events, "purged")
    return Shredded(arn, [token(1), token(2)], [type(event).__qualname__ for event in events])


def retention_removal(manager: Harness) -> Shredded:
    arn = manager.create(NAME, token(1), "value 1")["ARN"]
    for number in range(2, RETENTION_PUTS + 1):
        manager.put(NAME, token(number), f"value {number}")
    manager.clock.advance(2 * DAY)
    log_before = manager.log_length()
    manager.put(NAME, token(RETENTION_PUTS + 1), "the newest value")
    events = manager.events_since(log_before)
    removed = events[-1]
    assert isinstance(removed, Secret.VersionRemoved)
    assert (removed.version_id, removed.data_key_destroyed) == (token(1), True)
    return Shredded(arn, [token(1)], [type(event).__qualname__ for event in events])


SCENARIOS: dict[str, Callable[[Harness], Shredded]] = {
    "destroy-version": destroy_on_request,
    "forced-delete": forced_delete,
    "purge": purge_after_the_window,
    "retention": retention_removal,
}


class Recording:
    """Wraps a scenario: keeps what the store held just before the shredding save."""

    def __init__(self, manager: Harness) -> None:
        self.manager = manager
        self.rows_before: list[tuple[Any, ...]] = []
        self.wrapped_keys: dict[str, bytes] = {}
        self.values: dict[str, bytes] = {}
        self._save = manager.secrets.save

    def __enter__(self) -> Recording:
        self.manager.secrets.save = self._recording_save  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.manager.secrets.save = self._save  # type: ignore[method-assign]

    def _recording_save(self, *objs: Any, **kwargs: Any) -> Any:
        secrets = self.manager.secrets
        shredding = [
            (obj.arn, event.version_id)
            for obj in objs
            if isinstance(obj, Secret)
            for event in obj.pending_events
            if isinstance(event, Secret.VersionDestroyed | Secret.VersionRemoved)
        ]
        if shredding:
            self.rows_before = stored_rows(secrets)
            for arn, version_id in shredding:
                data_key = stored_data_key(secrets, arn, version_id)
                assert data_key is not None, "a live version has its key"
                self.wrapped_keys[version_id] = data_key.wrapped_key
                secrets.data_key_cache.keep(data_key, secrets.data_key_cache.generation)
                opened = opened_from_store(secrets, arn, version_id)
                assert opened is not None, "before shredding, the recipe opens the value"
                self.values[version_id] = opened
        return self._save(*objs, **kwargs)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_destroyed_version_cannot_be_recovered_from_the_store(
    persistent_backend: str, scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Routine shredding (retention) is erased from SQLite's files when due: now, here.
    monkeypatch.setattr(ledger.storage, "ERASURE_DELAY_SECONDS_MAX", 0.0)
    with open_harness(persistent_backend) as manager, Recording(manager) as recording:
        shredded = SCENARIOS[scenario](manager)
        secrets = manager.secrets

        assert sorted(recording.wrapped_keys) == sorted(shredded.version_ids)
        for version_id in shredded.version_ids:
            assert recording.values[version_id].startswith(b"value")
            assert stored_data_key(secrets, shredded.arn, version_id) is None
            assert opened_from_store(secrets, shredded.arn, version_id) is None  # (a)
            pair = (secret_id_for_arn(shredded.arn), version_id)
            assert secrets.data_key_cache.get(pair) is None  # (e)
        if is_sqlite(persistent_backend):  # (b)
            files = sqlite_file_bytes(persistent_backend)
            for wrapped_key in recording.wrapped_keys.values():
                assert wrapped_key not in files
        rows_after = stored_rows(secrets)  # (c)
        assert rows_after[: len(recording.rows_before)] == recording.rows_before
        assert len(rows_after) - len(recording.rows_before) == len(shredded.appended)
        # (d) The shredding save extended the hash chain in its transaction: one leaf
        # per stored event, and the chain walks intact (keys are never in a leaf).
        evidence = secrets.recorder
        assert isinstance(evidence, EvidenceStore)
        verification = verify_evidence(evidence, None, None)
        assert verification.intact, verification.problem
        assert verification.tree_size == len(rows_after) == evidence.event_hash_count()


def test_retention_erases_the_files_at_the_latest_when_the_ledger_closes(
    tmp_path: Path,
) -> None:
    """Without the delay forced to zero: the key leaves the table at once, and the
    files when the last connection closes (SQLite checkpoints and drops the WAL)."""
    database = str(tmp_path / "ledger.sqlite")
    with open_harness(database) as manager, Recording(manager) as recording:
        shredded = retention_removal(manager)
        assert stored_data_key(manager.secrets, shredded.arn, token(1)) is None
    assert recording.wrapped_keys[token(1)] not in sqlite_file_bytes(database)


# --------------------------------------------------------------------------------------
# The command's rules
# --------------------------------------------------------------------------------------


def test_the_awscurrent_version_is_refused_and_nothing_is_written(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "value 1")["ARN"]
    manager.assert_refused(
        "DestroySecretVersion",
        {"SecretId": NAME, "VersionId": token(1)},
        "InvalidRequestException",
        f"You can't destroy version {token(1)} of secret {arn} because it has the staging "
        "label AWSCURRENT. Move AWSCURRENT to another version first (UpdateSecretVersionStage).",
        [arn],
    )
    assert stored_data_key(manager.secrets, arn, token(1)) is not None
    assert manager.current_value(NAME) == "value 1"


def test_an_unknown_version_is_not_found(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "value 1")["ARN"]
    manager.assert_refused(
        "DestroySecretVersion",
        {"SecretId": NAME, "VersionId": token(9)},
        "ResourceNotFoundException",
        version_not_found(token(9)).message,
        [arn],
    )


def test_a_secret_scheduled_for_deletion_is_refused(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "value 1")["ARN"]
    manager.put(NAME, token(2), "value 2")
    manager.call("DeleteSecret", SecretId=NAME, RecoveryWindowInDays=7)
    manager.assert_refused(
        "DestroySecretVersion",
        {"SecretId": NAME, "VersionId": token(1)},
        "InvalidRequestException",
        None,
        [arn],
    )


def test_destroying_a_destroyed_version_again_changes_nothing(manager: Harness) -> None:
    manager.create(NAME, token(1), "value 1")
    manager.put(NAME, token(2), "value 2")
    manager.call("DestroySecretVersion", SecretId=NAME, VersionId=token(1))
    log_before = manager.log_length()
    again = manager.call("DestroySecretVersion", SecretId=NAME, VersionId=token(1))
    assert again["VersionId"] == token(1)
    assert manager.event_types_since(log_before) == ["ApiCall.Recorded"]


def test_a_destroyed_version_answers_the_documented_error(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "value 1")["ARN"]
    manager.put(NAME, token(2), "value 2")
    manager.call("DestroySecretVersion", SecretId=NAME, VersionId=token(1))
    manager.assert_refused(
        "GetSecretValue",
        {"SecretId": NAME, "VersionId": token(1)},
        "ResourceNotFoundException",
        version_destroyed(token(1)).message,
        [arn],
    )
    assert manager.current_value(NAME) == "value 2"
    listed = manager.call("ListSecretVersionIds", SecretId=NAME, IncludeDeprecated=True)
    assert [entry["VersionId"] for entry in listed["Versions"]] == [token(2)]


def test_the_token_of_a_destroyed_version_cannot_be_reused(manager: Harness) -> None:
    arn = manager.create(NAME, token(1), "value 1")["ARN"]
    manager.put(NAME, token(2), "value 2")
    manager.call("DestroySecretVersion", SecretId=NAME, VersionId=token(1))
    for operation, members in [
        ("PutSecretValue", {"SecretId": NAME}),
        ("UpdateSecret", {"SecretId": NAME}),
    ]:
        for value in ("value 1", "another value"):
            manager.assert_refused(
                operation,
                {**members, "ClientRequestToken": token(1), "SecretString": value},
                "ResourceExistsException",
                token_in_use(token(1), arn).message,
                [arn],
            )


def test_destroyed_and_removed_tokens_stay_refused_after_reopening(
    persistent_backend: str,
) -> None:
    """From the events (and the snapshots retention's many events cause), not a cache."""
    with open_harness(persistent_backend) as manager:
        keyring = manager.secrets.keyring
        arn = retention_removal(manager).arn
        manager.stage(NAME, "blue", token(2))
        manager.call("DestroySecretVersion", SecretId=NAME, VersionId=token(2))
    with open_harness(persistent_backend, keyring=keyring) as reopened:
        for version_id in (token(1), token(2)):
            reopened.assert_refused(
                "PutSecretValue",
                {"SecretId": NAME, "ClientRequestToken": version_id, "SecretString": "x"},
                "ResourceExistsException",
                token_in_use(version_id, arn).message,
                [arn],
            )
        assert reopened.current_value(NAME) == "the newest value"


def test_version_removed_events_of_the_first_format_read_as_keeping_their_key(
    manager: Harness,
) -> None:
    """Stored before shredding was wired: no data_key_destroyed, which upcasts to False."""
    manager.create(NAME, token(1), "value 1")
    for number in range(2, RETENTION_PUTS + 1):
        manager.put(NAME, token(number), f"value {number}")
    manager.clock.advance(2 * DAY)
    log_before = manager.log_length()
    manager.put(NAME, token(RETENTION_PUTS + 1), "the newest value")
    notification = manager.secrets.recorder.select_notifications(
        start=log_before + 1, limit=10, topics=[Secret.VersionRemoved.TOPIC]
    )[0]
    transcoder = MsgpackTranscoder()
    state = transcoder.decode(notification.state)
    assert (state["class_version"], state["data_key_destroyed"]) == (2, True)
    del state["class_version"], state["data_key_destroyed"]
    first_format = type(notification)(
        originator_id=notification.originator_id,
        originator_version=notification.originator_version,
        topic=notification.topic,
        state=transcoder.encode(state),
        id=notification.id,
    )
    event = manager.secrets.mapper.to_domain_event(first_format)
    assert isinstance(event, Secret.VersionRemoved)
    assert (event.version_id, event.data_key_destroyed) == (token(1), False)


# --------------------------------------------------------------------------------------
# Faces: the CLI reaches it, HTTP does not; the read side shows it
# --------------------------------------------------------------------------------------


def test_the_cli_destroys_a_version_end_to_end(tmp_path: Path) -> None:
    database = str(tmp_path / "ledger.sqlite")
    ledger_options = ["--db", database]

    def run(*arguments: str) -> Any:
        return CliRunner().invoke(main, [*arguments, *ledger_options])

    assert run("create", "--name", NAME, "--secret-string", "first").exit_code == 0
    first = json.loads(run("versions", "--secret-id", NAME, "--json").stdout)["Versions"][0]
    assert run("put", "--secret-id", NAME, "--secret-string", "second").exit_code == 0

    refused = run("destroy-version", "--secret-id", NAME, "--version-id", "no-such-version-id")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("ValidationException: ")  # shorter than 32 characters
    destroyed = run("destroy-version", "--secret-id", NAME, "--version-id", first["VersionId"])
    assert destroyed.exit_code == 0, destroyed.output
    assert destroyed.stdout == f"Destroyed version {first['VersionId']} of {NAME}\n"
    again = run(
        "destroy-version", "--secret-id", NAME, "--version-id", first["VersionId"], "--json"
    )
    assert json.loads(again.stdout)["VersionId"] == first["VersionId"]
    read = run("get", "--secret-id", NAME, "--version-id", first["VersionId"], "--json")
    assert read.exit_code == 1
    assert json.loads(read.stderr) == {
        "__type": "ResourceNotFoundException",
        "Message": version_destroyed(first["VersionId"]).message,
    }
    current = run("describe", "--secret-id", NAME, "--json")
    current_id = next(iter(json.loads(current.stdout)["VersionIdsToStages"]))
    on_current = run("destroy-version", "--secret-id", NAME, "--version-id", current_id)
    assert on_current.exit_code == 1
    assert on_current.stderr.startswith("InvalidRequestException: You can't destroy version")
    assert run("get", "--secret-id", NAME).stdout == "second\n"
    help_text = run("destroy-version", "--help").stdout
    assert "Example:" in help_text and "--json" in help_text


def test_the_read_side_shows_the_destruction_and_no_value(backend: str) -> None:
    from test_projections_support import ALICE, Ledger

    ledger = Ledger(backend)
    try:
        ledger.call("CreateSecret", Name=NAME, ClientRequestToken=token(1), SecretString=CANARY)
        ledger.call("PutSecretValue", SecretId=NAME, ClientRequestToken=token(2), SecretString="s2")
        ledger.call("DestroySecretVersion", SecretId=NAME, VersionId=token(1))
        model = ledger.caught_up()

        label_map = model.labels.label_map(NAME, include_deprecated=True)
        assert list(label_map.versions) == [token(2)]
        moves = model.labels.history(NAME, label=AWSPREVIOUS)
        assert [(m.to_version_id, m.operation) for m in moves] == [
            (token(1), "PutSecretValue"),
            (None, "DestroySecretVersion"),
        ]
        assert moves[-1].principal_arn == ALICE

        trail = list(model.audit.records(AuditFilter(secret=NAME)))
        destroy = [record for record in trail if record.event_name == "DestroySecretVersion"]
        assert len(destroy) == 1
        assert destroy[0].principal_arn == ALICE
        assert destroy[0].record["requestParameters"] == {
            "secretId": NAME,
            "versionId": token(1),
        }
        ended = [record for record in trail if record.event_name == "EndSecretVersionDelete"]
        assert [r.record["additionalEventData"]["secretLedger.versionId"] for r in ended] == [
            token(1)
        ]
        assert not any(CANARY in record.text for record in trail)
    finally:
        ledger.close()
