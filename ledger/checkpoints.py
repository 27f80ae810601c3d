"""Signed checkpoints of the evidence log: their note, their JSON line, and chain checks.

A checkpoint is a C2SP tlog-checkpoint signed note (rules C1-C9 of docs/evidence.md)::

    <origin>
    <tree size>
    <base64 Merkle root>
    position <notification id of the last leaf, 0 for the empty log>
    chain <hex chain head>
    time <UTC time, RFC 3339 with microseconds and Z>
    previous <hex SHA-256 of the previous checkpoint's signed note, or none>

    — <origin> <base64(key id ‖ Ed25519 signature)>

The database and the exported checkpoint file store each checkpoint as one JSON line
(``to_line``) holding the signed note and the fields parsed from it. Nothing here
touches storage: callers read the lines and the log and pass them in.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ledger.merkle import EMPTY_ROOT, GENESIS_CHAIN_HASH, HASH_SIZE_BYTES
from ledger.signed_note import (
    NoteError,
    Signer,
    Verifier,
    format_key_id,
    open_note,
    parse_note,
    sign_note,
)

CHECKPOINT_LINE_SIZE_MAX: Final = 65_536
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
_TIME_PATTERN: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_DECIMAL_PATTERN: Final = re.compile(r"0|[1-9][0-9]{0,19}")
_HASH_HEX_PATTERN: Final = re.compile(r"[0-9a-f]{64}")
_TEXT_LINE_COUNT: Final = 7
_RECORD_FIELDS: Final = frozenset(
    {"origin", "tree_size", "root", "position", "chain_head", "time", "previous", "key_id", "note"}
)


class CheckpointError(ValueError):
    """A checkpoint (note or JSON line) is malformed, or may not be signed."""


@dataclass(frozen=True)
class Checkpoint:
    """A signed checkpoint: the fields of its note, the id of the log's key, the note."""

    origin: str
    tree_size: int
    root: bytes
    position: int
    chain_head: bytes
    time: datetime.datetime
    previous: bytes | None
    key_id: int
    note: str

    def __post_init__(self) -> None:
        assert len(self.root) == HASH_SIZE_BYTES, "a root is 32 bytes"
        assert len(self.chain_head) == HASH_SIZE_BYTES, "a chain head is 32 bytes"
        assert self.previous is None or len(self.previous) == HASH_SIZE_BYTES
        assert self.time.tzinfo is datetime.UTC, "checkpoint times are UTC"

    @property
    def note_hash(self) -> bytes:
        """C5: what the next checkpoint names as ``previous``."""
        return note_hash(self.note)


def note_hash(note: str) -> bytes:
    return hashlib.sha256(note.encode("utf-8")).digest()


def format_time(moment: datetime.datetime) -> str:
    """C3: RFC 3339 in UTC with microseconds and ``Z``."""
    if moment.tzinfo is None:
        raise CheckpointError("a checkpoint time must be timezone-aware")
    return moment.astimezone(datetime.UTC).strftime(_TIME_FORMAT)


def _parse_time(text: str) -> datetime.datetime:
    if _TIME_PATTERN.fullmatch(text) is None:
        raise CheckpointError(f"time {text[:40]!r} is not RFC 3339 UTC with microseconds and Z")
    try:
        moment = datetime.datetime.strptime(text, _TIME_FORMAT)
    except ValueError:
        raise CheckpointError(f"time {text!r} is not a valid date and time") from None
    return moment.replace(tzinfo=datetime.UTC)


def checkpoint_text(
    *,
    origin: str,
    tree_size: int,
    root: bytes,
    position: int,
    chain_head: bytes,
    time: datetime.datetime,
    previous: bytes | None,
) -> str:
    """C1-C3: the text a checkpoint's note signs."""
    assert tree_size >= 0 and position >= 0, "sizes and positions are not negative"
    assert len(root) == HASH_SIZE_BYTES and len(chain_head) == HASH_SIZE_BYTES
    return "".join(
        f"{line}\n"
        for line in (
            origin,
            str(tree_size),
            base64.b64encode(root).decode("ascii"),
            f"position {position}",
            f"chain {chain_head.hex()}",
            f"time {format_time(time)}",
            f"previous {previous.hex() if previous is not None else 'none'}",
        )
    )


def sign_checkpoint(
    signer: Signer,
    *,
    tree_size: int,
    root: bytes,
    position: int,
    chain_head: bytes,
    time: datetime.datetime,
    previous: Checkpoint | None,
) -> Checkpoint:
    """Sign the next checkpoint of the log named ``signer.name`` (C4, C6: never shrink)."""
    if previous is not None:
        _check_successor(previous, signer.name, tree_size, root, position, chain_head)
    note = sign_note(
        checkpoint_text(
            origin=signer.name,
            tree_size=tree_size,
            root=root,
            position=position,
            chain_head=chain_head,
            time=time,
            previous=previous.note_hash if previous is not None else None,
        ),
        [signer],
    )
    checkpoint = parse_checkpoint_note(note)
    assert checkpoint.key_id == signer.key_id, "the note names the signing key"
    return checkpoint


def _check_successor(
    previous: Checkpoint,
    origin: str,
    tree_size: int,
    root: bytes,
    position: int,
    chain_head: bytes,
) -> None:
    if previous.origin != origin:
        raise CheckpointError(f"the previous checkpoint is of {previous.origin}, not {origin}")
    if tree_size < previous.tree_size or position < previous.position:
        raise CheckpointError(
            f"tree size {tree_size} at position {position} would shrink the log from "
            f"{previous.tree_size} at {previous.position}"
        )
    if tree_size == previous.tree_size and (root, position, chain_head) != (
        previous.root,
        previous.position,
        previous.chain_head,
    ):
        raise CheckpointError(
            f"a second, different root, position or chain head for tree size {tree_size}"
        )


def parse_checkpoint_note(note: str) -> Checkpoint:
    """Parse a checkpoint's signed note (structure only; C1-C3, C7). Nothing is verified."""
    try:
        parsed = parse_note(note)
    except NoteError as error:
        raise CheckpointError(f"the checkpoint note is malformed: {error}") from None
    lines = parsed.text.split("\n")[:-1]
    if len(lines) != _TEXT_LINE_COUNT:
        raise CheckpointError(f"a checkpoint text has {_TEXT_LINE_COUNT} lines, not {len(lines)}")
    origin, size_text, root_text, *extensions = lines
    position_text, chain_text, time_text, previous_text = (
        _extension(line, keyword)
        for line, keyword in zip(extensions, ("position", "chain", "time", "previous"), strict=True)
    )
    own_signatures = [signature for signature in parsed.signatures if signature.name == origin]
    if len(own_signatures) != 1:
        raise CheckpointError(f"a checkpoint holds one signature by {origin[:64]!r}")
    checkpoint = Checkpoint(
        origin=origin,
        tree_size=_parse_decimal(size_text, "tree size"),
        root=_parse_root(root_text),
        position=_parse_decimal(position_text, "position"),
        chain_head=_parse_hash_hex(chain_text, "chain head"),
        time=_parse_time(time_text),
        previous=None if previous_text == "none" else _parse_hash_hex(previous_text, "previous"),
        key_id=own_signatures[0].key_id,
        note=note,
    )
    _check_empty_log(checkpoint)
    return checkpoint


def _extension(line: str, keyword: str) -> str:
    prefix = f"{keyword} "
    if not line.startswith(prefix):
        raise CheckpointError(f"expected a line {prefix!r}... in the checkpoint, got {line[:64]!r}")
    return line[len(prefix) :]


def _parse_decimal(text: str, what: str) -> int:
    if _DECIMAL_PATTERN.fullmatch(text) is None:
        raise CheckpointError(f"the {what} {text[:24]!r} is not a decimal without leading zeros")
    return int(text)


def _parse_root(text: str) -> bytes:
    try:
        value = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError("the root is not valid base64") from None
    if len(value) != HASH_SIZE_BYTES or base64.b64encode(value).decode("ascii") != text:
        raise CheckpointError(f"the root is not the base64 of {HASH_SIZE_BYTES} bytes")
    return value


def _parse_hash_hex(text: str, what: str) -> bytes:
    if _HASH_HEX_PATTERN.fullmatch(text) is None:
        raise CheckpointError(f"the {what} is not 64 lowercase hex digits")
    return bytes.fromhex(text)


def _check_empty_log(checkpoint: Checkpoint) -> None:
    """C7: the empty log has its fixed root, chain head and position; others a position."""
    if checkpoint.tree_size == 0:
        if (checkpoint.root, checkpoint.chain_head, checkpoint.position) != (
            EMPTY_ROOT,
            GENESIS_CHAIN_HASH,
            0,
        ):
            raise CheckpointError(
                "an empty log's checkpoint has the empty root, chain and position"
            )
    elif checkpoint.position < checkpoint.tree_size:
        raise CheckpointError(
            f"position {checkpoint.position} is below tree size {checkpoint.tree_size}: "
            "notification ids grow by at least one per leaf"
        )


def verify_checkpoint(checkpoint: Checkpoint, verifiers: Iterable[Verifier]) -> None:
    """C4: the note verifies and the log's own key (named after the origin) signed it."""
    try:
        opened = open_note(checkpoint.note, verifiers)
    except NoteError as error:
        raise CheckpointError(f"the checkpoint signature does not hold: {error}") from None
    if not any(
        signature.name == checkpoint.origin and signature.key_id == checkpoint.key_id
        for signature in opened.verified
    ):
        raise CheckpointError(
            f"the checkpoint is not signed by a known key of {checkpoint.origin} "
            f"(it names key {format_key_id(checkpoint.key_id)})"
        )


def _record(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "origin": checkpoint.origin,
        "tree_size": checkpoint.tree_size,
        "root": base64.b64encode(checkpoint.root).decode("ascii"),
        "position": checkpoint.position,
        "chain_head": checkpoint.chain_head.hex(),
        "time": format_time(checkpoint.time),
        "previous": checkpoint.previous.hex() if checkpoint.previous is not None else None,
        "key_id": format_key_id(checkpoint.key_id),
        "note": checkpoint.note,
    }


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def to_line(checkpoint: Checkpoint) -> str:
    """C8: one canonical JSON object on one line (no newline at the end)."""
    line = _canonical_json(_record(checkpoint))
    assert "\n" not in line, "a checkpoint line is one line"
    return line


def parse_checkpoint_line(line: str) -> Checkpoint:
    """C8: parse a JSON line; every field must equal the one parsed from its note."""
    if len(line) > CHECKPOINT_LINE_SIZE_MAX:
        raise CheckpointError(f"a checkpoint line is at most {CHECKPOINT_LINE_SIZE_MAX} characters")
    try:
        document = json.loads(line)
    except json.JSONDecodeError:
        raise CheckpointError("the checkpoint line is not valid JSON") from None
    if not isinstance(document, dict) or set(document) != _RECORD_FIELDS:
        raise CheckpointError(
            f"a checkpoint line holds exactly the fields {sorted(_RECORD_FIELDS)}"
        )
    if not isinstance(document["note"], str):
        raise CheckpointError("the checkpoint line's note is not a string")
    checkpoint = parse_checkpoint_note(document["note"])
    record = _record(checkpoint)
    for field in sorted(_RECORD_FIELDS):
        if _canonical_json(document[field]) != _canonical_json(record[field]):
            raise CheckpointError(f"the line's {field} differs from the one in its signed note")
    return checkpoint


@dataclass(frozen=True)
class ChainProblem:
    """The first checkpoint of a sequence that does not hold, and why (C9)."""

    index: int
    reason: str


def verify_checkpoint_chain(
    checkpoints: Sequence[Checkpoint],
    verifiers: Sequence[Verifier],
    *,
    previous_note_hash: bytes | None = None,
) -> ChainProblem | None:
    """C9: check signatures, ``previous`` links and growth, in order; the first problem.

    ``previous_note_hash`` is what the first checkpoint must name as ``previous``
    (``None``: it must be the log's first checkpoint).
    """
    expected_previous = previous_note_hash
    for index, checkpoint in enumerate(checkpoints):
        earlier = checkpoints[index - 1] if index else None
        reason = _chain_link_problem(checkpoint, earlier, expected_previous, verifiers)
        if reason is not None:
            return ChainProblem(index, reason)
        expected_previous = checkpoint.note_hash
    return None


def _chain_link_problem(
    checkpoint: Checkpoint,
    earlier: Checkpoint | None,
    expected_previous: bytes | None,
    verifiers: Sequence[Verifier],
) -> str | None:
    try:
        verify_checkpoint(checkpoint, verifiers)
    except CheckpointError as error:
        return str(error)
    if checkpoint.previous != expected_previous:
        named = checkpoint.previous.hex() if checkpoint.previous is not None else "none"
        if expected_previous is None:
            return f"it names previous {named}, but it should be the log's first checkpoint"
        return (
            f"it names previous {named}, but the checkpoint before it hashes to "
            f"{expected_previous.hex()}"
        )
    if earlier is None:
        return None
    try:
        _check_successor(
            earlier,
            checkpoint.origin,
            checkpoint.tree_size,
            checkpoint.root,
            checkpoint.position,
            checkpoint.chain_head,
        )
    except CheckpointError as error:
        return str(error)
    return None
