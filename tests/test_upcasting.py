"""A ledger written by the v1 event formats, opened by today's code.

``tests/data/ledger-v1.sqlite`` (and its keyring) was written by
``tests/data/make_v1_ledger.py`` on the code of the v1 formats, and
``ledger-v1-expected.json`` holds what that code answered. Today's code reads the
same log through its upcasters (docs/events.md: R-8, D-2, NM-1, S-1, S-3) and must
answer the same, decrypt every old version, replay old tokens, load the v1
snapshot, accept new versions, and rebuild the projections to the same label
history and audit records.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest
from ledger_helpers import token_in_use_message

from ledger.api import SecretsManagerApi
from ledger.application import Secrets
from ledger.crypto import TAG_SIZE_BYTES, padded_size_bytes
from ledger.domain import (
    AWSCURRENT,
    AWSPENDING,
    AWSPREVIOUS,
    DEFAULT_CURRENT,
    DEMOTED,
    DETACHED_BY_DELETION,
    PENDING_DROPPED,
    REQUESTED,
    UNKNOWN_V1,
    Secret,
    SecretName,
    reason_of_v1_move,
    secret_id_for_arn,
)
from ledger.errors import SecretsManagerError
from ledger.sealing import SEALING_V1, SEALING_V2
from ledger.storage import MsgpackTranscoder
from projections import ReadModel

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "ledger-v1.sqlite"
EXPECTED = json.loads((DATA / "ledger-v1-expected.json").read_text())
ROTATED = "app/db-password"
BULK = "app/bulk"


def load_generator() -> ModuleType:
    """The fixture's generator: its query functions shaped the expected answers."""
    spec = importlib.util.spec_from_file_location("make_v1_ledger", DATA / "make_v1_ledger.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A private copy of the fixture (git keeps no file modes: the keyring is made 0600)."""
    copy = tmp_path / "ledger.sqlite"
    shutil.copyfile(FIXTURE, copy)
    keyring = Path(str(copy) + ".keyring")
    shutil.copyfile(Path(str(FIXTURE) + ".keyring"), keyring)
    keyring.chmod(0o600)
    return copy


def open_ledger(database: Path) -> Secrets:
    clock = GENERATOR.START + timedelta(days=30)
    return Secrets(str(database), clock=lambda: clock)


@pytest.fixture
def ledger(database: Path) -> Iterator[Secrets]:
    secrets = open_ledger(database)
    try:
        yield secrets
    finally:
        secrets.close()


def stored_states(database: Path, table: str) -> list[tuple[str, dict[str, Any]]]:
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute(f"SELECT topic, state FROM {table}").fetchall()
    finally:
        connection.close()
    transcoder = MsgpackTranscoder()
    return [(topic, transcoder.decode(state)) for topic, state in rows]


def without_reasons(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in move.items() if key != "Reason"} for move in history]


# The fixture is what it claims to be


def test_the_fixture_holds_v1_events_and_a_v1_snapshot_only(database: Path) -> None:
    events = stored_states(database, "stored_events")
    snapshots = stored_states(database, "stored_snapshots")

    assert len(events) > 400 and len(snapshots) == 1
    assert all("class_version" not in state for _, state in events + snapshots)
    assert all("reason" not in state for topic, state in events if topic.endswith("LabelMoved"))
    assert snapshots[0][0] == "eventsourcing.domain:Snapshot"
    assert FIXTURE.stat().st_size < 1_000_000


# Write side


def test_every_live_secret_answers_as_v1_did_and_every_old_version_decrypts(
    database: Path,
) -> None:
    """v1 knew no LastAccessedDate; today's answers add it, after the reads (LA-2)."""
    answers = GENERATOR.live_secret_answers(database)
    read_on = (GENERATOR.START + timedelta(days=30)).replace(hour=0).isoformat()
    for name, answer in answers.items():
        accessed = answer["describe"].pop("LastAccessedDate", None)
        assert accessed == (read_on if answer["values"] else None), name
    assert answers == EXPECTED["secrets"]


def test_old_versions_carry_sealing_format_1(ledger: Secrets) -> None:
    secret = ledger.find_secret(ROTATED)

    assert {version["sealing"] for version in secret.versions.values()} == {SEALING_V1}
    assert secret.destroyed_version_ids == []


def test_old_tokens_replay_idempotently_and_refuse_another_value(ledger: Secrets) -> None:
    api = SecretsManagerApi(ledger)
    for name, answers in EXPECTED["secrets"].items():
        for version_id, value in answers["values"].items():
            request = {"SecretId": name, "ClientRequestToken": version_id, "SecretString": value}
            log_before = ledger.recorder.max_notification_id()
            assert api.call("PutSecretValue", request)["VersionId"] == version_id
            assert ledger.recorder.max_notification_id() == (log_before or 0) + 1  # its record
            with pytest.raises(SecretsManagerError) as refused:
                api.call("PutSecretValue", {**request, "SecretString": value + "!"})
            assert refused.value.code == "ResourceExistsException"


def test_the_v1_snapshot_loads_and_agrees_with_the_events(ledger: Secrets) -> None:
    arn = ledger.find_secret(BULK).arn
    assert ledger.snapshots is not None
    [snapshot] = list(ledger.snapshots.get(secret_id_for_arn(arn)))
    from_snapshot = snapshot.mutate(None)
    assert isinstance(from_snapshot, Secret)

    from_events: Secret | None = None
    for event in ledger.events.get(secret_id_for_arn(arn), lte=snapshot.originator_version):
        from_events = event.mutate(from_events)
    assert from_events is not None
    assert from_snapshot.versions == from_events.versions
    assert from_snapshot.labels == from_events.labels
    assert from_snapshot.destroyed_version_ids == from_events.destroyed_version_ids == []
    assert {record["sealing"] for record in from_snapshot.versions.values()} == {SEALING_V1}


def removed_by_retention(ledger: Secrets, secret_id: UUID) -> list[str]:
    """The versions v1's retention removed (its data keys kept), in log order."""
    return [
        event.version_id
        for event in ledger.events.get(secret_id)
        if isinstance(event, Secret.VersionRemoved)
    ]


def refused_puts(api: SecretsManagerApi, secret_ids: list[str], arn: str) -> None:
    """A put and an update reusing each token are refused as in use (T7)."""
    for version_id in secret_ids:
        for operation, extra in (("PutSecretValue", {}), ("UpdateSecret", {"Description": "d"})):
            request = {"SecretId": BULK, "ClientRequestToken": version_id, "SecretString": "x"}
            with pytest.raises(SecretsManagerError) as refused:
                api.call(operation, {**request, **extra})
            assert (refused.value.code, refused.value.message) == (
                "ResourceExistsException",
                token_in_use_message(version_id, arn),
            )


def test_a_token_removed_by_v1_retention_stays_in_use(ledger: Secrets) -> None:
    """The v1 snapshot of app/bulk precedes its five removals: the v1 ``VersionRemoved``
    events after it name them (``data_key_destroyed`` False: v1 kept the keys)."""
    secret = ledger.find_secret(BULK)
    removed = removed_by_retention(ledger, secret.id)
    assert len(removed) == 5
    assert secret.destroyed_version_ids == sorted(removed)
    assert all(ledger.data_keys.select_data_key(secret.id, v) is not None for v in removed)
    log_before = ledger.recorder.max_notification_id() or 0

    refused_puts(SecretsManagerApi(ledger), removed, secret.arn)

    assert ledger.recorder.max_notification_id() == log_before + 2 * len(removed)  # records


def write_v1_snapshot_after_the_removals(database: Path) -> tuple[int, list[str]]:
    """The snapshot v1 would have written of app/bulk had its interval fallen after the
    retention removals: the fixture's v1 snapshot state (same keys, v1 version
    records) brought up to the secret's last event, counting five removals without
    naming them. Returns its version and the removed ids."""
    ledger = open_ledger(database)
    try:
        secret = ledger.find_secret(BULK)
        removed = removed_by_retention(ledger, secret.id)
        version = secret.version
        versions = secret.versions
        labels = dict(secret.labels)
        modified_on = secret.modified_on
    finally:
        ledger.close()
    transcoder = MsgpackTranscoder()
    connection = sqlite3.connect(database)
    try:
        originator_id, topic, state = connection.execute(
            "SELECT originator_id, topic, state FROM stored_snapshots"
        ).fetchone()
        snapshot = transcoder.decode(state)
        v1_state = snapshot["state"]
        v1_keys = set(v1_state)
        v1_state["versions"] = {
            version_id: {key: item for key, item in record.items() if key != "sealing"}
            for version_id, record in versions.items()
        }
        v1_state["labels"] = labels
        v1_state["_modified_on"] = modified_on
        v1_state["removed_version_count"] = len(removed)
        assert set(v1_state) == v1_keys and "class_version" not in snapshot
        snapshot["timestamp"] = modified_on
        with connection:
            connection.execute(
                "INSERT INTO stored_snapshots VALUES (?, ?, ?, ?)",
                (originator_id, version, topic, transcoder.encode(snapshot)),
            )
    finally:
        connection.close()
    return version, removed


def test_a_token_removed_before_a_v1_snapshot_stays_in_use(database: Path) -> None:
    """The gap: a v1 snapshot counts the removed versions without naming them, so the
    secret loaded from it does not know their tokens. The data key v1 kept makes the
    put conflict; the put then finds the key with no live version behind it and
    answers token in use, not InternalServiceError after its retries."""
    snapshot_version, removed = write_v1_snapshot_after_the_removals(database)
    ledger = open_ledger(database)
    try:
        secret = ledger.find_secret(BULK)
        assert secret.version == snapshot_version and secret.destroyed_version_ids == []
        api = SecretsManagerApi(ledger)
        log_before = ledger.recorder.max_notification_id() or 0

        refused_puts(api, removed, secret.arn)

        assert ledger.recorder.max_notification_id() == log_before + 2 * len(removed)
        live = next(iter(secret.versions))
        value = api.call("GetSecretValue", {"SecretId": BULK, "VersionId": live})
        replay = {
            "SecretId": BULK,
            "ClientRequestToken": live,
            "SecretString": value["SecretString"],
        }
        assert api.call("PutSecretValue", replay)["VersionId"] == live
        new_token = "00000000-0000-0000-0000-00000000cafe"
        request = {"SecretId": BULK, "ClientRequestToken": new_token, "SecretString": "new"}
        assert api.call("PutSecretValue", request)["VersionId"] == new_token
    finally:
        ledger.close()


def test_a_new_put_on_an_old_secret_is_sealed_in_the_new_format(ledger: Secrets) -> None:
    api = SecretsManagerApi(ledger)
    old = api.call("GetSecretValue", {"SecretId": ROTATED})
    new_token = "00000000-0000-0000-0000-00000000beef"
    request = {"SecretId": ROTATED, "ClientRequestToken": new_token, "SecretString": "v2 value"}

    api.call("PutSecretValue", request)

    secret = ledger.find_secret(ROTATED)
    version = secret.versions[new_token]
    assert version["sealing"] == SEALING_V2
    assert len(version["ciphertext"]) == padded_size_bytes(len("v2 value")) + TAG_SIZE_BYTES
    assert secret.labels[AWSCURRENT] == new_token
    assert secret.labels[AWSPREVIOUS] == old["VersionId"]
    assert api.call("GetSecretValue", {"SecretId": ROTATED})["SecretString"] == "v2 value"
    previous = api.call("GetSecretValue", {"SecretId": ROTATED, "VersionStage": AWSPREVIOUS})
    assert previous["SecretString"] == old["SecretString"]
    assert api.call("PutSecretValue", request)["VersionId"] == new_token


# Read side


def test_a_rebuild_gives_the_v1_label_history_audit_records_and_reasons(database: Path) -> None:
    answers = GENERATOR.projection_answers(database)

    assert answers["audit"] == EXPECTED["audit"]
    assert answers["labels"].keys() == EXPECTED["labels"].keys()
    for arn, expected in EXPECTED["labels"].items():
        assert without_reasons(answers["labels"][arn]["history"]) == expected["history"], arn
        assert answers["labels"][arn]["intervals"] == expected["intervals"], arn
    reasons = {
        (arn.rsplit(":", 1)[-1][:-7], move["Label"], move["Operation"], move["Reason"])
        for arn, labels in answers["labels"].items()
        for move in labels["history"]
    }
    assert ("app/forced", "canary", "DeleteSecret", DETACHED_BY_DELETION) in reasons
    assert ("app/purged", AWSPENDING, "DeleteSecret", DETACHED_BY_DELETION) in reasons
    assert ("app/db-password", AWSPENDING, "PutSecretValue", PENDING_DROPPED) in reasons
    assert ("app/api-key", AWSPENDING, "PutSecretValue", PENDING_DROPPED) in reasons
    assert ("app/db-password", "green", "PutSecretValue", REQUESTED) in reasons
    assert ("app/db-password", AWSPREVIOUS, "UpdateSecretVersionStage", DEMOTED) in reasons
    assert ("app/db-password", AWSCURRENT, "UpdateSecret", DEFAULT_CURRENT) in reasons
    assert UNKNOWN_V1 not in {reason for *_, reason in reasons}


def test_the_upcast_pending_drops_are_the_rotation_abandoned_records(database: Path) -> None:
    answers = GENERATOR.projection_answers(database)
    abandoned = [
        record for record in answers["audit"]["records"] if record[2] == "RotationAbandoned"
    ]
    dropped = [
        (arn, move["Position"])
        for arn, labels in answers["labels"].items()
        for move in labels["history"]
        if move["Reason"] == PENDING_DROPPED
    ]
    assert sorted((record[4], record[0]) for record in abandoned) == sorted(dropped)
    assert len(dropped) == 2


def test_a_deletion_after_the_old_log_detaches_labels_by_events(
    ledger: Secrets, database: Path
) -> None:
    """The old secret, deleted by today's code: D-1 moves, one position each, before
    ``Deleted``; the intervals close there."""
    api = SecretsManagerApi(ledger)
    arn = api.call("DeleteSecret", {"SecretId": ROTATED, "ForceDeleteWithoutRecovery": True})["ARN"]
    with ReadModel.open(str(database)) as read_model:
        read_model.catch_up()
        history = read_model.labels.history(arn)
        intervals = read_model.labels.intervals(arn)
        label_map = read_model.labels.label_map(arn)

    detachments = [move for move in history if move.reason == DETACHED_BY_DELETION]
    assert [move.label for move in detachments] == [AWSCURRENT, AWSPREVIOUS, "blue", "green"]
    assert len({move.position for move in detachments}) == 4
    assert all(interval.to_position is not None for interval in intervals)
    assert label_map.deleted and label_map.labels == {}


# Upcasters, on v1 states


def test_the_v1_claim_upcasts_to_the_name_inside_its_arn() -> None:
    state: dict[str, Any] = {"arn": "arn:aws:secretsmanager:us-east-1:1:secret:a/b-c-AbC123"}

    SecretName.Claimed.upcast_v1_v2(state)

    assert state["name"] == "a/b-c"


def test_a_v1_deletion_upcasts_to_labels_still_attached() -> None:
    state: dict[str, Any] = {"forced": True}

    Secret.Deleted.upcast_v1_v2(state)

    assert state["labels_detached"] is False


@pytest.mark.parametrize(
    ("label", "to", "operation", "parameters", "reason"),
    [
        (AWSCURRENT, "t2", "PutSecretValue", {"clientRequestToken": "t2"}, DEFAULT_CURRENT),
        (
            AWSCURRENT,
            "t2",
            "PutSecretValue",
            {"clientRequestToken": "t2", "versionStages": [AWSCURRENT]},
            REQUESTED,
        ),
        (AWSPREVIOUS, "t1", "PutSecretValue", {"clientRequestToken": "t2"}, DEMOTED),
        (AWSPENDING, None, "PutSecretValue", {}, PENDING_DROPPED),
        (AWSPENDING, None, "UpdateSecret", {}, PENDING_DROPPED),
        (AWSCURRENT, "t2", "UpdateSecret", {}, DEFAULT_CURRENT),
        (AWSPREVIOUS, "t1", "UpdateSecret", {}, DEMOTED),
        (AWSCURRENT, "t1", "CreateSecret", {}, DEFAULT_CURRENT),
        ("blue", "t2", "PutSecretValue", {}, REQUESTED),
        (AWSCURRENT, "t2", "PutSecretValue", {}, UNKNOWN_V1),
        (AWSPREVIOUS, "t1", "PutSecretValue", {}, UNKNOWN_V1),
        (AWSPENDING, None, "UpdateSecretVersionStage", {}, REQUESTED),
        (AWSPREVIOUS, "t1", "UpdateSecretVersionStage", {"versionStage": AWSCURRENT}, DEMOTED),
        (AWSPREVIOUS, "t1", "UpdateSecretVersionStage", {"versionStage": AWSPREVIOUS}, REQUESTED),
        (AWSPREVIOUS, "t1", "UpdateSecretVersionStage", {}, UNKNOWN_V1),
        ("blue", "t1", "SomethingElse", {}, UNKNOWN_V1),
    ],
)
def test_v1_label_moves_upcast_to_the_reason_their_request_shows(
    label: str, to: str | None, operation: str, parameters: dict[str, Any], reason: str
) -> None:
    """R-8: derived from the v1 event alone; unknown-v1 where it cannot tell."""
    request = {"operation": operation, "parameters": parameters}
    assert reason_of_v1_move(label, to, request) == reason
    state: dict[str, Any] = {"label": label, "to_version_id": to, "request": request}
    Secret.LabelMoved.upcast_v1_v2(state)
    assert state["reason"] == reason
