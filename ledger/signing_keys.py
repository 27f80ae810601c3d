"""The checkpoint signing keys: a private file apart from the keyring, and public key export.

Signing-key file (JSON, mode 0600, rules K1-K5 of docs/evidence.md)::

    {"format": 1,
     "origin": "secret-ledger.local/1a2b3c4d",
     "active_key_id": "c62fdc89",
     "keys": [{"key_id": "c62fdc89", "created": "2024-01-01T00:00:00.000000Z",
               "seed": "<base64 of the 32-byte Ed25519 seed>"}]}

The origin (the log's name, and every key's name in signed notes) is chosen when the
file is created and never changes. Rotation adds a key and makes it active; older keys
stay so their public keys can still be exported to check old checkpoints. The file is
handled like the keyring (``ledger/private_files.py``): created exclusively, refused
when group or others have any permission bit, replaced atomically under a lock.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import pathlib
import re
import secrets
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from ledger.checkpoints import format_time
from ledger.private_files import (
    create_private_file,
    exclusive_lock,
    read_private_file,
    replace_private_file,
)
from ledger.signed_note import (
    ED25519_KEY_SIZE_BYTES,
    NoteError,
    Signer,
    Verifier,
    check_key_name,
    format_key_id,
)

SIGNING_KEYS_FORMAT_VERSION: Final = 1
SIGNING_KEY_FILE_SIZE_BYTES_MAX: Final = 1_048_576
SIGNING_KEY_COUNT_MAX: Final = 1000
DEFAULT_ORIGIN_PREFIX: Final = "secret-ledger.local/"
_LABEL: Final = "signing key file"
_TIME_PATTERN: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_PEM_BLOCK_PATTERN: Final = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL
)


class SigningKeyError(Exception):
    """The signing-key file is missing, corrupt or too permissive, or a PEM file is unusable.

    Messages name files and key ids only, never seeds."""


def default_origin() -> str:
    """K2: ``secret-ledger.local/`` and 8 random hex digits."""
    return f"{DEFAULT_ORIGIN_PREFIX}{secrets.token_hex(4)}"


@dataclass(frozen=True)
class SigningKeyInfo:
    """What ``SigningKeys.keys`` lists: public facts only."""

    key_id: int
    created: datetime.datetime
    active: bool
    verifier: Verifier


@dataclass(frozen=True)
class _StoredKey:
    created: datetime.datetime
    seed: bytes

    def __repr__(self) -> str:
        return f"_StoredKey(created={self.created!r})"


@dataclass(frozen=True)
class _SigningKeysState:
    origin: str
    active_key_id: int
    keys: dict[int, _StoredKey]  # by key id, in creation order

    def __post_init__(self) -> None:
        assert self.active_key_id in self.keys, "the active key is held"
        assert all(len(key.seed) == ED25519_KEY_SIZE_BYTES for key in self.keys.values())

    def signer(self, key_id: int) -> Signer:
        signer = Signer(self.origin, self.keys[key_id].seed)
        assert signer.key_id == key_id, "keys are filed under their own id"
        return signer

    @classmethod
    def generate(cls, origin: str) -> _SigningKeysState:
        """A new state with one key."""
        seed = secrets.token_bytes(ED25519_KEY_SIZE_BYTES)
        key_id = Signer(origin, seed).key_id
        return cls(origin, key_id, {key_id: _StoredKey(_now(), seed)})

    def with_new_key(self) -> _SigningKeysState:
        if len(self.keys) >= SIGNING_KEY_COUNT_MAX:
            raise SigningKeyError(
                f"the signing key file already holds {SIGNING_KEY_COUNT_MAX} keys"
            )
        seed = secrets.token_bytes(ED25519_KEY_SIZE_BYTES)
        key_id = Signer(self.origin, seed).key_id
        while key_id in self.keys:  # a 32-bit key id may collide: draw again
            seed = secrets.token_bytes(ED25519_KEY_SIZE_BYTES)
            key_id = Signer(self.origin, seed).key_id
        return _SigningKeysState(
            self.origin, key_id, {**self.keys, key_id: _StoredKey(_now(), seed)}
        )

    def to_json_bytes(self) -> bytes:
        document = {
            "format": SIGNING_KEYS_FORMAT_VERSION,
            "origin": self.origin,
            "active_key_id": format_key_id(self.active_key_id),
            "keys": [
                {
                    "key_id": format_key_id(key_id),
                    "created": format_time(key.created),
                    "seed": base64.b64encode(key.seed).decode("ascii"),
                }
                for key_id, key in self.keys.items()
            ],
        }
        return json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n"

    @classmethod
    def from_json_bytes(cls, content: bytes, *, source: str) -> _SigningKeysState:
        try:
            document = json.loads(content)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise SigningKeyError(f"{_LABEL} {source} is not valid JSON") from None
        if not isinstance(document, dict):
            raise SigningKeyError(f"{_LABEL} {source} is not a JSON object")
        if document.get("format") != SIGNING_KEYS_FORMAT_VERSION:
            raise SigningKeyError(
                f"{_LABEL} {source} has an unsupported format "
                f"(expected {SIGNING_KEYS_FORMAT_VERSION})"
            )
        origin = _parse_origin(document.get("origin"), source=source)
        entries = document.get("keys")
        if not isinstance(entries, list) or not 1 <= len(entries) <= SIGNING_KEY_COUNT_MAX:
            raise SigningKeyError(f"{_LABEL} {source} holds no list of 1 to 1000 keys")
        keys: dict[int, _StoredKey] = {}
        for entry in entries:
            key_id, key = _parse_key_entry(entry, origin, source=source)
            if keys.setdefault(key_id, key) is not key:
                raise SigningKeyError(f"{_LABEL} {source} holds key {format_key_id(key_id)} twice")
        active = document.get("active_key_id")
        if active not in {format_key_id(key_id) for key_id in keys}:
            raise SigningKeyError(f"{_LABEL} {source} names an active key it does not hold")
        return cls(origin, int(active, 16), keys)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _parse_origin(origin: Any, *, source: str) -> str:
    if not isinstance(origin, str):
        raise SigningKeyError(f"{_LABEL} {source} has no origin")
    try:
        check_key_name(origin)
    except NoteError as error:
        raise SigningKeyError(f"{_LABEL} {source} has an unusable origin: {error}") from None
    return origin


def _parse_key_entry(entry: Any, origin: str, *, source: str) -> tuple[int, _StoredKey]:
    if not isinstance(entry, dict) or set(entry) != {"key_id", "created", "seed"}:
        raise SigningKeyError(f"{_LABEL} {source} holds a key without key_id, created and seed")
    created = entry["created"]
    if not isinstance(created, str) or _TIME_PATTERN.fullmatch(created) is None:
        raise SigningKeyError(f"{_LABEL} {source} holds a key with a malformed creation time")
    seed = _decode_seed(entry["seed"], source=source)
    key_id = Signer(origin, seed).key_id
    if entry["key_id"] != format_key_id(key_id):
        raise SigningKeyError(f"{_LABEL} {source} files a key under an id that is not its own")
    moment = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%S.%fZ")
    return key_id, _StoredKey(moment.replace(tzinfo=datetime.UTC), seed)


def _decode_seed(encoded: Any, *, source: str) -> bytes:
    if not isinstance(encoded, str):
        raise SigningKeyError(f"{_LABEL} {source} holds a seed that is not a base64 string")
    try:
        seed = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError(f"{_LABEL} {source} holds a seed that is not valid base64") from None
    if len(seed) != ED25519_KEY_SIZE_BYTES:
        raise SigningKeyError(f"{_LABEL} {source} holds a seed that is not 32 bytes")
    return seed


class SigningKeys:
    """The log's Ed25519 checkpoint signing keys, kept in a private file."""

    def __init__(self, state: _SigningKeysState, path: pathlib.Path) -> None:
        self._state = state
        self._path = path

    def __repr__(self) -> str:
        return (
            f"SigningKeys(path={self._path!r}, origin={self._state.origin!r}, "
            f"active_key_id={format_key_id(self._state.active_key_id)})"
        )

    @classmethod
    def create(cls, path: pathlib.Path, *, origin: str | None = None) -> SigningKeys:
        """K1, K2: a new file with one key; refused if ``path`` exists."""
        chosen = default_origin() if origin is None else origin
        try:
            check_key_name(chosen)
        except NoteError as error:
            raise SigningKeyError(f"origin {chosen[:64]!r} is unusable: {error}") from None
        state = _SigningKeysState.generate(chosen)
        if not create_private_file(
            path, state.to_json_bytes(), label=_LABEL, error=SigningKeyError
        ):
            raise SigningKeyError(f"{_LABEL} {path} already exists; it is never overwritten")
        return cls(state, path)

    @classmethod
    def open(cls, path: pathlib.Path) -> SigningKeys:
        """K3: load the file, refusing one that group or others may access."""
        return cls(cls._read(path), path)

    @staticmethod
    def _read(path: pathlib.Path) -> _SigningKeysState:
        content = read_private_file(
            path,
            label=_LABEL,
            size_bytes_max=SIGNING_KEY_FILE_SIZE_BYTES_MAX,
            error=SigningKeyError,
        )
        return _SigningKeysState.from_json_bytes(content, source=str(path))

    @property
    def path(self) -> pathlib.Path:
        return self._path

    @property
    def origin(self) -> str:
        return self._state.origin

    @property
    def active_key_id(self) -> int:
        return self._state.active_key_id

    def signer(self) -> Signer:
        """The active key, ready to sign checkpoints."""
        return self._state.signer(self._state.active_key_id)

    def rotate(self) -> int:
        """K4: add a key and make it active (under the file's lock); its key id."""
        with exclusive_lock(self._path, label=_LABEL, error=SigningKeyError):
            current = self._read(self._path)
            if current.origin != self._state.origin or any(
                current.keys.get(key_id) != key for key_id, key in self._state.keys.items()
            ):
                raise SigningKeyError(
                    f"{_LABEL} {self._path} no longer holds every key this process loaded"
                )
            rotated = current.with_new_key()
            replace_private_file(
                self._path, rotated.to_json_bytes(), label=_LABEL, error=SigningKeyError
            )
            self._state = rotated
        return rotated.active_key_id

    def list_keys(self) -> list[SigningKeyInfo]:
        """Every key, oldest first, with its id, creation time and whether it is active."""
        return [
            SigningKeyInfo(
                key_id=key_id,
                created=key.created,
                active=key_id == self._state.active_key_id,
                verifier=self._state.signer(key_id).verifier,
            )
            for key_id, key in self._state.keys.items()
        ]

    def verifiers(self) -> list[Verifier]:
        return [info.verifier for info in self.list_keys()]

    def vkeys(self) -> list[str]:
        """K5: every public key as a C2SP verifier key, oldest first."""
        return [verifier.vkey() for verifier in self.verifiers()]

    def public_keys_pem(self) -> str:
        """K5: every public key as PEM SubjectPublicKeyInfo, oldest first."""
        return "".join(public_key_pem(verifier) for verifier in self.verifiers())


def public_key_pem(verifier: Verifier) -> str:
    public_key = Ed25519PublicKey.from_public_bytes(verifier.public_key)
    return public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def load_verifiers_pem(pem: str, *, origin: str) -> list[Verifier]:
    """K5: the Ed25519 public keys of a PEM file, as verifiers of the log ``origin``."""
    blocks = list(_PEM_BLOCK_PATTERN.finditer(pem))
    if not blocks:
        raise SigningKeyError("the PEM text holds no public key")
    verifiers: list[Verifier] = []
    for block in blocks:
        if block.group(1) != "PUBLIC KEY":
            raise SigningKeyError(f"the PEM text holds a {block.group(1)}, not only public keys")
        try:
            public_key = load_pem_public_key(block.group(0).encode("ascii"))
        except ValueError:
            raise SigningKeyError("the PEM text holds a public key that cannot be read") from None
        if not isinstance(public_key, Ed25519PublicKey):
            raise SigningKeyError("the PEM text holds a public key that is not Ed25519")
        raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        try:
            verifier = Verifier(origin, raw)
        except NoteError as error:
            raise SigningKeyError(f"origin {origin[:64]!r} is unusable: {error}") from None
        if verifier not in verifiers:
            verifiers.append(verifier)
    return verifiers
