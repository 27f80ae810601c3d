"""Inclusion and consistency proofs of the log, as JSON documents checked offline.

Format ``secret-ledger-proof/v1`` (rules PF1-PF9 of docs/evidence.md). An inclusion
proof shows that one stored event is a leaf of the tree a signed checkpoint names::

    {"format": "secret-ledger-proof/v1",
     "type": "inclusion",
     "event": {"position": 42,                       notification id
               "originator_id": "<UUID>",
               "originator_version": 3,
               "topic": "secretledger/VersionCreated",
               "state": "<base64 of the stored state: msgpack, ciphertext only>"},
     "leaf_index": 41,
     "audit_path": ["<base64 of 32 bytes>", ...],    leaf to root (M7)
     "checkpoint": "<the checkpoint's JSON line, exactly as stored (C8)>"}

A consistency proof shows that the tree of one signed checkpoint grew into the
tree of a later one, with no leaf changed::

    {"format": "secret-ledger-proof/v1",
     "type": "consistency",
     "first_checkpoint": "<JSON line>",
     "second_checkpoint": "<JSON line>",
     "proof": ["<base64 of 32 bytes>", ...]}          (M9)

The verifier takes nothing on trust from the document but its bytes: it recomputes
the leaf bytes and the leaf hash from the event's fields (M8), and takes a tree size
and root only from a checkpoint whose signature verifies with a public key it was
given (M12, C4). Generation reads the store in O(log n) lookups: one hash row, one
stored event, the checkpoints, and the perfect subtrees of the proof's plan (M6):
leaf hashes for level 0, stored Merkle nodes above (M5).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ledger.checkpoints import Checkpoint, CheckpointError, parse_checkpoint_line, verify_checkpoint
from ledger.merkle import (
    HASH_SIZE_BYTES,
    HashPlan,
    NodeKey,
    ProofError,
    consistency_plan,
    inclusion_plan,
    leaf_bytes,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from ledger.signing_keys import load_verifiers_pem
from ledger.storage import TREE_SIZE_MAX, EventHash, MsgpackTranscoder, StoredCheckpoint

PROOF_FORMAT: Final = "secret-ledger-proof/v1"
INCLUSION: Final = "inclusion"
CONSISTENCY: Final = "consistency"
PROOF_SIZE_BYTES_MAX: Final = 4_194_304
PROOF_HASHES_MAX: Final = 128  # a tree of 2**64 leaves needs at most 2 * 64
TOPIC_SIZE_MAX: Final = 1024
U64_LIMIT: Final = 2**64
_INCLUSION_FIELDS: Final = frozenset(
    {"format", "type", "event", "leaf_index", "audit_path", "checkpoint"}
)
_EVENT_FIELDS: Final = frozenset(
    {"position", "originator_id", "originator_version", "topic", "state"}
)
_CONSISTENCY_FIELDS: Final = frozenset(
    {"format", "type", "first_checkpoint", "second_checkpoint", "proof"}
)


class InvalidProof(ValueError):
    """A proof document is malformed or does not hold; the message says why."""


class ProofUnavailable(LookupError):
    """No proof can be made from the store (nothing there, not yet checkpointed, or
    the stored evidence is damaged); the message says what to do."""


@dataclass(frozen=True)
class ProvenEvent:
    """An event exactly as stored: its position and the four stored fields (M3)."""

    position: int
    originator_id: uuid.UUID
    originator_version: int
    topic: str
    state: bytes

    def leaf(self) -> bytes:
        return leaf_bytes(
            notification_id=self.position,
            originator_id=self.originator_id,
            originator_version=self.originator_version,
            topic=self.topic,
            state=self.state,
        )

    def version_id(self) -> str | None:
        """The ``version_id`` the stored state names, if any (decoded for display)."""
        try:
            state = MsgpackTranscoder().decode(self.state)
        except Exception:  # any state that does not decode simply names no version
            return None
        if isinstance(state, dict) and isinstance(state.get("version_id"), str):
            version_id: str = state["version_id"]
            return version_id
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "originator_id": str(self.originator_id),
            "originator_version": self.originator_version,
            "topic": self.topic,
            "state": _encode(self.state),
        }


@dataclass(frozen=True)
class InclusionProof:
    event: ProvenEvent
    leaf_index: int
    audit_path: tuple[bytes, ...]
    checkpoint_line: str

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PROOF_FORMAT,
            "type": INCLUSION,
            "event": self.event.to_json(),
            "leaf_index": self.leaf_index,
            "audit_path": [_encode(value) for value in self.audit_path],
            "checkpoint": self.checkpoint_line,
        }


@dataclass(frozen=True)
class ConsistencyProof:
    first_checkpoint_line: str
    second_checkpoint_line: str
    proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PROOF_FORMAT,
            "type": CONSISTENCY,
            "first_checkpoint": self.first_checkpoint_line,
            "second_checkpoint": self.second_checkpoint_line,
            "proof": [_encode(value) for value in self.proof],
        }


Proof = InclusionProof | ConsistencyProof


def _encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


# --------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------


class ProofStore(Protocol):
    """What generation reads: the application recorder of the ledger."""

    def select_notifications(
        self, start: int | None, limit: int, stop: int | None = None, topics: Sequence[str] = ()
    ) -> Sequence[Any]: ...

    def select_event_hash(self, notification_id: int) -> EventHash | None: ...

    def select_event_hashes(self, start: int, limit: int) -> list[EventHash]: ...

    def select_latest_checkpoint(self) -> StoredCheckpoint | None: ...

    def select_checkpoint_of_size(self, tree_size: int) -> StoredCheckpoint | None: ...

    def select_checkpoint_sizes_beside(self, tree_size: int) -> tuple[int | None, int | None]: ...

    def select_merkle_nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]: ...


def stored_event(store: ProofStore, position: int) -> ProvenEvent:
    """The event stored at ``position``, as stored; ``ProofUnavailable`` if none."""
    assert position >= 0, "positions are not negative"
    found = store.select_notifications(position, 1)
    if not found or found[0].id != position:
        raise ProofUnavailable(f"no event is stored at position {position}")
    record = found[0]
    originator_id = record.originator_id
    if not isinstance(originator_id, uuid.UUID):
        raise ProofUnavailable(
            f"the event at position {position} has a malformed originator id: "
            "run `secretledger verify`"
        )
    return ProvenEvent(
        position=position,
        originator_id=originator_id,
        originator_version=record.originator_version,
        topic=record.topic,
        state=bytes(record.state),
    )


def prove_inclusion(store: ProofStore, position: int) -> InclusionProof:
    """PF3: the event at ``position`` in the tree of the latest signed checkpoint."""
    event = stored_event(store, position)
    row = store.select_event_hash(position)
    if row is None:
        raise ProofUnavailable(
            f"the event at position {position} is not in the hash chain: run `secretledger verify`"
        )
    if leaf_hash(event.leaf()) != row.leaf_hash:
        raise ProofUnavailable(
            f"the event at position {position} differs from the one the hash chain "
            "recorded: run `secretledger verify`"
        )
    checkpoint_line, checkpoint = _latest_checkpoint(store)
    if checkpoint.tree_size <= row.leaf_index:
        raise ProofUnavailable(
            f"position {position} (leaf {row.leaf_index}) is not covered by the latest "
            f"checkpoint, of {checkpoint.tree_size} events up to position "
            f"{checkpoint.position}: run `secretledger checkpoint`, then prove it again"
        )
    path = _resolve(store, inclusion_plan(row.leaf_index, checkpoint.tree_size))
    try:  # PF9: a damaged node table gives an error, never a proof that fails elsewhere
        verify_inclusion(
            row.leaf_index, checkpoint.tree_size, leaf_hash(event.leaf()), path, checkpoint.root
        )
    except ProofError as error:
        raise _damaged(error) from None
    return InclusionProof(event, row.leaf_index, tuple(path), checkpoint_line)


def prove_consistency(
    store: ProofStore, first_size: int, second_size: int | None = None
) -> ConsistencyProof:
    """PF6: from the checkpoint of ``first_size`` events to the one of ``second_size``
    (default: the latest checkpoint). Sizes name stored checkpoints, each looked up
    alone: the cost does not grow with the number stored."""
    latest = store.select_latest_checkpoint()
    if latest is None:
        raise _no_checkpoint()
    first_line = _checkpoint_of_size(store, first_size)
    second_line = latest.line if second_size is None else _checkpoint_of_size(store, second_size)
    first, second = _parse_stored(first_line), _parse_stored(second_line)
    if first.tree_size > second.tree_size:
        raise ProofUnavailable(
            f"the checkpoint of {first.tree_size} events is later than the one of "
            f"{second.tree_size}: give the smaller size first"
        )
    proof = _resolve(store, consistency_plan(first.tree_size, second.tree_size))
    try:
        verify_consistency(first.tree_size, second.tree_size, first.root, second.root, proof)
    except ProofError as error:
        raise _damaged(error) from None
    return ConsistencyProof(first_line, second_line, tuple(proof))


def _no_checkpoint() -> ProofUnavailable:
    return ProofUnavailable("no checkpoint has been signed yet: run `secretledger checkpoint`")


def _damaged(error: ProofError) -> ProofUnavailable:
    return ProofUnavailable(
        f"the proof built from the stored evidence does not hold ({error}): the "
        "stored Merkle nodes or hash rows are damaged; run `secretledger verify`"
    )


def _parse_stored(line: str) -> Checkpoint:
    try:
        return parse_checkpoint_line(line)
    except CheckpointError as error:
        raise ProofUnavailable(
            f"a stored checkpoint is malformed ({error}): run `secretledger verify`"
        ) from None


def _latest_checkpoint(store: ProofStore) -> tuple[str, Checkpoint]:
    latest = store.select_latest_checkpoint()
    if latest is None:
        raise _no_checkpoint()
    return latest.line, _parse_stored(latest.line)


def _checkpoint_of_size(store: ProofStore, tree_size: int) -> str:
    """The latest stored checkpoint of exactly ``tree_size`` events (C6: one root each);
    otherwise ProofUnavailable naming the stored sizes nearest to it."""
    assert tree_size >= 0, "sizes are not negative"
    storable_size = min(tree_size, TREE_SIZE_MAX)
    found = store.select_checkpoint_of_size(storable_size) if tree_size == storable_size else None
    if found is not None:
        return found.line
    below, above = store.select_checkpoint_sizes_beside(storable_size)
    nearest = [
        f"{size} {side}" for size, side in ((below, "below"), (above, "above")) if size is not None
    ]
    shown = " and ".join(nearest)
    raise ProofUnavailable(f"no checkpoint of {tree_size} events is stored (nearest: {shown})")


def _resolve(store: ProofStore, plan: HashPlan) -> list[bytes]:
    """PF8: the plan's perfect subtrees, leaves from the hash rows, nodes at once."""
    keys = plan.keys()
    hashes = store.select_merkle_nodes([key for key in keys if key[0] >= 1])
    for level, node_index in keys:
        if level != 0:
            continue
        rows = store.select_event_hashes(node_index, 1)
        if rows and rows[0].leaf_index == node_index:
            hashes[(0, node_index)] = rows[0].leaf_hash
    missing = [key for key in keys if key not in hashes]
    if missing:
        level, node_index = missing[0]
        raise ProofUnavailable(
            f"the stored Merkle node at level {level}, index {node_index} is missing "
            f"({len(missing)} of {len(keys)} missing): the checkpoint writer stores them; "
            "run `secretledger verify`"
        )
    return plan.assemble(hashes)


# --------------------------------------------------------------------------------------
# Parsing and offline verification
# --------------------------------------------------------------------------------------


def parse_proof(text: str | bytes) -> Proof:
    """PF1, PF2: a proof document, strictly (every field, no other). ``InvalidProof``."""
    if len(text) > PROOF_SIZE_BYTES_MAX:
        raise InvalidProof(f"a proof is at most {PROOF_SIZE_BYTES_MAX} bytes")
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidProof("the proof is not valid JSON") from None
    if not isinstance(document, dict):
        raise InvalidProof("the proof is not a JSON object")
    if document.get("format") != PROOF_FORMAT:
        raise InvalidProof(f"the proof's format is not {PROOF_FORMAT!r}")
    kind = document.get("type")
    if kind == INCLUSION:
        _require_fields(document, _INCLUSION_FIELDS, "an inclusion proof")
        return InclusionProof(
            event=_parse_event(document["event"]),
            leaf_index=_parse_u64(document["leaf_index"], "leaf_index"),
            audit_path=_parse_hashes(document["audit_path"], "audit_path"),
            checkpoint_line=_parse_line(document["checkpoint"], "checkpoint"),
        )
    if kind == CONSISTENCY:
        _require_fields(document, _CONSISTENCY_FIELDS, "a consistency proof")
        return ConsistencyProof(
            first_checkpoint_line=_parse_line(document["first_checkpoint"], "first_checkpoint"),
            second_checkpoint_line=_parse_line(document["second_checkpoint"], "second_checkpoint"),
            proof=_parse_hashes(document["proof"], "proof"),
        )
    raise InvalidProof(f"the proof's type is neither {INCLUSION!r} nor {CONSISTENCY!r}")


def _require_fields(document: dict[str, Any], fields: frozenset[str], what: str) -> None:
    if set(document) != fields:
        raise InvalidProof(f"{what} holds exactly the fields {sorted(fields)}")


def _parse_event(value: Any) -> ProvenEvent:
    if not isinstance(value, dict):
        raise InvalidProof("the proof's event is not a JSON object")
    _require_fields(value, _EVENT_FIELDS, "the proof's event")
    originator_text = value["originator_id"]
    try:
        originator_id = uuid.UUID(originator_text) if isinstance(originator_text, str) else None
    except ValueError:
        originator_id = None
    if originator_id is None or str(originator_id) != originator_text:
        raise InvalidProof("the event's originator_id is not a UUID in its canonical form")
    topic = value["topic"]
    if not isinstance(topic, str) or not 0 < len(topic) <= TOPIC_SIZE_MAX:
        raise InvalidProof(f"the event's topic is not a string of 1 to {TOPIC_SIZE_MAX}")
    return ProvenEvent(
        position=_parse_u64(value["position"], "event position"),
        originator_id=originator_id,
        originator_version=_parse_u64(value["originator_version"], "originator_version"),
        topic=topic,
        state=_decode(value["state"], "the event's state"),
    )


def _parse_u64(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < U64_LIMIT:
        raise InvalidProof(f"the {what} is not an integer from 0 to 2**64 - 1")
    return value


def _parse_line(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidProof(f"the proof's {what} is not a checkpoint line (a string)")
    return value


def _decode(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidProof(f"{what} is not a base64 string")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidProof(f"{what} is not valid base64") from None
    if _encode(decoded) != value:
        raise InvalidProof(f"{what} is not in canonical base64")
    return decoded


def _parse_hashes(value: Any, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > PROOF_HASHES_MAX:
        raise InvalidProof(f"the proof's {what} is not a list of at most {PROOF_HASHES_MAX}")
    hashes = tuple(_decode(item, f"{what}[{index}]") for index, item in enumerate(value))
    for index, item in enumerate(hashes):
        if len(item) != HASH_SIZE_BYTES:
            raise InvalidProof(f"{what}[{index}] is not {HASH_SIZE_BYTES} bytes")
    return hashes


@dataclass(frozen=True)
class VerifiedInclusion:
    """What a valid inclusion proof showed: this event is in this signed tree."""

    event: ProvenEvent
    leaf_index: int
    checkpoint: Checkpoint


@dataclass(frozen=True)
class VerifiedConsistency:
    """What a valid consistency proof showed: the first signed tree grew into the second."""

    first: Checkpoint
    second: Checkpoint


def verify_proof(
    proof: Proof, public_keys_pem: str, *, origin: str | None = None
) -> VerifiedInclusion | VerifiedConsistency:
    """PF4-PF7: check a parsed proof offline with the log's public keys (PEM).

    ``origin``, when given, is the log the checkpoints must name. Raises ``InvalidProof``,
    or ``SigningKeyError`` when the PEM text holds no usable Ed25519 public key.
    """
    if isinstance(proof, InclusionProof):
        checkpoint = _verified_checkpoint(proof.checkpoint_line, public_keys_pem, origin)
        try:
            verify_inclusion(
                proof.leaf_index,
                checkpoint.tree_size,
                leaf_hash(proof.event.leaf()),
                proof.audit_path,
                checkpoint.root,
            )
        except ProofError as error:
            raise InvalidProof(
                f"the event at position {proof.event.position} is not leaf {proof.leaf_index} "
                f"of the signed tree of {checkpoint.tree_size} events: {error}"
            ) from None
        return VerifiedInclusion(proof.event, proof.leaf_index, checkpoint)
    first = _verified_checkpoint(proof.first_checkpoint_line, public_keys_pem, origin)
    second = _verified_checkpoint(proof.second_checkpoint_line, public_keys_pem, first.origin)
    try:
        verify_consistency(first.tree_size, second.tree_size, first.root, second.root, proof.proof)
    except ProofError as error:
        raise InvalidProof(
            f"the signed tree of {first.tree_size} events did not grow into the one of "
            f"{second.tree_size}: {error}"
        ) from None
    return VerifiedConsistency(first, second)


def _verified_checkpoint(line: str, public_keys_pem: str, origin: str | None) -> Checkpoint:
    """PF4: parse the line (C8), check its origin, then its signature (C4)."""
    try:
        checkpoint = parse_checkpoint_line(line)
    except CheckpointError as error:
        raise InvalidProof(f"the checkpoint is malformed: {error}") from None
    if origin is not None and checkpoint.origin != origin:
        raise InvalidProof(
            f"the checkpoint is of the log {checkpoint.origin[:64]!r}, not {origin[:64]!r}"
        )
    verifiers = load_verifiers_pem(public_keys_pem, origin=checkpoint.origin)
    try:
        verify_checkpoint(checkpoint, verifiers)
    except CheckpointError as error:
        raise InvalidProof(str(error)) from None
    return checkpoint
