"""Evidence that the log was not edited: walking the chain, writing and checking checkpoints.

One walk serves both the checkpoint writer and ``secretledger verify``
(rules V1-V8 of docs/evidence.md): it reads the stored events in notification
order beside the event-hash rows in leaf order, recomputes every leaf from the
stored bytes, and checks, leaf by leaf,

* that the leaf indexes are dense and that each row names the next stored event
  (an event the chain does not hold was *inserted*; a row whose event is gone
  names a *deleted* one),
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

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol
from uuid import UUID

from ledger.merkle import (
    GENESIS_CHAIN_HASH,
    CompactRange,
    SubtreeNode,
    chain_hash,
    leaf_bytes,
    leaf_hash,
)
from ledger.storage import EventHash

PAGE_SIZE: Final = 2_000
REORDER_WINDOW_LEAVES: Final = 64

# Problem kinds (docs/evidence.md, V3): stable strings for --json and exit codes.
INSERTED: Final = "inserted"
DELETED: Final = "deleted"
MODIFIED: Final = "modified"
REORDERED: Final = "reordered"
CHAIN_ALTERED: Final = "chain-altered"
FORGED: Final = "forged"
TRUNCATED: Final = "truncated"
CHECKPOINT_INVALID: Final = "checkpoint-invalid"
CHECKPOINT_MISSING: Final = "checkpoint-missing"


@dataclass(frozen=True)
class Problem:
    """The first thing found wrong: what, where (a notification id), and in words."""

    kind: str
    position: int | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "intact": False,
            "position": self.position,
            "problem": self.detail,
            "kind": self.kind,
        }


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


def record_leaf(record: StoredRecord, notification_id: int | None = None) -> bytes:
    """The leaf bytes of a stored record, optionally as if stored at another position."""
    originator_id = record.originator_id
    if not isinstance(originator_id, UUID):
        originator_id = UUID(originator_id)
    return leaf_bytes(
        notification_id=record.id if notification_id is None else notification_id,
        originator_id=originator_id,
        originator_version=record.originator_version,
        topic=record.topic,
        state=bytes(record.state),
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

    ``on_leaf`` is called after every verified leaf with the state and the perfect
    subtrees that leaf completed; it may raise ``Tampered`` (checkpoint comparisons).
    """

    store: LogStore
    state: ChainState
    on_leaf: Callable[[ChainState, list[SubtreeNode]], None]

    def run(self, stop_leaf_index: int) -> StoredRecord | None:
        """Walk the leaves below ``stop_leaf_index`` (the size taken before the walk, so
        that appends committed meanwhile are left for later). Returns the first stored
        event past them, if any: the caller decides whether it is a later append."""
        records = stored_records(self.store, self.state.position)
        rows = hash_rows(self.store, self.state.tree_size, stop_leaf_index)
        record = next(records, None)
        for row in rows:
            self._check_index(row)
            if record is None or record.id > row.notification_id:
                raise Tampered(self._deleted(row))
            if record.id < row.notification_id:
                raise Tampered(self.inserted(record))
            self._step(record, row)
            record = next(records, None)
        if self.state.tree_size < stop_leaf_index:
            raise Tampered(self._truncated_chain(stop_leaf_index))
        return record

    def _check_index(self, row: EventHash) -> None:
        expected = self.state.tree_size
        if row.leaf_index != expected:
            raise Tampered(
                Problem(
                    DELETED,
                    self.state.position + 1,
                    f"the chain skips from leaf {expected - 1} to leaf {row.leaf_index}: "
                    f"the events after position {self.state.position} and their chain "
                    "entries were removed",
                )
            )

    def _step(self, record: StoredRecord, row: EventHash) -> None:
        leaf = record_leaf(record)
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
        nodes = self.state.tree.append(leaf_digest)
        self.state.chain_head = chain_digest
        self.state.position = record.id
        self.on_leaf(self.state, nodes)

    def _truncated_chain(self, stop_leaf_index: int) -> Problem:
        return Problem(
            DELETED,
            self.state.position + 1,
            f"the chain ends at leaf {self.state.tree_size - 1} although it held "
            f"{stop_leaf_index} leaves when the walk began: its newest entries were removed",
        )

    def inserted(self, record: StoredRecord) -> Problem:
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
            if leaf_hash(record_leaf(record, other.notification_id)) == other.leaf_hash:
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


@dataclass(frozen=True)
class Verification:
    """What ``verify`` found: the log's size and head, and the first problem if any."""

    tree_size: int
    position: int
    chain_head: bytes
    root: bytes
    checkpoints_matched: int
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
            "checkpoints": self.checkpoints_matched,
        }


@dataclass
class HeadComparison:
    """Compares the walk with every signed head at its size (V5), in size order."""

    heads: list[SignedHead]
    matched: int = 0
    last_matched_position: int = 0

    def __call__(self, state: ChainState, nodes: list[SubtreeNode]) -> None:
        while self.matched < len(self.heads) and self.heads[self.matched].tree_size == (
            state.tree_size
        ):
            self.compare(state, self.heads[self.matched])

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
                    f"checkpoint of that size: events from position {first} on were "
                    "rewritten together with their chain",
                )
            )
        self.matched += 1
        self.last_matched_position = state.position

    def remaining(self) -> list[SignedHead]:
        return self.heads[self.matched :]


def verify_log(
    store: EvidenceLogStore,
    heads: Sequence[SignedHead],
    *,
    progress: Callable[[int], None] | None = None,
) -> Verification:
    """Walk the whole log, comparing it with ``heads`` (checkpoints already verified).

    ``progress`` is called with the number of leaves walked, every page or so.
    """
    comparison = HeadComparison(sorted(heads, key=lambda head: head.tree_size))
    state = ChainState.genesis()

    def on_leaf(walked: ChainState, nodes: list[SubtreeNode]) -> None:
        comparison(walked, nodes)
        if progress is not None and walked.tree_size % PAGE_SIZE == 0:
            progress(walked.tree_size)

    walk = ChainWalk(store, state, on_leaf)
    try:
        comparison(state, [])
        tail = walk.run(store.event_hash_count())
        if tail is not None:
            check_tail(store, walk, tail)
        remaining = comparison.remaining()
        if remaining:
            raise Tampered(truncated(state, remaining[-1]))
        problem = None
    except Tampered as tampered:
        problem = tampered.problem
    return Verification(
        tree_size=state.tree_size,
        position=state.position,
        chain_head=state.chain_head,
        root=state.tree.root(),
        checkpoints_matched=comparison.matched,
        problem=problem,
    )


class EvidenceLogStore(LogStore, Protocol):
    def event_hash_count(self) -> int: ...


def check_tail(store: EvidenceLogStore, walk: ChainWalk, tail: StoredRecord) -> None:
    """An event past the walked leaves is fine only if the chain holds it now: it was
    appended (events and chain rows commit together) while the walk ran."""
    rows = store.select_event_hashes(walk.state.tree_size, 1)
    if not rows or rows[0].notification_id != tail.id:
        raise Tampered(walk.inserted(tail))


def truncated(state: ChainState, head: SignedHead) -> Problem:
    return Problem(
        TRUNCATED,
        state.position + 1,
        f"the log ends at position {state.position} ({state.tree_size} events), but a signed "
        f"checkpoint covers {head.tree_size} events up to position {head.position}: "
        "the newest events were removed",
    )
