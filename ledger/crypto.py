"""Envelope encryption of secret values and keyed fingerprints for idempotency.

Every secret version is encrypted with AES-256-GCM under a fresh random 256-bit
data key. The data key is wrapped (AES-256-GCM again) by a key-encryption key
(KEK) from a local keyring file, and the storage layer keeps the wrapped data
key beside the event log, never inside an event. Events then only hold the
ciphertext and its nonce. Rotating the KEK rewraps data keys, and no event is
rewritten.

Associated data binds every ciphertext to its place. The value ciphertext is
bound to (secret ARN, version id, kind), and so is the wrapped data key, which
is also bound to the id of the KEK that wrapped it. Moving a ciphertext or a
wrapped key to another secret, version or kind makes decryption fail. All
associated data is a length-prefixed sequence of fields that starts with a
domain tag, so value encryption, key wrapping and fingerprints can never be
confused with one another.

The fingerprint is an HMAC-SHA256, keyed by a separate random fingerprint key
from the keyring, over (secret ARN, version id, kind, value). An idempotent retry
names the version it created (its token), so the retry's fingerprint is compared
with that version's without decrypting anything; equal values in two versions
have unrelated fingerprints, so the database alone does not show a value coming
back. Without the keyring a fingerprint reveals nothing and cannot be checked
against guessed values offline. The fingerprint key is never rotated, because
rotating it would invalidate every stored fingerprint.

Sealing formats (``sealing``, stored in every ``VersionCreated`` event; rules S-1
to S-3 in docs/events.md):

* **1** (``SEALING_V1``, versions written before padding): the plaintext is
  sealed as is (ciphertext length = value length + 16) under the value domain tag
  ``secret-ledger/value/v1``; the fingerprint binds the secret ARN only
  (``secret-ledger/fingerprint/v1``), so equal values of one secret were equal.
  Read and compared, never written any more.
* **2** (``SEALING_V2``, every new version): the plaintext is padded to its size
  bucket (:func:`pad`) before sealing, under ``secret-ledger/value/v2``, and the
  fingerprint binds the secret ARN and the version id
  (``secret-ledger/fingerprint/v2``).

Padding (S-2): ISO/IEC 7816-4: one 0x80 byte, then zero bytes up to the bucket,
the smallest power of two that holds the value plus the 0x80 byte, and at least
``PADDED_SIZE_BYTES_MIN`` (32). A value of n bytes is stored in
``max(32, 2**ceil(log2(n + 1)))`` bytes plus the 16-byte tag, so the database
tells only its bucket: 0-31 bytes, 32-63, 64-127, ..., 32,768-65,535, and 65,536.

Keyring file (JSON, mode 0600)::

    {"format": 1,
     "active_key_id": "kek-20240101T000000Z-a1b2c3",
     "key_encryption_keys": {"kek-20240101T000000Z-a1b2c3": "<base64 of 32 bytes>"},
     "fingerprint_key": "<base64 of 32 bytes>"}

Choices made here:

* A file that grants group or others any permission bit is refused. Checking
  the owner is left out, because tests and containers often run as root.
* The path is resolved (symbolic links followed) once when the keyring is
  opened, so a rotation replaces the real file and leaves a link in place.
* (File handling lives in ``ledger/private_files.py``.) A missing file is created
  with ``os.open(O_CREAT | O_EXCL, 0o600)`` on a
  temporary name, filled, fsynced and then hard-linked to its final name.
  The link fails if the name exists, so two processes that race to create the
  keyring both end up with the one that won, and no reader ever sees a
  half-written file. A missing parent directory is created with mode 0700.
* Rotation holds an exclusive ``flock`` on a sidecar file ``<keyring>.lock``
  (waiting a bounded time for it) and re-reads the file under that lock. Two
  processes that rotate at the same time therefore cannot drop each other's
  keys, and a lost KEK would mean lost secrets.
* A file-backed keyring that is asked to unwrap under a key id it does not
  know re-reads its file once, so a long-running process picks up a rotation
  that another process (for example the CLI) made.
* Python cannot reliably wipe memory: plaintext and data keys live in
  ordinary ``bytes`` objects until they are garbage collected. They never
  reach a log, an exception message or a file.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import os
import pathlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.private_files import (
    create_private_file,
    exclusive_lock,
    read_private_file,
    replace_private_file,
)
from ledger.sealing import SEALING_CURRENT, SEALING_V1, SEALING_V2

KEYRING_FORMAT_VERSION = 1
KEY_SIZE_BYTES = 32
NONCE_SIZE_BYTES = 12
TAG_SIZE_BYTES = 16
WRAPPED_KEY_SIZE_BYTES = NONCE_SIZE_BYTES + KEY_SIZE_BYTES + TAG_SIZE_BYTES
FINGERPRINT_SIZE_BYTES = 32
VALUE_SIZE_BYTES_MAX = 65_536
"""The Secrets Manager limit for SecretString (UTF-8 bytes) and SecretBinary."""
PADDED_SIZE_BYTES_MIN = 32
PADDED_SIZE_BYTES_MAX = 2 * VALUE_SIZE_BYTES_MAX
"""The bucket of a value of the maximum size (65,536 bytes plus the 0x80 byte)."""
CIPHERTEXT_SIZE_BYTES_MAX = PADDED_SIZE_BYTES_MAX + TAG_SIZE_BYTES
PADDING_MARKER = 0x80
BINDING_FIELD_SIZE_BYTES_MAX = 2048
KEYRING_FILE_SIZE_BYTES_MAX = 1_048_576
KEY_ENCRYPTION_KEY_COUNT_MAX = 1000
VALUE_KINDS = frozenset({"string", "binary"})

_VALUE_DOMAINS = {SEALING_V1: b"secret-ledger/value/v1", SEALING_V2: b"secret-ledger/value/v2"}
_DATA_KEY_DOMAIN = b"secret-ledger/data-key/v1"
_FINGERPRINT_DOMAINS = {
    SEALING_V1: b"secret-ledger/fingerprint/v1",
    SEALING_V2: b"secret-ledger/fingerprint/v2",
}
_KEY_ID_PATTERN = re.compile(r"kek-\d{8}T\d{6}Z-[0-9a-f]{6}")
_LABEL = "keyring"


class KeyringError(Exception):
    """The keyring file is missing, unreadable, corrupt or too permissive, or a key id
    is unknown. Messages name the file and key ids only, never key bytes."""


class DecryptionError(Exception):
    """A ciphertext or wrapped key did not authenticate: wrong key, tampered bytes or
    different associated data. Messages never contain plaintext or key bytes."""


def encode_fields(*fields: bytes) -> bytes:
    """Encode fields unambiguously: each one is prefixed by its length as 4 big-endian bytes."""
    encoded = bytearray()
    for field in fields:
        assert len(field) < 2**32, "field too long to length-prefix"
        encoded += len(field).to_bytes(4, "big")
        encoded += field
    return bytes(encoded)


def _require_kind(kind: str) -> None:
    if kind not in VALUE_KINDS:
        raise ValueError(f"value kind must be 'string' or 'binary', not {kind!r}")


def _require_sealing(sealing: int) -> None:
    if sealing not in _VALUE_DOMAINS:
        raise ValueError(f"unknown sealing format {sealing!r}")


def padded_size_bytes(size_bytes: int) -> int:
    """The bucket of a value of ``size_bytes`` (S-2): the smallest power of two that
    holds it and the 0x80 marker, at least ``PADDED_SIZE_BYTES_MIN``."""
    assert 0 <= size_bytes <= VALUE_SIZE_BYTES_MAX, "a value is at most 64 KiB"
    bucket = max(PADDED_SIZE_BYTES_MIN, 1 << size_bytes.bit_length())
    assert size_bytes < bucket <= PADDED_SIZE_BYTES_MAX
    return bucket


def pad(plaintext: bytes) -> bytes:
    """ISO/IEC 7816-4 padding to the value's bucket (S-2)."""
    bucket = padded_size_bytes(len(plaintext))
    return plaintext + bytes([PADDING_MARKER]) + bytes(bucket - len(plaintext) - 1)


def unpad(padded: bytes) -> bytes:
    """The value inside ``pad``'s output; DecryptionError if it is not well formed
    (only an authenticated plaintext is unpadded, so this means a bug or a forgery)."""
    content = padded.rstrip(b"\x00")
    if not content or content[-1] != PADDING_MARKER:
        raise DecryptionError("a padded value has no 0x80 marker")
    value = content[:-1]
    if padded_size_bytes(len(value)) != len(padded):
        raise DecryptionError("a padded value is not of its bucket's size")
    return value


def _binding_field(name: str, value: str) -> bytes:
    encoded = value.encode("utf-8")
    if not encoded:
        raise ValueError(f"{name} must not be empty")
    if len(encoded) > BINDING_FIELD_SIZE_BYTES_MAX:
        raise ValueError(f"{name} is longer than {BINDING_FIELD_SIZE_BYTES_MAX} bytes")
    return encoded


def version_binding(*, secret_arn: str, version_id: str, kind: str) -> bytes:
    """The canonical bytes that tie a value and its data key to one version of one secret."""
    _require_kind(kind)
    return encode_fields(
        _binding_field("secret ARN", secret_arn),
        _binding_field("version id", version_id),
        kind.encode("ascii"),
    )


def _new_key_id() -> str:
    timestamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"kek-{timestamp}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class _KeyringState:
    active_key_id: str
    key_encryption_keys: dict[str, bytes]
    fingerprint_key: bytes

    def __post_init__(self) -> None:
        assert self.active_key_id in self.key_encryption_keys, "active key id has no key"
        assert len(self.fingerprint_key) == KEY_SIZE_BYTES, "fingerprint key size"
        assert all(len(key) == KEY_SIZE_BYTES for key in self.key_encryption_keys.values())

    def __repr__(self) -> str:
        return f"_KeyringState(active_key_id={self.active_key_id!r})"

    @classmethod
    def generate(cls) -> _KeyringState:
        key_id = _new_key_id()
        return cls(
            active_key_id=key_id,
            key_encryption_keys={key_id: AESGCM.generate_key(bit_length=256)},
            fingerprint_key=secrets.token_bytes(KEY_SIZE_BYTES),
        )

    def with_new_key(self) -> _KeyringState:
        if len(self.key_encryption_keys) >= KEY_ENCRYPTION_KEY_COUNT_MAX:
            raise KeyringError(
                f"keyring already holds {KEY_ENCRYPTION_KEY_COUNT_MAX} key-encryption keys"
            )
        key_id = _new_key_id()
        while key_id in self.key_encryption_keys:
            key_id = _new_key_id()
        keys = dict(self.key_encryption_keys)
        keys[key_id] = AESGCM.generate_key(bit_length=256)
        return _KeyringState(key_id, keys, self.fingerprint_key)

    def is_extended_by(self, other: _KeyringState) -> bool:
        """Whether ``other`` still holds every key of this state, unchanged."""
        return other.fingerprint_key == self.fingerprint_key and all(
            other.key_encryption_keys.get(key_id) == key
            for key_id, key in self.key_encryption_keys.items()
        )

    def to_json_bytes(self) -> bytes:
        document = {
            "format": KEYRING_FORMAT_VERSION,
            "active_key_id": self.active_key_id,
            "key_encryption_keys": {
                key_id: base64.b64encode(key).decode("ascii")
                for key_id, key in self.key_encryption_keys.items()
            },
            "fingerprint_key": base64.b64encode(self.fingerprint_key).decode("ascii"),
        }
        return json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n"

    @classmethod
    def from_json_bytes(cls, content: bytes, *, source: str) -> _KeyringState:
        try:
            document = json.loads(content)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise KeyringError(f"keyring {source} is not valid JSON") from None
        if not isinstance(document, dict):
            raise KeyringError(f"keyring {source} is not a JSON object")
        if document.get("format") != KEYRING_FORMAT_VERSION:
            raise KeyringError(
                f"keyring {source} has an unsupported format (expected {KEYRING_FORMAT_VERSION})"
            )
        active_key_id = document.get("active_key_id")
        encoded_keys = document.get("key_encryption_keys")
        if not isinstance(encoded_keys, dict) or not encoded_keys:
            raise KeyringError(f"keyring {source} has no key-encryption keys")
        if len(encoded_keys) > KEY_ENCRYPTION_KEY_COUNT_MAX:
            raise KeyringError(f"keyring {source} holds too many key-encryption keys")
        keys = {
            _parse_key_id(key_id, source=source): _decode_key(encoded, source=source)
            for key_id, encoded in encoded_keys.items()
        }
        if not isinstance(active_key_id, str) or active_key_id not in keys:
            raise KeyringError(f"keyring {source} names an active key id that it does not hold")
        fingerprint_key = _decode_key(document.get("fingerprint_key"), source=source)
        return cls(active_key_id, keys, fingerprint_key)


def _parse_key_id(key_id: str, *, source: str) -> str:
    if _KEY_ID_PATTERN.fullmatch(key_id) is None:
        raise KeyringError(f"keyring {source} holds a malformed key id {key_id[:64]!r}")
    return key_id


def _decode_key(encoded: Any, *, source: str) -> bytes:
    if not isinstance(encoded, str):
        raise KeyringError(f"keyring {source} holds a key that is not a base64 string")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"keyring {source} holds a key that is not valid base64") from None
    if len(key) != KEY_SIZE_BYTES:
        raise KeyringError(f"keyring {source} holds a key that is not {KEY_SIZE_BYTES} bytes")
    return key


def _read_keyring_file(path: pathlib.Path) -> bytes:
    return read_private_file(
        path, label=_LABEL, size_bytes_max=KEYRING_FILE_SIZE_BYTES_MAX, error=KeyringError
    )


class Keyring:
    """Key-encryption keys (by id, one of them active) and the fingerprint key.

    A keyring is either backed by a private file (``Keyring.open``) or lives only in
    memory (``Keyring.in_memory``, for tests and the memory backend).
    """

    def __init__(self, state: _KeyringState, path: pathlib.Path | None) -> None:
        self._state = state
        self._path = path
        # An AES-GCM context for each key-encryption key used so far: a key id
        # always names the same key (`_adopt` keeps every key unchanged).
        self._ciphers: dict[str, AESGCM] = {}

    def __repr__(self) -> str:
        return f"Keyring(path={self._path!r}, active_key_id={self._state.active_key_id!r})"

    @classmethod
    def open(cls, path: pathlib.Path, *, create: bool = True) -> Keyring:
        """Load the keyring at ``path``, creating it (mode 0600) when missing and ``create``."""
        resolved = pathlib.Path(os.path.realpath(path))
        if not resolved.exists():
            if not create:
                raise KeyringError(f"keyring {resolved} does not exist")
            cls._create_file(resolved)
        content = _read_keyring_file(resolved)
        return cls(_KeyringState.from_json_bytes(content, source=str(resolved)), resolved)

    @classmethod
    def in_memory(cls) -> Keyring:
        return cls(_KeyringState.generate(), None)

    @staticmethod
    def _create_file(path: pathlib.Path) -> None:
        """Publish a fresh keyring at ``path`` unless some other process already did."""
        content = _KeyringState.generate().to_json_bytes()
        create_private_file(path, content, label=_LABEL, error=KeyringError)

    @property
    def path_text(self) -> str:
        """The file the keyring was read from, for messages (``(memory)`` if none)."""
        return str(self._path) if self._path is not None else "(memory)"

    @property
    def active_key_id(self) -> str:
        return self._state.active_key_id

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._state.key_encryption_keys)

    def rotate(self) -> str:
        """Add a new key-encryption key, make it active and persist; old keys stay for unwrap."""
        if self._path is None:
            self._state = self._state.with_new_key()
            return self._state.active_key_id
        with exclusive_lock(self._path, label=_LABEL, error=KeyringError):
            self._adopt(self._read_file_state())
            rotated = self._state.with_new_key()
            self._persist(rotated)
            self._state = rotated
        return self._state.active_key_id

    def _read_file_state(self) -> _KeyringState:
        assert self._path is not None, "only a file-backed keyring has a file"
        content = _read_keyring_file(self._path)
        return _KeyringState.from_json_bytes(content, source=str(self._path))

    def _adopt(self, state: _KeyringState) -> None:
        """Switch to ``state`` read from the file, provided it lost none of our keys."""
        if not self._state.is_extended_by(state):
            raise KeyringError(
                f"keyring {self._path} no longer holds every key this process loaded from it"
            )
        self._state = state

    def _persist(self, state: _KeyringState) -> None:
        assert self._path is not None, "only a file-backed keyring is persisted"
        replace_private_file(self._path, state.to_json_bytes(), label=_LABEL, error=KeyringError)

    def _key_encryption_key(self, key_id: str) -> bytes:
        key = self._state.key_encryption_keys.get(key_id)
        if key is None and self._path is not None:
            self._adopt(self._read_file_state())  # another process may have rotated
            key = self._state.key_encryption_keys.get(key_id)
        if key is None:
            raise KeyringError(f"keyring {self._path or '(memory)'} has no key with id {key_id!r}")
        return key

    def _cipher(self, key_id: str) -> AESGCM:
        """The AES-GCM context of the KEK ``key_id`` (KeyringError if none)."""
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            cipher = self._ciphers.setdefault(key_id, AESGCM(self._key_encryption_key(key_id)))
        return cipher

    def wrap(self, data_key: bytes, *, associated_data: bytes) -> tuple[str, bytes]:
        """Encrypt ``data_key`` under the active KEK; returns (key id, nonce || ciphertext)."""
        if len(data_key) != KEY_SIZE_BYTES:
            raise ValueError(f"a data key must be {KEY_SIZE_BYTES} bytes")
        key_id = self._state.active_key_id
        nonce = os.urandom(NONCE_SIZE_BYTES)
        wrapped = self._cipher(key_id).encrypt(
            nonce, data_key, _wrapping_associated_data(key_id, associated_data)
        )
        return key_id, nonce + wrapped

    def unwrap(self, key_id: str, wrapped_key: bytes, *, associated_data: bytes) -> bytes:
        """Decrypt a data key wrapped by ``wrap`` under the KEK ``key_id``."""
        cipher = self._cipher(key_id)
        if len(wrapped_key) != WRAPPED_KEY_SIZE_BYTES:
            raise DecryptionError(
                f"wrapped data key is {len(wrapped_key)} bytes, expected {WRAPPED_KEY_SIZE_BYTES}"
            )
        nonce, ciphertext = wrapped_key[:NONCE_SIZE_BYTES], wrapped_key[NONCE_SIZE_BYTES:]
        try:
            data_key = cipher.decrypt(
                nonce, ciphertext, _wrapping_associated_data(key_id, associated_data)
            )
        except InvalidTag:
            raise DecryptionError(
                f"data key wrapped under {key_id!r} does not authenticate: "
                "wrong key-encryption key, tampered key or different associated data"
            ) from None
        assert len(data_key) == KEY_SIZE_BYTES, "an authenticated data key has the wrong size"
        return data_key

    def fingerprint(
        self, *, sealing: int, secret_arn: str, version_id: str, kind: str, value: bytes
    ) -> bytes:
        """HMAC-SHA256 under the keyring's fingerprint key over, for sealing format 2,
        (secret ARN, version id, kind, value); for format 1 (S-3: stored versions
        only), (secret ARN, kind, value), ``version_id`` unused.

        Compare fingerprints with ``hmac.compare_digest``.
        """
        _require_kind(kind)
        _require_sealing(sealing)
        if len(value) > VALUE_SIZE_BYTES_MAX:
            raise ValueError(f"a secret value is at most {VALUE_SIZE_BYTES_MAX} bytes")
        binding = [_binding_field("secret ARN", secret_arn)]
        if sealing == SEALING_V2:
            binding.append(_binding_field("version id", version_id))
        message = encode_fields(
            _FINGERPRINT_DOMAINS[sealing], *binding, kind.encode("ascii"), value
        )
        digest = hmac.new(self._state.fingerprint_key, message, hashlib.sha256).digest()
        assert len(digest) == FINGERPRINT_SIZE_BYTES
        return digest


def _wrapping_associated_data(key_id: str, associated_data: bytes) -> bytes:
    return encode_fields(_DATA_KEY_DOMAIN, key_id.encode("ascii"), associated_data)


@dataclass(frozen=True)
class SealedValue:
    """What is stored for one encrypted value. Holds no plaintext and no clear key."""

    ciphertext: bytes  # AES-256-GCM output, tag included
    nonce: bytes  # 12 bytes
    key_id: str  # id of the KEK that wrapped the data key
    wrapped_key: bytes  # nonce || AES-256-GCM(data key) under that KEK
    sealing: int  # the sealing format (SEALING_V1, SEALING_V2)

    def __post_init__(self) -> None:
        assert len(self.nonce) == NONCE_SIZE_BYTES, "nonce size"
        assert len(self.wrapped_key) == WRAPPED_KEY_SIZE_BYTES, "wrapped key size"
        assert TAG_SIZE_BYTES <= len(self.ciphertext) <= CIPHERTEXT_SIZE_BYTES_MAX
        assert self.sealing in _VALUE_DOMAINS, "a known sealing format"


class Envelope:
    """Seals and opens secret values with one data key per version, wrapped by the keyring."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def seal(self, plaintext: bytes, *, secret_arn: str, version_id: str, kind: str) -> SealedValue:
        """Seal in the current format (``SEALING_CURRENT``): padded to its bucket."""
        if len(plaintext) > VALUE_SIZE_BYTES_MAX:
            raise ValueError(f"a secret value is at most {VALUE_SIZE_BYTES_MAX} bytes")
        sealing = SEALING_CURRENT
        binding = version_binding(secret_arn=secret_arn, version_id=version_id, kind=kind)
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_SIZE_BYTES)
        ciphertext = AESGCM(data_key).encrypt(
            nonce, pad(plaintext), _value_associated_data(sealing, binding)
        )
        key_id, wrapped_key = self._keyring.wrap(data_key, associated_data=binding)
        return SealedValue(ciphertext, nonce, key_id, wrapped_key, sealing)

    def open(
        self,
        *,
        ciphertext: bytes,
        nonce: bytes,
        key_id: str,
        wrapped_key: bytes,
        secret_arn: str,
        version_id: str,
        kind: str,
        sealing: int,
    ) -> bytes:
        """The value of a version sealed in format ``sealing`` (1: as is; 2: unpadded)."""
        _require_sealing(sealing)
        binding = version_binding(secret_arn=secret_arn, version_id=version_id, kind=kind)
        if len(nonce) != NONCE_SIZE_BYTES:
            raise DecryptionError(f"nonce is {len(nonce)} bytes, expected {NONCE_SIZE_BYTES}")
        if not TAG_SIZE_BYTES <= len(ciphertext) <= CIPHERTEXT_SIZE_BYTES_MAX:
            raise DecryptionError(f"ciphertext of {len(ciphertext)} bytes is out of bounds")
        data_key = self._keyring.unwrap(key_id, wrapped_key, associated_data=binding)
        try:
            plaintext = AESGCM(data_key).decrypt(
                nonce, ciphertext, _value_associated_data(sealing, binding)
            )
        except InvalidTag:
            raise DecryptionError(
                f"value of version {version_id!r} of {secret_arn!r} does not authenticate: "
                "tampered ciphertext or different associated data"
            ) from None
        return plaintext if sealing == SEALING_V1 else unpad(plaintext)

    def opens_data_key(
        self, *, key_id: str, wrapped_key: bytes, secret_arn: str, version_id: str, kind: str
    ) -> bool:
        """Whether the keyring unwraps this version's data key (nothing is decrypted)."""
        binding = version_binding(secret_arn=secret_arn, version_id=version_id, kind=kind)
        try:
            self._keyring.unwrap(key_id, wrapped_key, associated_data=binding)
        except (DecryptionError, KeyringError):
            return False
        return True

    def rewrap(
        self, *, key_id: str, wrapped_key: bytes, secret_arn: str, version_id: str, kind: str
    ) -> tuple[str, bytes]:
        """Unwrap under KEK ``key_id`` and wrap again under the active KEK.

        The value ciphertext is untouched, so no event changes. A key already under the
        active KEK is rewrapped too (with a fresh nonce); callers may skip those.
        """
        binding = version_binding(secret_arn=secret_arn, version_id=version_id, kind=kind)
        data_key = self._keyring.unwrap(key_id, wrapped_key, associated_data=binding)
        return self._keyring.wrap(data_key, associated_data=binding)


def _value_associated_data(sealing: int, binding: bytes) -> bytes:
    return encode_fields(_VALUE_DOMAINS[sealing], binding)
