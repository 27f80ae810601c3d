"""Evidence that the log was not edited: walking the chain, writing and checking checkpoints.

One walk (:class:`ChainWalk`) serves both the checkpoint writer (rules W1-W9 of
docs/evidence.md) and ``secretledger verify`` (rules V1-V9). It reads the stored
events in notification order beside the event-hash rows in leaf order, recomputes
every leaf from the stored bytes, and checks, leaf by leaf,

* that the leaf indexes are dense and that each row names the next stored event
  (an event the chain does not hold was *inserted*; a row whose event is gone
  names a *deleted* one; events before the chain's first leaf are *unchained*),
* that the recomputed leaf hash equals the stored one (else the event was
  *modified*, or *reordered* when its bytes belong at another position), and
* that the chain value links to the previous one (else the chain was *altered*),

while it feeds the leaf hashes into an RFC 6962 compact range, so that the
Merkle root and chain head at every checkpointed size can be compared with what
was signed. A log rewritten consistently (events and hash rows recomputed) still
differs from the checkpoints signed before the rewrite (*forged*), and a log
shorter than a checkpoint kept elsewhere was *truncated*.

The checkpoint writer signs only what it has walked: it resumes from the latest
checkpoint (its compact range rebuilt from stored nodes and checked against the
signed root), walks the new leaves, stores the perfect subtrees they complete
(for fast proofs) and signs the new head.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Protocol
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from ledger.checkpoints import (
    Checkpoint,
    CheckpointError,
    parse_checkpoint_line,
    sign_checkpoint,
    to_line,
    verify_checkpoint,
    verify_checkpoint_chain,
)
from ledger.merkle import (
    GENESIS_CHAIN_HASH,
    CompactRange,
    SubtreeNode,
    chain_hash,
    compact_range_keys,
    leaf_bytes,
    leaf_hash,
)
from ledger.private_files import fsync_directory
from ledger.signed_note import NoteError, Signer, Verifier, open_note, sign_note
from ledger.storage import EventHash, StoredCheckpoint

PAGE_SIZE: Final = 2_000
PROGRESS_STEP_LEAVES: Final = 20_000
REORDER_WINDOW_LEAVES: Final = 64
NODES_BATCH_SIZE: Final = 10_000
CHECKPOINT_FILE_MODE: Final = 0o644  # public facts, read by whatever ships it (W7)
ADOPTION_MARK: Final = "adopted-unchained"

# Problem kinds (docs/evidence.md, V3): stable strings for --json.
INSERTED: Final = "inserted"
DELETED: Final = "deleted"
MODIFIED: Final = "modified"
REORDERED: Final = "reordered"
CHAIN_ALTERED: Final = "chain-altered"
UNCHAINED: Final = "unchained"
FORGED: Final = "forged"
TRUNCATED: Final = "truncated"
CHECKPOINT_INVALID: Final = "checkpoint-invalid"
CHECKPOINT_MISSING: Final = "checkpoint-missing"
NODES_ALTERED: Final = "merkle-nodes-altered"


@dataclass(frozen=True)
class Problem:
    """The first thing found wrong: what, where (a notification id), and in words.

    ``checkpoint`` is the index of the checkpoint concerned, for checkpoint problems."""

    kind: str
    position: int | None
    detail: str
    checkpoint: int | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "intact": False,
            "position": self.position,
            "problem": self.detail,
            "kind": self.kind,
        }
        if self.checkpoint is not None:
            document["checkpoint"] = self.checkpoint
        return document


class Tampered(Exception):
    """The walk met a problem; the checkpoint writer refuses to sign past it."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.kind} at position {problem.position}: {problem.detail}")
        self.problem = problem


class StoredRecord(Protocol):
    """An event as stored (eventsourcing's ``Notification`` has these attributes)."""

    @property
    def id(self) -> int: ...

    @property
    def originator_id(self) -> UUID | str: ...

    @property
    def originator_version(self) -> int: ...

    @property
    def topic(self) -> str: ...

    @property
    def state(self) -> bytes: ...


class LogStore(Protocol):
    """What the walk reads: the application recorder of the ledger."""

    def select_notifications(
        self, start: int | None, limit: int, stop: int | None = None, topics: Sequence[str] = ()
    ) -> Sequence[Any]: ...

    def select_event_hashes(self, start: int, limit: int) -> list[EventHash]: ...

    def event_hash_count(self) -> int: ...


class CheckpointStore(LogStore, Protocol):
    """What the checkpoint writer also needs: the recorder's evidence tables."""

    def insert_checkpoint(self, sequence: int, tree_size: int, line: str) -> None: ...

    def select_checkpoints(self, start: int = 0) -> list[StoredCheckpoint]: ...

    def select_latest_checkpoint(self) -> StoredCheckpoint | None: ...

    def insert_merkle_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None: ...

    def select_merkle_nodes(
        self, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]: ...

    def adopt_unchained_events(self) -> int: ...


def record_leaf(record: StoredRecord, notification_id: int | None = None) -> bytes | None:
    """The leaf bytes of a stored record, optionally as if stored at another position;
    None when a field is not what the ledger writes (V4: an edited event)."""
    originator_id, topic, state = record.originator_id, record.topic, record.state
    if not (isinstance(originator_id, UUID) and isinstance(topic, str)):
        return None
    if not isinstance(state, bytes | memoryview):
        return None
    return leaf_bytes(
        notification_id=record.id if notification_id is None else notification_id,
        originator_id=originator_id,
        originator_version=record.originator_version,
        topic=topic,
        state=bytes(state),
    )


def stored_records(store: LogStore, after_position: int) -> Iterator[StoredRecord]:
    """Every stored event after ``after_position``, in notification order, page by page."""
    start = after_position + 1
    while True:
        page = store.select_notifications(start, PAGE_SIZE)
        yield from page
        if len(page) < PAGE_SIZE:
            return
        start = page[-1].id + 1


def hash_rows(store: LogStore, start_leaf_index: int, stop_leaf_index: int) -> Iterator[EventHash]:
    """The event-hash rows of leaves [start, stop), in leaf order, page by page."""
    start = start_leaf_index
    while start < stop_leaf_index:
        page = store.select_event_hashes(start, min(PAGE_SIZE, stop_leaf_index - start))
        yield from page
        if not page:
            return
        start = page[-1].leaf_index + 1


@dataclass
class ChainState:
    """Where a walk stands: leaves so far, the last chain value and position, the tree."""

    tree: CompactRange
    chain_head: bytes
    position: int

    @classmethod
    def genesis(cls) -> ChainState:
        return cls(CompactRange(), GENESIS_CHAIN_HASH, 0)

    @property
    def tree_size(self) -> int:
        return self.tree.size


@dataclass
class ChainWalk:
    """Walks stored events and hash rows from ``state`` on, checking each leaf (V1-V4).

    ``on_leaf``, if any, is called after every verified leaf with the perfect subtrees
    that leaf completed (the writer stores them).
    """

    store: LogStore
    state: ChainState
    on_leaf: Callable[[list[SubtreeNode]], None] | None

    def run(self, stop_leaf_index: int) -> None:
        """Walk the leaves below ``stop_leaf_index`` (the size taken before the walk, so
        that appends committed meanwhile are left for later), then check that the first
        stored event past them, if any, is one the chain holds by now (V6)."""
        records = stored_records(self.store, self.state.position)
        record = next(records, None)
        for row in hash_rows(self.store, self.state.tree_size, stop_leaf_index):
            if row.leaf_index != self.state.tree_size:
                raise Tampered(self._skipped(row))
            if record is None or record.id > row.notification_id:
                raise Tampered(self._deleted(row))
            if record.id < row.notification_id:
                raise Tampered(self._inserted(record, row))
            self._step(record, row)
            record = next(records, None)
        if self.state.tree_size < stop_leaf_index:
            raise Tampered(self._truncated_chain(stop_leaf_index))
        if record is not None:
            self._check_tail(record)

    def _skipped(self, row: EventHash) -> Problem:
        return Problem(
            DELETED,
            self.state.position + 1,
            f"the chain skips from leaf {self.state.tree_size - 1} to leaf {row.leaf_index}: "
            f"the events after position {self.state.position} and their chain entries were "
            "removed",
        )

    def _step(self, record: StoredRecord, row: EventHash) -> None:
        leaf = record_leaf(record)
        if leaf is None:
            raise Tampered(self._modified(record, row))
        leaf_digest = leaf_hash(leaf)
        if leaf_digest != row.leaf_hash:
            raise Tampered(self._modified(record, row))
        chain_digest = chain_hash(self.state.chain_head, row.leaf_index, leaf)
        if chain_digest != row.chain_hash:
            raise Tampered(
                Problem(
                    CHAIN_ALTERED,
                    record.id,
                    f"the chain value stored for position {record.id} does not follow from "
                    "the previous one and this event",
                )
            )
        state = self.state
        nodes = state.tree.append(leaf_digest)
        state.chain_head = chain_digest
        state.position = record.id
        if self.on_leaf is not None:
            self.on_leaf(nodes)

    def _check_tail(self, tail: StoredRecord) -> None:
        """An event past the walked leaves is fine only if the chain holds it now: it
        was appended (events and chain rows commit together) while the walk ran."""
        rows = self.store.select_event_hashes(self.state.tree_size, 1)
        if not rows or rows[0].notification_id != tail.id:
            raise Tampered(self._inserted(tail, None))

    def _truncated_chain(self, stop_leaf_index: int) -> Problem:
        return Problem(
            DELETED,
            self.state.position + 1,
            f"the chain ends at leaf {self.state.tree_size - 1} although it held "
            f"{stop_leaf_index} leaves when the walk began: its newest entries were removed",
        )

    def _inserted(self, record: StoredRecord, row: EventHash | None) -> Problem:
        if self.state.tree_size == 0:
            return unchained(record, row)
        return Problem(
            INSERTED,
            record.id,
            f"the event stored at position {record.id} is not in the chain: it was inserted "
            "after the fact",
        )

    def _deleted(self, row: EventHash) -> Problem:
        return Problem(
            DELETED,
            row.notification_id,
            f"the chain holds an event at position {row.notification_id} (leaf "
            f"{row.leaf_index}) that is no longer stored: it was deleted",
        )

    def _modified(self, record: StoredRecord, row: EventHash) -> Problem:
        """Modified, or reordered when the bytes match another nearby leaf of the chain."""
        low = max(0, row.leaf_index - REORDER_WINDOW_LEAVES)
        for other in self.store.select_event_hashes(low, 2 * REORDER_WINDOW_LEAVES + 1):
            if other.leaf_index == row.leaf_index:
                continue
            leaf = record_leaf(record, other.notification_id)
            if leaf is not None and leaf_hash(leaf) == other.leaf_hash:
                return Problem(
                    REORDERED,
                    record.id,
                    f"the event stored at position {record.id} is the one the chain records "
                    f"at position {other.notification_id}: events were reordered",
                )
        return Problem(
            MODIFIED,
            record.id,
            f"the event stored at position {record.id} differs from the one the chain "
            "recorded: it was modified",
        )


def unchained(record: StoredRecord, first_row: EventHash | None) -> Problem:
    """V7: events before the chain's first leaf (a log older than the chain)."""
    if first_row is None:
        where = "the hash chain is empty"
        remedy = (
            "adopt them once with `secretledger checkpoint --adopt-unchained` "
            "(evidence then starts at that checkpoint)"
        )
    else:
        where = f"the hash chain begins at position {first_row.notification_id}"
        remedy = "only a log whose chain is still empty can adopt them"
    return Problem(
        UNCHAINED,
        record.id,
        f"the events from position {record.id} on predate the hash chain ({where}): they "
        f"were written before the chain existed, or inserted since; {remedy}",
    )


class SignedHead(Protocol):
    """What a checkpoint states about the log (``ledger.checkpoints.Checkpoint``)."""

    @property
    def tree_size(self) -> int: ...

    @property
    def root(self) -> bytes: ...

    @property
    def chain_head(self) -> bytes: ...

    @property
    def position(self) -> int: ...


@dataclass
class HeadComparison:
    """Compares the walk with every signed head at its size (V5), in size order."""

    heads: list[SignedHead]
    matched: int = 0
    last_matched_position: int = 0

    def __call__(self, state: ChainState) -> None:
        heads = self.heads
        while self.matched < len(heads) and heads[self.matched].tree_size == state.tree_size:
            self.compare(state, heads[self.matched])

    def compare(self, state: ChainState, head: SignedHead) -> None:
        if (head.root, head.chain_head, head.position) != (
            state.tree.root(),
            state.chain_head,
            state.position,
        ):
            first = self.last_matched_position + 1
            raise Tampered(
                Problem(
                    FORGED,
                    first,
                    f"the log's first {head.tree_size} events differ from the signed "
                    f"checkpoint of that size (up to position {head.position}): events from "
                    f"position {first} on were rewritten together with their chain",
                )
            )
        self.matched += 1
        self.last_matched_position = state.position

    def remaining(self) -> list[SignedHead]:
        return self.heads[self.matched :]


def truncated(state: ChainState, head: SignedHead) -> Problem:
    return Problem(
        TRUNCATED,
        state.position + 1,
        f"the log ends at position {state.position} ({state.tree_size} events), but a signed "
        f"checkpoint covers {head.tree_size} events up to position {head.position}: "
        "the newest events were removed",
    )


# --------------------------------------------------------------------------------------
# Checkpoint lines: the database's and the file's
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Adoption:
    """W8: the signed statement that the first ``tree_size`` events predate the chain."""

    tree_size: int
    position: int
    checkpoint_hash: bytes
    note: str

    def to_line(self) -> str:
        return json.dumps({"adoption": self.note}, separators=(",", ":"), ensure_ascii=True)


def adoption_text(origin: str, checkpoint: Checkpoint) -> str:
    return (
        f"{origin}\n{ADOPTION_MARK} {checkpoint.tree_size}\nposition {checkpoint.position}\n"
        f"checkpoint {checkpoint.note_hash.hex()}\n"
    )


def sign_adoption(signer: Signer, checkpoint: Checkpoint) -> Adoption:
    note = sign_note(adoption_text(signer.name, checkpoint), [signer])
    return Adoption(checkpoint.tree_size, checkpoint.position, checkpoint.note_hash, note)


def open_adoption(note: str, checkpoint: Checkpoint, verifiers: Sequence[Verifier]) -> Adoption:
    """The adoption statement of ``note``, if it is signed and names ``checkpoint``."""
    try:
        opened = open_note(note, verifiers)
    except NoteError as error:
        raise CheckpointError(f"the adoption statement does not verify: {error}") from None
    if opened.text != adoption_text(checkpoint.origin, checkpoint):
        raise CheckpointError("the adoption statement does not name the first checkpoint")
    return Adoption(checkpoint.tree_size, checkpoint.position, checkpoint.note_hash, note)


@dataclass(frozen=True)
class CheckpointFile:
    """The lines of a checkpoint file: checkpoint lines (C8), and at most one adoption
    statement (W8), which comes right before the first checkpoint."""

    path: Path
    lines: tuple[str, ...]
    adoption_note: str | None


def read_checkpoint_file(path: Path) -> CheckpointFile:
    """Every line of ``path`` (OSError if it cannot be read); nothing is checked yet."""
    text = path.read_text(encoding="utf-8", errors="replace")
    lines: list[str] = []
    adoption_note: str | None = None
    for line in text.splitlines():
        if not line:
            continue
        note = _adoption_note(line)
        if note is not None and not lines and adoption_note is None:
            adoption_note = note
        else:
            lines.append(line)
    return CheckpointFile(path, tuple(lines), adoption_note)


def _adoption_note(line: str) -> str | None:
    if not line.startswith('{"adoption":'):
        return None
    with contextlib.suppress(json.JSONDecodeError):
        document = json.loads(line)
        if isinstance(document, dict) and isinstance(document.get("adoption"), str):
            return str(document["adoption"])
    return None


def parsed_checkpoints(
    lines: Sequence[str], verifiers: Sequence[Verifier], source: str
) -> list[Checkpoint]:
    """V8: parse and check a sequence of checkpoint lines (signatures and previous links)."""
    checkpoints: list[Checkpoint] = []
    for index, line in enumerate(lines):
        try:
            checkpoints.append(parse_checkpoint_line(line))
        except CheckpointError as error:
            previous = checkpoints[-1].position if checkpoints else None
            raise Tampered(
                Problem(
                    CHECKPOINT_INVALID,
                    previous,
                    f"checkpoint {index} of {source} was altered: {error}",
                    index,
                )
            ) from None
    chain_problem = verify_checkpoint_chain(checkpoints, verifiers)
    if chain_problem is not None:
        checkpoint = checkpoints[chain_problem.index]
        raise Tampered(
            Problem(
                CHECKPOINT_INVALID,
                checkpoint.position,
                f"checkpoint {chain_problem.index} of {source} does not hold: "
                f"{chain_problem.reason}",
                chain_problem.index,
            )
        )
    return checkpoints


def stored_lines(stored: Sequence[StoredCheckpoint]) -> list[str]:
    """V8: the stored lines in sequence order; a missing sequence number is reported."""
    for expected, checkpoint in enumerate(stored):
        if checkpoint.sequence != expected:
            raise Tampered(
                Problem(
                    CHECKPOINT_MISSING,
                    None,
                    f"the database holds no checkpoint {expected} (the next one stored is "
                    f"{checkpoint.sequence}): a checkpoint was deleted",
                    expected,
                )
            )
    return [checkpoint.line for checkpoint in stored]


def check_sizes(stored: Sequence[StoredCheckpoint], checkpoints: Sequence[Checkpoint]) -> None:
    for row, checkpoint in zip(stored, checkpoints, strict=True):
        if row.tree_size != checkpoint.tree_size:
            raise Tampered(
                Problem(
                    CHECKPOINT_INVALID,
                    checkpoint.position,
                    f"checkpoint {row.sequence} is stored with tree size {row.tree_size}, "
                    f"but its signed note says {checkpoint.tree_size}",
                    row.sequence,
                )
            )


def check_file_against_database(
    file_checkpoints: Sequence[Checkpoint], database_checkpoints: Sequence[Checkpoint]
) -> None:
    """V9: the file is a copy of the database's checkpoints, possibly shorter."""
    for index, checkpoint in enumerate(file_checkpoints):
        if index >= len(database_checkpoints):
            raise Tampered(
                Problem(
                    CHECKPOINT_MISSING,
                    checkpoint.position,
                    f"checkpoint {index} of the checkpoint file (tree size "
                    f"{checkpoint.tree_size}) is missing from the database",
                    index,
                )
            )
        if database_checkpoints[index].note != checkpoint.note:
            raise Tampered(
                Problem(
                    CHECKPOINT_MISSING,
                    checkpoint.position,
                    f"checkpoint {index} of the checkpoint file differs from checkpoint "
                    f"{index} of the database: one of them was replaced",
                    index,
                )
            )


# --------------------------------------------------------------------------------------
# Verify
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """What ``verify`` found: the log's size and head, and the first problem if any."""

    tree_size: int
    position: int
    chain_head: bytes
    root: bytes
    checkpoints_database: int
    checkpoints_file: int
    adoption: Adoption | None
    problem: Problem | None

    @property
    def intact(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        if self.problem is not None:
            return self.problem.to_json()
        return {
            "intact": True,
            "position": self.position,
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "chain_head": self.chain_head.hex(),
            "checkpoints": {"database": self.checkpoints_database, "file": self.checkpoints_file},
            "adopted_unchained": None if self.adoption is None else self.adoption.tree_size,
        }


class NoVerifierKeys(Exception):
    """Checkpoints exist but no public key was given to check them (exit 1)."""


def verify_evidence(
    store: CheckpointStore,
    verifiers: Sequence[Verifier] | None,
    checkpoint_file: CheckpointFile | None,
    *,
    progress: Callable[[int], None] | None = None,
) -> Verification:
    """V1-V9: the checkpoints (database and file), then the whole log against them, then
    the file against the database. ``progress`` gets the number of leaves walked."""
    state = ChainState.genesis()
    counts = [0, 0]
    adoption: Adoption | None = None
    try:
        stored = store.select_checkpoints()
        lines = stored_lines(stored)
        file_lines = () if checkpoint_file is None else checkpoint_file.lines
        if (lines or file_lines) and verifiers is None:
            raise NoVerifierKeys("checkpoints exist, but no public key to check them")
        keys = verifiers or ()
        database = parsed_checkpoints(lines, keys, "the database")
        check_sizes(stored, database)
        from_file: list[Checkpoint] = []
        if checkpoint_file is not None:
            from_file = parsed_checkpoints(file_lines, keys, str(checkpoint_file.path))
            adoption = file_adoption(checkpoint_file, from_file, keys)
        counts = [len(database), len(from_file)]
        comparison = HeadComparison(
            sorted([*database, *from_file], key=lambda head: head.tree_size)
        )
        walk_log(store, state, comparison, progress)
        check_file_against_database(from_file, database)
        problem = None
    except Tampered as tampered:
        problem = tampered.problem
    return Verification(
        tree_size=state.tree_size,
        position=state.position,
        chain_head=state.chain_head,
        root=state.tree.root(),
        checkpoints_database=counts[0],
        checkpoints_file=counts[1],
        adoption=adoption,
        problem=problem,
    )


def file_adoption(
    checkpoint_file: CheckpointFile,
    checkpoints: Sequence[Checkpoint],
    verifiers: Sequence[Verifier],
) -> Adoption | None:
    if checkpoint_file.adoption_note is None:
        return None
    if not checkpoints:
        raise Tampered(
            Problem(CHECKPOINT_INVALID, None, "an adoption statement without a checkpoint", 0)
        )
    try:
        return open_adoption(checkpoint_file.adoption_note, checkpoints[0], verifiers)
    except CheckpointError as error:
        raise Tampered(
            Problem(CHECKPOINT_INVALID, checkpoints[0].position, str(error), 0)
        ) from None


def walk_log(
    store: LogStore,
    state: ChainState,
    comparison: HeadComparison,
    progress: Callable[[int], None] | None,
) -> None:
    """Walk the whole log from ``state`` (genesis), comparing it with the signed heads."""
    try:
        walk_compared(ChainWalk(store, state, None), comparison, store.event_hash_count(), progress)
    except Tampered as tampered:
        signed = comparison.remaining()
        if tampered.problem.kind != UNCHAINED or not signed or signed[-1].tree_size == 0:
            raise
        raise Tampered(
            Problem(
                CHAIN_ALTERED,
                tampered.problem.position,
                f"the events from position {tampered.problem.position} on have no chain "
                f"entries, yet a signed checkpoint covers {signed[-1].tree_size} events up "
                f"to position {signed[-1].position}: the chain entries were removed",
            )
        ) from None
    remaining = comparison.remaining()
    if remaining:
        raise Tampered(truncated(state, remaining[-1]))


def walk_compared(
    walk: ChainWalk,
    comparison: HeadComparison,
    size: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Walk to ``size`` in stretches that end at every signed head's size, compared
    there (V5), and every ``PROGRESS_STEP_LEAVES`` when progress is shown."""
    comparison(walk.state)
    start = walk.state.tree_size
    stops = {head.tree_size for head in comparison.heads if start < head.tree_size < size}
    if progress is not None:
        stops.update(range(start + PROGRESS_STEP_LEAVES, size, PROGRESS_STEP_LEAVES))
    for stop in [*sorted(stops), size]:
        walk.run(stop)
        comparison(walk.state)
        if progress is not None:
            progress(walk.state.tree_size)


# --------------------------------------------------------------------------------------
# The checkpoint writer
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointKeys:
    """The active signing key and every public key of the log (older keys included)."""

    signer: Signer
    verifiers: tuple[Verifier, ...]

    def __post_init__(self) -> None:
        assert self.signer.verifier in self.verifiers, "the signer's own key verifies"


@dataclass(frozen=True)
class CheckedCheckpoints:
    """What a writer's earlier checkpoints found in agreement, so that the next one
    reads only what is newer (W6): the database's checkpoints ``0 .. count - 1``
    (``last`` the newest of them), the first ``file_lines`` of which are the
    checkpoint lines of the file, ending at byte ``file_size_bytes``. The empty
    one (the default) checks everything: the CLI's checkpoint, a server's first."""

    count: int = 0
    last: StoredCheckpoint | None = None
    file_lines: int = 0
    file_size_bytes: int = 0

    def __post_init__(self) -> None:
        assert (self.last is None) == (self.count == 0), "the newest of those checked"
        assert self.last is None or self.last.sequence == self.count - 1, "dense sequences"
        assert self.file_lines >= 0 and self.file_size_bytes >= 0, "a prefix of the file"


@dataclass(frozen=True)
class Written:
    """What ``write_checkpoint`` did: ``checkpoint`` is None when it wrote nothing
    (``reason`` says why: nothing new, or another server took that sequence);
    ``checked``, what it found in agreement, for the same writer's next checkpoint."""

    checkpoint: Checkpoint | None
    sequence: int
    reason: str
    adoption: Adoption | None = None
    checked: CheckedCheckpoints = field(default_factory=CheckedCheckpoints)


@dataclass
class NodeBuffer:
    """Perfect subtrees completed by the walk, stored in batches (W4)."""

    store: CheckpointStore
    nodes: list[SubtreeNode] = field(default_factory=list)

    def __call__(self, nodes: list[SubtreeNode]) -> None:
        if nodes:
            self.nodes.extend(nodes)
            if len(self.nodes) >= NODES_BATCH_SIZE:
                self.flush()

    def flush(self) -> None:
        if self.nodes:
            self.store.insert_merkle_nodes(self.nodes)
            self.nodes = []


def write_checkpoint(
    store: CheckpointStore,
    keys: CheckpointKeys,
    *,
    now: Callable[[], datetime.datetime],
    checkpoint_path: Path | None,
    adopt_unchained: bool = False,
    checked: CheckedCheckpoints | None = None,
) -> Written:
    """W1-W9: sign the log's new head, store it, append it to the checkpoint file.
    ``checked``: what this writer's previous checkpoint found (``Written.checked``),
    so that only newer checkpoints and file lines are read again.

    Raises ``Tampered`` (nothing signed) when the log or the checkpoints do not hold."""
    checked = checked or CheckedCheckpoints()
    new_lines: list[str] = []
    if checkpoint_path is not None:
        first_line, new_lines, file_size_bytes = lines_after(checkpoint_path, checked)
        checked = replace(checked, file_lines=first_line, file_size_bytes=file_size_bytes)
    stored = stored_since(store, checked)
    if checkpoint_path is not None:
        check_file_is_a_copy(checkpoint_path, stored, checked.file_lines, new_lines)
        checked = replace(checked, file_lines=checked.file_lines + len(new_lines))
    if stored:
        checked = replace(checked, count=stored[-1].sequence + 1, last=stored[-1])
    latest = latest_checkpoint(stored, keys)
    sequence = 0 if latest is None else stored[-1].sequence + 1
    adopted_count = adopt(store, latest) if adopt_unchained else 0
    size = store.event_hash_count()
    previous_size = 0 if latest is None else latest.tree_size
    if latest is not None and size < previous_size:
        raise Tampered(
            Problem(
                TRUNCATED,
                None,
                f"the chain holds {size} events, but the latest checkpoint covers "
                f"{previous_size} up to position {latest.position}: the newest events were "
                "removed; refusing to sign (run `secretledger verify`)",
            )
        )
    state = walk_new_leaves(store, resumed_state(store, latest), latest, size)
    if state.tree_size == previous_size:
        return Written(None, sequence, "nothing new since the last checkpoint", checked=checked)
    checkpoint = sign_checkpoint(
        keys.signer,
        tree_size=state.tree_size,
        root=state.tree.root(),
        position=state.position,
        chain_head=state.chain_head,
        time=now(),
        previous=latest,
    )
    try:
        store.insert_checkpoint(sequence, checkpoint.tree_size, to_line(checkpoint))
    except IntegrityError:
        reason = f"another writer stored checkpoint {sequence} first"
        return Written(None, sequence, reason, checked=checked)
    adoption = None
    if adopt_unchained:
        assert sequence == 0 and adopted_count == size, "an adoption signs the first checkpoint"
        adoption = sign_adoption(keys.signer, checkpoint)
    newest = store.select_checkpoints(start=sequence)  # this one, and any stored since
    checked = replace(checked, count=newest[-1].sequence + 1, last=newest[-1])
    if checkpoint_path is not None:
        file_lines, file_size_bytes = catch_up_checkpoint_file(
            checkpoint_path, store, checked, adoption
        )
        checked = replace(checked, file_lines=file_lines, file_size_bytes=file_size_bytes)
    return Written(checkpoint, sequence, "written", adoption, checked)


def stored_since(store: CheckpointStore, checked: CheckedCheckpoints) -> list[StoredCheckpoint]:
    """The stored checkpoints from the newest one ``checked`` holds (or the first line
    of the file not checked yet, if earlier) to the newest. W6: the database still
    holds that checkpoint as it was, and their sequences have no gap; otherwise the
    database lost checkpoints and nothing is signed. (A writer that checked nothing
    yet reads them all, so it also finds a gap among older ones.)"""
    start = max(0, min(checked.count - 1, checked.file_lines))
    stored = store.select_checkpoints(start=start)
    last = checked.last
    if last is not None and stored[last.sequence - start : last.sequence - start + 1] != [last]:
        raise Tampered(
            Problem(
                CHECKPOINT_MISSING,
                None,
                f"checkpoint {last.sequence}, stored when this writer last looked, is no "
                "longer stored as it was: the database lost checkpoints; refusing to sign "
                "(run `secretledger verify`)",
                last.sequence,
            )
        )
    for index, row in enumerate(stored):
        if row.sequence != start + index:
            raise Tampered(
                Problem(
                    CHECKPOINT_MISSING,
                    None,
                    f"the database holds checkpoint {row.sequence} but not checkpoint "
                    f"{start + index}: the database lost checkpoints; refusing to sign "
                    "(run `secretledger verify`)",
                    start + index,
                )
            )
    return stored


def latest_checkpoint(
    stored: Sequence[StoredCheckpoint], keys: CheckpointKeys
) -> Checkpoint | None:
    """W1: the newest stored checkpoint, parsed and its signature checked."""
    if not stored:
        return None
    row = stored[-1]
    try:
        checkpoint = parse_checkpoint_line(row.line)
        verify_checkpoint(checkpoint, keys.verifiers)
    except CheckpointError as error:
        raise Tampered(
            Problem(
                CHECKPOINT_INVALID,
                None,
                f"the latest stored checkpoint ({row.sequence}) does not hold: {error}",
                row.sequence,
            )
        ) from None
    if checkpoint.tree_size != row.tree_size:
        raise Tampered(
            Problem(
                CHECKPOINT_INVALID,
                checkpoint.position,
                f"checkpoint {row.sequence} is stored with tree size {row.tree_size}, but its "
                f"signed note says {checkpoint.tree_size}",
                row.sequence,
            )
        )
    return checkpoint


def adopt(store: CheckpointStore, latest: Checkpoint | None) -> int:
    """W8: hash a log older than the chain into it, once, before its first checkpoint."""
    if latest is not None:
        raise AdoptionRefused("this ledger has checkpoints already: there is nothing to adopt")
    if store.event_hash_count():
        raise AdoptionRefused(
            "the hash chain is not empty: only a log whose chain is empty can adopt its "
            "events (run `secretledger verify`)"
        )
    if not store.select_notifications(None, 1):
        raise AdoptionRefused("the log holds no events: there is nothing to adopt")
    adopted = store.adopt_unchained_events()
    assert adopted > 0, "a log with events adopts them"
    return adopted


class AdoptionRefused(Exception):
    """``--adopt-unchained`` does not apply to this ledger (exit 1)."""


def resumed_state(store: CheckpointStore, latest: Checkpoint | None) -> ChainState | None:
    """W2: the walk's state at ``latest``, from stored nodes and leaf hashes; None when
    some are missing (the writer then walks from the start)."""
    if latest is None:
        return ChainState.genesis()
    keys = compact_range_keys(latest.tree_size)
    hashes = store.select_merkle_nodes([key for key in keys if key[0] >= 1])
    for level, node_index in keys:
        if level == 0:
            rows = store.select_event_hashes(node_index, 1)
            if rows and rows[0].leaf_index == node_index:
                hashes[(0, node_index)] = rows[0].leaf_hash
    if any(key not in hashes for key in keys):
        return None
    tree = CompactRange.from_subtrees(latest.tree_size, hashes)
    if tree.root() != latest.root:
        raise Tampered(
            Problem(
                NODES_ALTERED,
                latest.position,
                f"the stored Merkle nodes and leaf hashes do not give the signed root of the "
                f"checkpoint of tree size {latest.tree_size}: they were altered; refusing to "
                "sign (run `secretledger verify`)",
            )
        )
    return ChainState(tree, latest.chain_head, latest.position)


def walk_new_leaves(
    store: CheckpointStore, state: ChainState | None, latest: Checkpoint | None, size: int
) -> ChainState:
    """W3, W4: walk the leaves below ``size`` from ``state`` (None: from the start,
    compared with ``latest``), storing the perfect subtrees they complete."""
    nodes = NodeBuffer(store)
    if state is None:
        state = ChainState.genesis()
        comparison = HeadComparison([] if latest is None else [latest])
        walk_compared(ChainWalk(store, state, nodes), comparison, size, None)
    else:
        ChainWalk(store, state, nodes).run(size)
    nodes.flush()
    return state


def lines_after(path: Path, checked: CheckedCheckpoints) -> tuple[int, list[str], int]:
    """The checkpoint lines of ``path`` after the ``checked.file_lines`` read before:
    the index of the first, the lines, the file's size. The whole file again when it
    no longer extends what was read (shorter, or no line ends there)."""
    lines_and_size = read_file_from(path, checked.file_size_bytes)
    if lines_and_size is None:
        whole = read_file_from(path, 0)
        assert whole is not None, "a file read from its start"
        return 0, *whole
    return checked.file_lines, *lines_and_size


def read_file_from(path: Path, offset_bytes: int) -> tuple[list[str], int] | None:
    """The checkpoint lines of ``path`` after byte ``offset_bytes``, where an earlier
    read ended, and the file's size; None if the file no longer extends that read
    (shorter, or no line ends there). An adoption line (W8) is skipped at the start
    of the file only. No lines if there is no file; CheckpointFileError if it
    cannot be read."""
    try:
        with path.open("rb") as handle:
            if offset_bytes:
                handle.seek(offset_bytes - 1)
                if handle.read(1) != b"\n":
                    return None
            data = handle.read()
    except FileNotFoundError:
        return ([], 0) if offset_bytes == 0 else None
    except OSError as error:
        raise CheckpointFileError(f"checkpoint file {path} cannot be read: {error}") from None
    lines = [line for line in data.decode("utf-8", errors="replace").splitlines() if line]
    if offset_bytes == 0 and lines and _adoption_note(lines[0]) is not None:
        lines = lines[1:]
    return lines, offset_bytes + len(data)


def check_file_is_a_copy(
    path: Path, stored: Sequence[StoredCheckpoint], first_index: int, lines: Sequence[str]
) -> None:
    """W6: the file's checkpoint lines from ``first_index`` on are the database's
    checkpoints of those sequences (``stored`` begins at or before ``first_index``),
    so the file holds no checkpoint the database lacks (else it lost some)."""
    start = stored[0].sequence if stored else first_index
    assert start <= first_index, "the database's rows cover the lines read"
    for index, line in enumerate(lines, start=first_index):
        position = index - start
        if position >= len(stored) or stored[position].line != line:
            raise Tampered(
                Problem(
                    CHECKPOINT_MISSING,
                    None,
                    f"line {index} of checkpoint file {path} is not checkpoint {index} of the "
                    "database: the database lost checkpoints; refusing to sign "
                    "(run `secretledger verify`)",
                    index,
                )
            )


class CheckpointFileError(Exception):
    """The checkpoint file cannot be read or written (exit 1)."""


def catch_up_checkpoint_file(
    path: Path, store: CheckpointStore, checked: CheckedCheckpoints, adoption: Adoption | None
) -> tuple[int, int]:
    """W7: append the database's checkpoints the file lacks, under an exclusive lock, and
    fsync; the file's checkpoint lines and size after. Lines other writers appended
    since ``checked`` are read, not rewritten. A new file is created with mode 0644:
    checkpoints are public facts."""
    try:
        descriptor = os.open(
            path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, CHECKPOINT_FILE_MODE
        )
    except OSError as error:
        raise CheckpointFileError(f"checkpoint file {path} cannot be opened: {error}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        first_line, lines, size_bytes = lines_after(path, checked)
        file_lines = first_line + len(lines)
        missing = [row.line for row in store.select_checkpoints(start=file_lines)]
        adopting = [adoption.to_line()] if adoption is not None and file_lines == 0 else []
        if missing or adopting:
            appended = "".join(f"{line}\n" for line in [*adopting, *missing]).encode("utf-8")
            os.write(descriptor, appended)
            os.fsync(descriptor)
            size_bytes += len(appended)
            file_lines += len(missing)
    except OSError as error:
        raise CheckpointFileError(f"checkpoint file {path} cannot be written: {error}") from None
    finally:
        os.close(descriptor)
    fsync_directory(path.parent)
    return file_lines, size_bytes
