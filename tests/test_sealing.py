"""What the database alone shows of values (docs/events.md S-1 to S-3): every new
version is padded to its size bucket, and its fingerprint is bound to the version,
so equal values in two versions look unrelated; a retried token is compared with
the version it names."""

from __future__ import annotations

from ledger_helpers import Harness, token

from ledger.crypto import TAG_SIZE_BYTES, padded_size_bytes
from ledger.domain import Secret
from ledger.sealing import SEALING_CURRENT

NAME = "sealing/app"
SIZES_BYTES = [*range(1, 70), 127, 128, 255, 256, 1000, 4096]


def versions_created(manager: Harness) -> dict[str, Secret.VersionCreated]:
    return {
        event.version_id: event
        for event in manager.events_since(0)
        if isinstance(event, Secret.VersionCreated)
    }


def test_stored_ciphertext_lengths_show_only_the_size_bucket(manager: Harness) -> None:
    manager.create(NAME)
    for number, size_bytes in enumerate(SIZES_BYTES, start=1):
        manager.put(NAME, token(number), b"v" * size_bytes)

    created = versions_created(manager)
    lengths = {
        len(created[token(number)].ciphertext) - TAG_SIZE_BYTES
        for number, size_bytes in enumerate(SIZES_BYTES, start=1)
        if size_bytes < 32
    }
    assert lengths == {32}
    for number, size_bytes in enumerate(SIZES_BYTES, start=1):
        event = created[token(number)]
        assert event.sealing == SEALING_CURRENT
        assert len(event.ciphertext) == padded_size_bytes(size_bytes) + TAG_SIZE_BYTES
        value = manager.quietly("GetSecretValue", SecretId=NAME, VersionId=token(number))
        assert value["SecretBinary"] == b"v" * size_bytes


def test_equal_values_in_two_versions_have_unrelated_fingerprints(manager: Harness) -> None:
    manager.create(NAME, token(1), "same password")
    manager.put(NAME, token(2), "other password")
    manager.put(NAME, token(3), "same password")

    created = versions_created(manager)
    fingerprints = [created[token(number)].fingerprint for number in (1, 2, 3)]
    assert len(set(fingerprints)) == 3


def test_a_retried_token_is_compared_with_the_version_it_names(manager: Harness) -> None:
    manager.create(NAME, token(1), "first")
    manager.put(NAME, token(2), "second")
    log_before = manager.log_length()

    assert manager.put(NAME, token(1), "first")["VersionId"] == token(1)
    assert manager.put(NAME, token(2), "second")["VersionId"] == token(2)
    assert manager.event_types_since(log_before) == ["ApiCall.Recorded"] * 2
    manager.assert_refused(
        "PutSecretValue",
        {"SecretId": NAME, "ClientRequestToken": token(1), "SecretString": "second"},
        "ResourceExistsException",
    )
    manager.assert_refused(
        "PutSecretValue",
        {"SecretId": NAME, "ClientRequestToken": token(2), "SecretBinary": b"second"},
        "ResourceExistsException",
    )
