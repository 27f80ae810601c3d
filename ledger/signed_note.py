"""Signed notes (C2SP signed-note v1) with Ed25519 keys: sign, parse and verify.

A note is a text followed by a blank line and one signature line per signer::

    <text ending in a newline>
    <empty line>
    — <key name> <base64(key id ‖ signature)>

The rules this module applies are N1-N8 of docs/evidence.md: the text and names
allowed, how a key id is derived, the verifier key ("vkey") format, and what makes a
note verify against a set of known keys (unknown keys are ignored, a known key that
does not verify fails the note, and at least one known key must verify).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SIGNATURE_TYPE_ED25519: Final = 0x01
KEY_ID_SIZE_BYTES: Final = 4
ED25519_KEY_SIZE_BYTES: Final = 32
ED25519_SIGNATURE_SIZE_BYTES: Final = 64
SIGNATURES_PER_NOTE_MAX: Final = 100
SIGNATURE_LINE_PREFIX: Final = "\u2014 "  # EM DASH, then a space
_KEY_ID_PATTERN: Final = re.compile(r"[0-9a-f]{8}")


class NoteError(ValueError):
    """A note, key name or verifier key is malformed, or a note does not verify."""


def check_key_name(name: str) -> None:
    """N3: a key name is non-empty and has no whitespace, ``+`` or control character."""
    if not name:
        raise NoteError("a key name must not be empty")
    if "+" in name or any(character.isspace() for character in name):
        raise NoteError(f"key name {name[:64]!r} holds a space or '+'")
    check_text_characters(name)


def check_text_characters(text: str) -> None:
    """N1: valid UTF-8 and no control character other than the newline."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError("a note must be valid UTF-8") from None
    for character in text:
        if character != "\n" and unicodedata.category(character) == "Cc":
            raise NoteError(f"a note must not hold the control character U+{ord(character):04X}")


def key_id(name: str, public_key: bytes) -> int:
    """N4: first 4 bytes, big-endian, of SHA-256(name ‖ newline ‖ 0x01 ‖ public key)."""
    assert len(public_key) == ED25519_KEY_SIZE_BYTES, "Ed25519 public keys are 32 bytes"
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([SIGNATURE_TYPE_ED25519]) + public_key
    ).digest()
    return int.from_bytes(digest[:KEY_ID_SIZE_BYTES], "big")


def format_key_id(value: int) -> str:
    """A key id as 8 lowercase hex digits, as vkeys and checkpoint records write it."""
    assert 0 <= value < 2 ** (8 * KEY_ID_SIZE_BYTES), "a key id is a 32-bit number"
    return f"{value:08x}"


def parse_key_id(text: str) -> int:
    if _KEY_ID_PATTERN.fullmatch(text) is None:
        raise NoteError(f"key id {text[:16]!r} is not 8 lowercase hex digits")
    return int(text, 16)


def _decode_base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not valid base64") from None


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: who (key name and id) and the signature bytes."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        payload = self.key_id.to_bytes(KEY_ID_SIZE_BYTES, "big") + self.signature
        return f"{SIGNATURE_LINE_PREFIX}{self.name} {base64.b64encode(payload).decode('ascii')}\n"


@dataclass(frozen=True)
class Note:
    """A parsed note: its text (final newline included) and signatures, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def render(self) -> str:
        return self.text + "\n" + "".join(signature.line() for signature in self.signatures)


@dataclass(frozen=True)
class Verifier:
    """A known Ed25519 key of a signer (N5: written as a vkey)."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != ED25519_KEY_SIZE_BYTES:
            raise NoteError(f"an Ed25519 public key is {ED25519_KEY_SIZE_BYTES} bytes")

    @property
    def key_id(self) -> int:
        return key_id(self.name, self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse ``<name>+<8 hex key id>+base64(0x01 ‖ public key)``."""
        parts = vkey.split("+", 2)  # the base64 part may itself hold '+'
        if len(parts) != 3:
            raise NoteError("a verifier key has the form <name>+<key id>+<base64 key>")
        name, id_text, encoded = parts
        stated_id = parse_key_id(id_text)
        decoded = _decode_base64(encoded, "the verifier key")
        if len(decoded) != 1 + ED25519_KEY_SIZE_BYTES or decoded[0] != SIGNATURE_TYPE_ED25519:
            raise NoteError("the verifier key is not an Ed25519 key (type 0x01, 32 bytes)")
        verifier = cls(name, decoded[1:])
        if verifier.key_id != stated_id:
            raise NoteError(f"verifier key {name}+{id_text} states a key id its key does not have")
        return verifier

    def vkey(self) -> str:
        encoded = base64.b64encode(bytes([SIGNATURE_TYPE_ED25519]) + self.public_key)
        return f"{self.name}+{format_key_id(self.key_id)}+{encoded.decode('ascii')}"

    def verifies(self, text: str, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``text``."""
        public_key = Ed25519PublicKey.from_public_bytes(self.public_key)
        try:
            public_key.verify(signature, text.encode("utf-8"))
        except InvalidSignature:
            return False
        return True


class Signer:
    """N8: an Ed25519 signing key under a key name. The seed never shows in ``repr``."""

    def __init__(self, name: str, seed: bytes) -> None:
        check_key_name(name)
        if len(seed) != ED25519_KEY_SIZE_BYTES:
            raise NoteError(f"an Ed25519 seed is {ED25519_KEY_SIZE_BYTES} bytes")
        self.name = name
        self._private_key = Ed25519PrivateKey.from_private_bytes(seed)
        public_key = self._private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier = Verifier(name, public_key)

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_id={format_key_id(self.key_id)})"

    @property
    def key_id(self) -> int:
        return self.verifier.key_id

    def sign(self, text: str) -> NoteSignature:
        check_note_text(text)
        signature = self._private_key.sign(text.encode("utf-8"))
        return NoteSignature(self.name, self.key_id, signature)


def check_note_text(text: str) -> None:
    """N2: a note's text is non-empty, ends with a newline and meets N1."""
    if not text.endswith("\n"):
        raise NoteError("a note's text must end with a newline")
    check_text_characters(text)


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """The signed note: ``text``, a blank line and one signature line per signer."""
    if not 1 <= len(signers) <= SIGNATURES_PER_NOTE_MAX:
        raise NoteError(f"a note is signed by 1 to {SIGNATURES_PER_NOTE_MAX} keys")
    return Note(text, tuple(signer.sign(text) for signer in signers)).render()


def parse_note(note: str) -> Note:
    """N6: split a note into its text and signature lines (nothing is verified here)."""
    check_text_characters(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("a note needs a blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("a note must end with a signature line and a newline")
    lines = block[:-1].split("\n")
    if len(lines) > SIGNATURES_PER_NOTE_MAX:
        raise NoteError(f"a note holds at most {SIGNATURES_PER_NOTE_MAX} signatures")
    return Note(text, tuple(_parse_signature_line(line) for line in lines))


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(SIGNATURE_LINE_PREFIX):
        raise NoteError("a signature line starts with an em dash and a space")
    name, separator, encoded = line[len(SIGNATURE_LINE_PREFIX) :].partition(" ")
    if not separator or not encoded:
        raise NoteError("a signature line holds a key name, a space and base64")
    check_key_name(name)
    payload = _decode_base64(encoded, f"the signature of {name}")
    if len(payload) <= KEY_ID_SIZE_BYTES:
        raise NoteError(f"the signature of {name} is too short")
    return NoteSignature(
        name,
        int.from_bytes(payload[:KEY_ID_SIZE_BYTES], "big"),
        payload[KEY_ID_SIZE_BYTES:],
    )


@dataclass(frozen=True)
class OpenedNote:
    """A note that verified: its text, the signatures known keys checked, and the rest."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def open_note(note: str, verifiers: Iterable[Verifier]) -> OpenedNote:
    """N7: verify ``note`` against known keys; raise ``NoteError`` unless it holds."""
    known = _verifiers_by_id(verifiers)
    parsed = parse_note(note)
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    for signature in parsed.signatures:
        verifier = known.get((signature.name, signature.key_id))
        if verifier is None:
            if signature not in unverified:
                unverified.append(signature)
            continue
        if not verifier.verifies(parsed.text, signature.signature):
            raise NoteError(
                f"the signature of {signature.name}+{format_key_id(signature.key_id)} "
                "does not verify"
            )
        if signature not in verified:
            verified.append(signature)
    if not verified:
        raise NoteError("no signature of the note is by a known key")
    return OpenedNote(parsed.text, tuple(verified), tuple(unverified))


def _verifiers_by_id(verifiers: Iterable[Verifier]) -> dict[tuple[str, int], Verifier]:
    known: dict[tuple[str, int], Verifier] = {}
    for verifier in verifiers:
        identity = (verifier.name, verifier.key_id)
        if known.setdefault(identity, verifier) != verifier:
            raise NoteError(
                f"two different keys share the name and key id {verifier.name}+"
                f"{format_key_id(verifier.key_id)}"
            )
    return known
