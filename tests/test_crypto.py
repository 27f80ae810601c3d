"""Envelope encryption: how a secret value is sealed, bound to its version, and kept openable
across key rotation, while plaintext and keys never leak."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import multiprocessing
import os
import pathlib
import re
import stat
from collections.abc import Callable
from threading import Barrier as BarrierType
from typing import Any

import pytest

from ledger.crypto import (
    KEY_SIZE_BYTES,
    NONCE_SIZE_BYTES,
    PADDED_SIZE_BYTES_MAX,
    TAG_SIZE_BYTES,
    VALUE_SIZE_BYTES_MAX,
    WRAPPED_KEY_SIZE_BYTES,
    DecryptionError,
    Envelope,
    Keyring,
    KeyringError,
    SealedValue,
    encode_fields,
    pad,
    padded_size_bytes,
    unpad,
    version_binding,
)
from ledger.sealing import SEALING_CURRENT, SEALING_V1, SEALING_V2

SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf"
OTHER_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/api-GhIjKl"
VERSION_ID = "EXAMPLE1-90ab-cdef-fedc-ba987SECRET1"
OTHER_VERSION_ID = "EXAMPLE2-90ab-cdef-fedc-ba987SECRET2"
CANARY = b"canary-7f3e1b-correct-horse-battery-staple"


def open_sealed(envelope: Envelope, sealed: SealedValue, **binding: str) -> bytes:
    arguments = {"secret_arn": SECRET_ARN, "version_id": VERSION_ID, "kind": "string"}
    arguments.update(binding)
    return envelope.open(
        ciphertext=sealed.ciphertext,
        nonce=sealed.nonce,
        key_id=sealed.key_id,
        wrapped_key=sealed.wrapped_key,
        sealing=sealed.sealing,
        **arguments,
    )


def seal_canary(envelope: Envelope, kind: str = "string") -> SealedValue:
    return envelope.seal(CANARY, secret_arn=SECRET_ARN, version_id=VERSION_ID, kind=kind)


def flip_first_bit(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def file_mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- Sealing and opening ------------------------------------------------------------


def test_a_sealed_value_opens_to_the_original_plaintext() -> None:
    envelope = Envelope(Keyring.in_memory())

    sealed = seal_canary(envelope)

    assert open_sealed(envelope, sealed) == CANARY


def test_binary_values_of_any_size_up_to_the_limit_round_trip() -> None:
    envelope = Envelope(Keyring.in_memory())
    for value in (b"", bytes(range(256)), os.urandom(VALUE_SIZE_BYTES_MAX)):
        sealed = envelope.seal(value, secret_arn=SECRET_ARN, version_id=VERSION_ID, kind="binary")
        assert open_sealed(envelope, sealed, kind="binary") == value


def test_a_value_larger_than_the_secrets_manager_limit_is_refused() -> None:
    envelope = Envelope(Keyring.in_memory())

    with pytest.raises(ValueError, match="at most"):
        envelope.seal(
            bytes(VALUE_SIZE_BYTES_MAX + 1),
            secret_arn=SECRET_ARN,
            version_id=VERSION_ID,
            kind="binary",
        )


def test_every_seal_uses_a_fresh_data_key_and_fresh_nonces() -> None:
    envelope = Envelope(Keyring.in_memory())

    first, second = seal_canary(envelope), seal_canary(envelope)

    assert len(first.nonce) == NONCE_SIZE_BYTES
    assert len(first.wrapped_key) == WRAPPED_KEY_SIZE_BYTES
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext
    assert first.wrapped_key[:NONCE_SIZE_BYTES] != second.wrapped_key[:NONCE_SIZE_BYTES]
    assert first.wrapped_key != second.wrapped_key


def test_a_kind_other_than_string_or_binary_is_rejected() -> None:
    envelope = Envelope(Keyring.in_memory())

    with pytest.raises(ValueError, match="'string' or 'binary'"):
        seal_canary(envelope, kind="json")


def test_an_empty_secret_arn_or_version_id_is_rejected() -> None:
    envelope = Envelope(Keyring.in_memory())

    with pytest.raises(ValueError, match="secret ARN"):
        envelope.seal(CANARY, secret_arn="", version_id=VERSION_ID, kind="string")
    with pytest.raises(ValueError, match="version id"):
        envelope.seal(CANARY, secret_arn=SECRET_ARN, version_id="", kind="string")


# --- Associated data binds a value to its secret, version and kind -------------------


@pytest.mark.parametrize(
    "moved_to",
    [
        {"secret_arn": OTHER_SECRET_ARN},
        {"version_id": OTHER_VERSION_ID},
        {"kind": "binary"},
    ],
    ids=["another secret", "another version", "another kind"],
)
def test_a_value_cannot_be_opened_as_another_secret_version_or_kind(
    moved_to: dict[str, str],
) -> None:
    envelope = Envelope(Keyring.in_memory())
    sealed = seal_canary(envelope)

    with pytest.raises(DecryptionError):
        open_sealed(envelope, sealed, **moved_to)


def test_a_value_ciphertext_swapped_onto_another_versions_key_fails() -> None:
    envelope = Envelope(Keyring.in_memory())
    first = seal_canary(envelope)
    second = envelope.seal(
        CANARY, secret_arn=SECRET_ARN, version_id=OTHER_VERSION_ID, kind="string"
    )

    with pytest.raises(DecryptionError):
        envelope.open(
            ciphertext=first.ciphertext,
            nonce=first.nonce,
            key_id=second.key_id,
            wrapped_key=second.wrapped_key,
            secret_arn=SECRET_ARN,
            version_id=OTHER_VERSION_ID,
            kind="string",
            sealing=SEALING_CURRENT,
        )


def test_a_value_stays_bound_to_its_version_even_if_its_key_is_rewrapped_for_another() -> None:
    keyring = Keyring.in_memory()
    envelope = Envelope(keyring)
    sealed = seal_canary(envelope)
    data_key = keyring.unwrap(
        sealed.key_id,
        sealed.wrapped_key,
        associated_data=version_binding(
            secret_arn=SECRET_ARN, version_id=VERSION_ID, kind="string"
        ),
    )
    key_id, wrapped_for_other_version = keyring.wrap(
        data_key,
        associated_data=version_binding(
            secret_arn=SECRET_ARN, version_id=OTHER_VERSION_ID, kind="string"
        ),
    )
    moved = SealedValue(
        sealed.ciphertext, sealed.nonce, key_id, wrapped_for_other_version, sealed.sealing
    )

    with pytest.raises(DecryptionError, match="does not authenticate"):
        open_sealed(envelope, moved, version_id=OTHER_VERSION_ID)


def test_length_prefixing_keeps_field_boundaries_unambiguous() -> None:
    assert encode_fields(b"ab", b"c") != encode_fields(b"a", b"bc")
    assert encode_fields(b"a", b"") != encode_fields(b"a")


def test_tampering_with_any_stored_field_fails() -> None:
    envelope = Envelope(Keyring.in_memory())
    sealed = seal_canary(envelope)
    tampered_values = [
        SealedValue(
            flip_first_bit(sealed.ciphertext),
            sealed.nonce,
            sealed.key_id,
            sealed.wrapped_key,
            sealed.sealing,
        ),
        SealedValue(
            sealed.ciphertext[:-1] + b"\x00",
            sealed.nonce,
            sealed.key_id,
            sealed.wrapped_key,
            sealed.sealing,
        ),
        SealedValue(
            sealed.ciphertext,
            flip_first_bit(sealed.nonce),
            sealed.key_id,
            sealed.wrapped_key,
            sealed.sealing,
        ),
        SealedValue(
            sealed.ciphertext,
            sealed.nonce,
            sealed.key_id,
            flip_first_bit(sealed.wrapped_key),
            sealed.sealing,
        ),
    ]
    for tampered in tampered_values:
        assert tampered != sealed
        with pytest.raises(DecryptionError):
            open_sealed(envelope, tampered)


def test_truncated_stored_fields_fail_as_decryption_errors() -> None:
    envelope = Envelope(Keyring.in_memory())
    sealed = seal_canary(envelope)

    with pytest.raises(DecryptionError, match="nonce"):
        envelope.open(
            ciphertext=sealed.ciphertext,
            nonce=sealed.nonce[:-1],
            key_id=sealed.key_id,
            wrapped_key=sealed.wrapped_key,
            secret_arn=SECRET_ARN,
            version_id=VERSION_ID,
            kind="string",
            sealing=SEALING_CURRENT,
        )
    with pytest.raises(DecryptionError, match="wrapped data key"):
        envelope.open(
            ciphertext=sealed.ciphertext,
            nonce=sealed.nonce,
            key_id=sealed.key_id,
            wrapped_key=sealed.wrapped_key[:-1],
            secret_arn=SECRET_ARN,
            version_id=VERSION_ID,
            kind="string",
            sealing=SEALING_CURRENT,
        )
    with pytest.raises(DecryptionError, match="ciphertext"):
        envelope.open(
            ciphertext=sealed.ciphertext[:5],
            nonce=sealed.nonce,
            key_id=sealed.key_id,
            wrapped_key=sealed.wrapped_key,
            secret_arn=SECRET_ARN,
            version_id=VERSION_ID,
            kind="string",
            sealing=SEALING_CURRENT,
        )


# --- Keyrings --------------------------------------------------------------------------


def test_a_value_sealed_with_one_keyring_cannot_be_opened_with_another(
    tmp_path: pathlib.Path,
) -> None:
    sealed = seal_canary(Envelope(Keyring.open(tmp_path / "one.json")))
    stranger = Envelope(Keyring.open(tmp_path / "two.json"))

    with pytest.raises(KeyringError, match="no key with id"):
        open_sealed(stranger, sealed)


def test_a_keyring_whose_key_was_replaced_under_the_same_id_fails_to_decrypt(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "keyring.json"
    sealed = seal_canary(Envelope(Keyring.open(path)))
    document = json.loads(path.read_bytes())
    document["key_encryption_keys"][sealed.key_id] = base64.b64encode(os.urandom(32)).decode()
    path.write_text(json.dumps(document))

    with pytest.raises(DecryptionError, match="does not authenticate"):
        open_sealed(Envelope(Keyring.open(path, create=False)), sealed)


def test_a_missing_keyring_is_not_created_when_creation_is_off(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "absent.json"

    with pytest.raises(KeyringError, match="does not exist"):
        Keyring.open(path, create=False)
    assert not path.exists()


def test_a_new_keyring_file_is_private_and_reopens_with_the_same_keys(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "nested" / "keyring.json"
    keyring = Keyring.open(path)
    sealed = seal_canary(Envelope(keyring))

    reopened = Keyring.open(path, create=False)

    assert file_mode(path) == 0o600
    assert reopened.active_key_id == keyring.active_key_id
    assert re.fullmatch(r"kek-\d{8}T\d{6}Z-[0-9a-f]{6}", reopened.active_key_id)
    assert open_sealed(Envelope(reopened), sealed) == CANARY
    assert fingerprint(reopened) == fingerprint(keyring)
    assert [entry.name for entry in path.parent.iterdir() if entry.name.endswith(".tmp")] == []


_start_together: list[BarrierType] = []
RACING_PROCESS_COUNT = 6


def remember_start_barrier(barrier: BarrierType) -> None:
    _start_together.append(barrier)


def open_keyring_after_barrier(path: pathlib.Path) -> str:
    _start_together[0].wait(timeout=30)
    return Keyring.open(path).active_key_id


def rotate_keyring_after_barrier(path: pathlib.Path) -> str:
    keyring = Keyring.open(path, create=False)
    _start_together[0].wait(timeout=30)
    return keyring.rotate()


def race_processes(task: Callable[[pathlib.Path], str], path: pathlib.Path) -> set[str]:
    """Run ``task(path)`` in several processes that all start at the same instant."""
    context = multiprocessing.get_context("fork")
    pool = concurrent.futures.ProcessPoolExecutor(
        RACING_PROCESS_COUNT,
        mp_context=context,
        initializer=remember_start_barrier,
        initargs=(context.Barrier(RACING_PROCESS_COUNT),),
    )
    with pool:
        outcomes = [pool.submit(task, path) for _ in range(RACING_PROCESS_COUNT)]
        return {outcome.result(timeout=60) for outcome in outcomes}


def test_processes_racing_to_create_a_keyring_all_end_up_with_the_same_one(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "keyring.json"

    key_ids = race_processes(open_keyring_after_barrier, path)

    assert key_ids == {Keyring.open(path, create=False).active_key_id}


def test_processes_rotating_at_the_same_time_lose_none_of_each_others_keys(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "keyring.json"
    original_key_id = Keyring.open(path).active_key_id

    new_key_ids = race_processes(rotate_keyring_after_barrier, path)

    reopened = Keyring.open(path, create=False)
    assert len(new_key_ids) == RACING_PROCESS_COUNT
    assert reopened.key_ids == new_key_ids | {original_key_id}
    assert reopened.active_key_id in new_key_ids


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_a_new_keyring_file_has_mode_0600_whatever_the_umask(
    tmp_path: pathlib.Path, umask: int
) -> None:
    path = tmp_path / "keyring.json"
    previous_umask = os.umask(umask)
    try:
        Keyring.open(path)
    finally:
        os.umask(previous_umask)

    assert file_mode(path) == 0o600


def test_the_keyring_file_follows_the_documented_format(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keyring.json"
    keyring = Keyring.open(path)

    document = json.loads(path.read_bytes())

    assert document["format"] == 1
    assert document["active_key_id"] == keyring.active_key_id
    assert set(document["key_encryption_keys"]) == {keyring.active_key_id}
    assert len(base64.b64decode(document["key_encryption_keys"][keyring.active_key_id])) == 32
    assert len(base64.b64decode(document["fingerprint_key"])) == KEY_SIZE_BYTES


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_keyring_accessible_by_group_or_others_is_refused(
    tmp_path: pathlib.Path, mode: int
) -> None:
    path = tmp_path / "keyring.json"
    Keyring.open(path)
    path.chmod(mode)

    with pytest.raises(KeyringError, match="chmod 600"):
        Keyring.open(path)


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b'{"format": 2}',
        b'{"format": 1, "active_key_id": "kek-x", "key_encryption_keys": {}}',
        b'{"format": 1, "active_key_id": "missing", "key_encryption_keys": '
        b'{"kek-20240101T000000Z-abcdef": "AAAA"}, "fingerprint_key": "AAAA"}',
    ],
    ids=["not json", "not an object", "unknown format", "no keys", "short keys"],
)
def test_a_corrupt_keyring_is_refused(tmp_path: pathlib.Path, content: bytes) -> None:
    path = tmp_path / "keyring.json"
    path.write_bytes(content)
    path.chmod(0o600)

    with pytest.raises(KeyringError):
        Keyring.open(path)


def hides_its_cause(error: BaseException) -> bool:
    """Whether a traceback of ``error`` would show no chained exception (which may hold keys)."""
    return error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_keyring_errors_never_show_key_material(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keyring.json"
    Keyring.open(path)
    document = json.loads(path.read_bytes())
    real_key = document["fingerprint_key"]
    document["fingerprint_key"] = real_key + "!"
    path.write_text(json.dumps(document))

    with pytest.raises(KeyringError) as raised:
        Keyring.open(path)

    message = str(raised.value)
    assert "not valid base64" in message
    for encoded_key in [*document["key_encryption_keys"].values(), real_key]:
        assert encoded_key not in message
    assert hides_its_cause(raised.value)


def test_the_keyring_does_not_show_its_keys_in_its_repr(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keyring.json"
    keyring = Keyring.open(path)
    document = json.loads(path.read_bytes())

    shown = repr(keyring)

    assert keyring.active_key_id in shown
    assert document["fingerprint_key"] not in shown
    assert document["key_encryption_keys"][keyring.active_key_id] not in shown


# --- Rotation ------------------------------------------------------------------------


def test_values_sealed_before_a_rotation_still_open_and_new_ones_use_the_new_key(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "keyring.json"
    keyring = Keyring.open(path)
    envelope = Envelope(keyring)
    before = seal_canary(envelope)

    new_key_id = keyring.rotate()
    after = seal_canary(envelope)

    assert new_key_id != before.key_id
    assert keyring.active_key_id == new_key_id
    assert keyring.key_ids == {before.key_id, new_key_id}
    assert after.key_id == new_key_id
    assert open_sealed(envelope, before) == CANARY
    assert open_sealed(envelope, after) == CANARY
    reopened = Keyring.open(path, create=False)
    assert reopened.active_key_id == new_key_id
    assert open_sealed(Envelope(reopened), before) == CANARY
    assert file_mode(path) == 0o600


def test_rewrap_moves_a_data_key_to_the_active_key_without_touching_the_ciphertext() -> None:
    keyring = Keyring.in_memory()
    envelope = Envelope(keyring)
    sealed = seal_canary(envelope)
    keyring.rotate()

    key_id, wrapped_key = envelope.rewrap(
        key_id=sealed.key_id,
        wrapped_key=sealed.wrapped_key,
        secret_arn=SECRET_ARN,
        version_id=VERSION_ID,
        kind="string",
    )
    rewrapped = SealedValue(sealed.ciphertext, sealed.nonce, key_id, wrapped_key, sealed.sealing)

    assert key_id == keyring.active_key_id != sealed.key_id
    assert open_sealed(envelope, rewrapped) == CANARY


def test_rewrap_refuses_a_key_presented_for_another_version() -> None:
    keyring = Keyring.in_memory()
    envelope = Envelope(keyring)
    sealed = seal_canary(envelope)
    keyring.rotate()

    with pytest.raises(DecryptionError):
        envelope.rewrap(
            key_id=sealed.key_id,
            wrapped_key=sealed.wrapped_key,
            secret_arn=SECRET_ARN,
            version_id=OTHER_VERSION_ID,
            kind="string",
        )


def test_a_long_running_process_sees_a_rotation_made_by_another(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keyring.json"
    server = Envelope(Keyring.open(path))
    command_line_keyring = Keyring.open(path, create=False)
    command_line_keyring.rotate()

    sealed_after_rotation = seal_canary(Envelope(command_line_keyring))

    assert open_sealed(server, sealed_after_rotation) == CANARY


def test_rotations_by_two_processes_keep_both_keys(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keyring.json"
    first, second = Keyring.open(path), Keyring.open(path, create=False)
    original_key_id = first.active_key_id

    first_new_key_id = first.rotate()
    second_new_key_id = second.rotate()

    reopened = Keyring.open(path, create=False)
    assert reopened.key_ids == {original_key_id, first_new_key_id, second_new_key_id}
    assert reopened.active_key_id == second_new_key_id


def test_a_keyring_file_that_lost_a_key_is_refused_on_reload(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keyring.json"
    keyring = Keyring.open(path)
    original_key_id = keyring.active_key_id
    path.unlink()
    Keyring.open(path)  # someone replaced the keyring with a fresh one

    with pytest.raises(KeyringError, match="no longer holds"):
        keyring.rotate()
    assert keyring.active_key_id == original_key_id


# --- Fingerprints ----------------------------------------------------------------------


def fingerprint(keyring: Keyring, **overrides: Any) -> bytes:
    arguments: dict[str, Any] = {
        "sealing": SEALING_V2,
        "secret_arn": SECRET_ARN,
        "version_id": VERSION_ID,
        "kind": "string",
        "value": CANARY,
    }
    arguments.update(overrides)
    return keyring.fingerprint(**arguments)


def test_equal_values_of_the_same_version_have_equal_fingerprints() -> None:
    keyring = Keyring.in_memory()

    first, second = fingerprint(keyring), fingerprint(keyring)

    assert first == second
    assert len(first) == 32


def test_fingerprints_differ_by_value_kind_secret_and_version() -> None:
    keyring = Keyring.in_memory()
    reference = fingerprint(keyring)

    others = [
        fingerprint(keyring, value=CANARY + b"!"),
        fingerprint(keyring, kind="binary"),
        fingerprint(keyring, secret_arn=OTHER_SECRET_ARN),
        fingerprint(keyring, version_id=OTHER_VERSION_ID),
        fingerprint(keyring, sealing=SEALING_V1),
    ]

    assert reference not in others
    assert len(set(others)) == len(others)


def test_v1_fingerprints_bind_the_secret_only_as_stored_versions_were_written() -> None:
    """S-3: a version sealed in format 1 is compared in format 1, where the version
    id takes no part (equal values of one secret were equal)."""
    keyring = Keyring.in_memory()

    first = fingerprint(keyring, sealing=SEALING_V1)
    other_version = fingerprint(keyring, sealing=SEALING_V1, version_id=OTHER_VERSION_ID)

    assert first == other_version
    assert first != fingerprint(keyring, sealing=SEALING_V1, secret_arn=OTHER_SECRET_ARN)


def test_fingerprints_differ_across_keyrings_so_they_cannot_be_guessed_offline() -> None:
    assert fingerprint(Keyring.in_memory()) != fingerprint(Keyring.in_memory())


def test_fingerprints_survive_key_rotation() -> None:
    keyring = Keyring.in_memory()
    before = fingerprint(keyring)

    keyring.rotate()

    assert fingerprint(keyring) == before


def test_a_fingerprint_of_an_unknown_kind_or_sealing_is_refused() -> None:
    with pytest.raises(ValueError, match="'string' or 'binary'"):
        fingerprint(Keyring.in_memory(), kind="text")
    with pytest.raises(ValueError, match="sealing format"):
        fingerprint(Keyring.in_memory(), sealing=3)


# --- Padding (S-2) ----------------------------------------------------------------------


def test_ciphertext_lengths_fall_on_the_documented_buckets() -> None:
    envelope = Envelope(Keyring.in_memory())
    lengths = {}
    for size_bytes in [*range(0, 300), 4095, 4096, 32_767, 32_768, 65_535, VALUE_SIZE_BYTES_MAX]:
        sealed = envelope.seal(
            b"v" * size_bytes, secret_arn=SECRET_ARN, version_id=VERSION_ID, kind="binary"
        )
        lengths[size_bytes] = len(sealed.ciphertext) - TAG_SIZE_BYTES
        assert open_sealed(envelope, sealed, kind="binary") == b"v" * size_bytes

    assert {lengths[n] for n in range(0, 32)} == {32}
    assert {lengths[n] for n in range(32, 64)} == {64}
    assert {lengths[n] for n in range(64, 128)} == {128}
    assert {lengths[n] for n in range(128, 256)} == {256}
    assert lengths[4095] == 4096 and lengths[4096] == 8192
    assert lengths[32_767] == 32_768 and lengths[32_768] == lengths[65_535] == 65_536
    assert lengths[VALUE_SIZE_BYTES_MAX] == PADDED_SIZE_BYTES_MAX == 131_072
    for size_bytes, padded_bytes in lengths.items():
        assert padded_bytes == padded_size_bytes(size_bytes)


def test_padding_is_iso_7816_4_and_malformed_padding_is_refused() -> None:
    assert pad(b"ab") == b"ab\x80" + bytes(29)
    assert unpad(pad(b"ab\x80\x00")) == b"ab\x80\x00"
    assert unpad(pad(b"")) == b""
    for malformed in [bytes(32), b"ab" + bytes(30), pad(b"ab") + bytes(32), b"\x80" + bytes(63)]:
        with pytest.raises(DecryptionError):
            unpad(malformed)


def test_a_v2_ciphertext_does_not_open_as_v1_nor_the_reverse() -> None:
    """The value domain tag is versioned: a sealing format cannot be mistaken for another."""
    envelope = Envelope(Keyring.in_memory())
    sealed = seal_canary(envelope)
    as_v1 = SealedValue(sealed.ciphertext, sealed.nonce, sealed.key_id, sealed.wrapped_key, 1)

    with pytest.raises(DecryptionError, match="does not authenticate"):
        open_sealed(envelope, as_v1)


# --- Plaintext never leaks -------------------------------------------------------------


def test_no_plaintext_appears_in_sealed_fields_or_the_keyring_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "keyring.json"
    keyring = Keyring.open(path)
    sealed = seal_canary(Envelope(keyring))
    stored = [sealed.ciphertext, sealed.nonce, sealed.key_id.encode(), sealed.wrapped_key]
    stored += [fingerprint(keyring), repr(sealed).encode(), path.read_bytes()]
    for blob in stored:
        assert CANARY not in blob
        assert CANARY[:16] not in blob


def test_no_plaintext_or_key_appears_in_decryption_error_messages() -> None:
    envelope = Envelope(Keyring.in_memory())
    sealed = seal_canary(envelope)
    tampered = SealedValue(
        flip_first_bit(sealed.ciphertext),
        sealed.nonce,
        sealed.key_id,
        sealed.wrapped_key,
        sealed.sealing,
    )

    with pytest.raises(DecryptionError) as wrong_version:
        open_sealed(envelope, sealed, version_id=OTHER_VERSION_ID)
    with pytest.raises(DecryptionError) as wrong_ciphertext:
        open_sealed(envelope, tampered)

    for failure in (wrong_version.value, wrong_ciphertext.value):
        message = str(failure)
        assert CANARY.decode() not in message
        assert CANARY[:16].decode() not in message
        assert sealed.wrapped_key.hex() not in message
        assert hides_its_cause(failure)
