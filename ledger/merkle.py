"""How the log is hashed: leaf bytes, the hash chain and the RFC 6962 Merkle tree.

Every stored event, in log order, is one *leaf*. Its bytes are fixed once and for
all (changing them would invalidate every checkpoint ever signed), and they are
the stored record exactly as the database holds it, so crypto-shredding (which
deletes a wrapped data key, never an event) leaves every hash valid:

    leaf = 0x01                                  format of the leaf bytes
         ‖ u64(notification_id)                  the event's position in the log
         ‖ originator_id (16 bytes, UUID)
         ‖ u64(originator_version)
         ‖ u32(len(topic)) ‖ topic (UTF-8)
         ‖ u32(len(state)) ‖ state               msgpack, ciphertext never plaintext

(u64/u32: unsigned big-endian integers.)

The *leaf index* is a dense counter (0, 1, 2, ...) kept by the writer under the
log's write lock; it is never the notification id, which has gaps on PostgreSQL
and can be reused on SQLite after a deletion. The notification id sits inside the
leaf bytes, so a reordering or renumbering shows.

Chain: ``chain[i] = SHA-256(chain[i-1] ‖ u64(i) ‖ leaf[i])`` with ``chain[-1]`` 32
zero bytes. Leaf hash: ``SHA-256(0x00 ‖ leaf)`` (RFC 6962 §2.1).

The rest is storage-free Merkle tree logic (rules M1-M11 of docs/evidence.md): roots,
the compact range a writer keeps to append in O(1) amortised hashes, proof plans that
name the perfect subtrees a proof needs (so a store fetches them in one query), and the
RFC 9162 checks of inclusion and consistency proofs.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol
from uuid import UUID

LEAF_FORMAT: Final = b"\x01"
HASH_SIZE_BYTES: Final = 32
GENESIS_CHAIN_HASH: Final = bytes(HASH_SIZE_BYTES)
LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"
U64_LIMIT: Final = 2**64


def leaf_bytes(
    *,
    notification_id: int,
    originator_id: UUID,
    originator_version: int,
    topic: str,
    state: bytes,
) -> bytes:
    """The bytes of one stored event as a leaf of the log (see the module docstring).
    PostgreSQL builds the same bytes in SQL when it appends (``<app>_leaf_bytes`` in
    `ledger.storage_postgres`; ``tests/test_evidence_storage.py`` holds them equal)."""
    assert 0 <= notification_id < U64_LIMIT, "notification id out of range"
    assert 0 <= originator_version < U64_LIMIT, "originator version out of range"
    encoded_topic = topic.encode("utf-8")
    return b"".join(
        (
            _LEAF_HEAD.pack(LEAF_FORMAT, notification_id, originator_id.bytes, originator_version),
            len(encoded_topic).to_bytes(4, "big"),
            encoded_topic,
            len(state).to_bytes(4, "big"),
            state,
        )
    )


_LEAF_HEAD: Final = struct.Struct(">cQ16sQ")
"""The fixed start of a leaf: format, u64 notification id, originator id, u64 version."""


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 ‖ leaf)."""
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def chain_hash(previous_chain_hash: bytes, leaf_index: int, leaf: bytes) -> bytes:
    """The chain value after leaf ``leaf_index``: SHA-256(previous ‖ u64(index) ‖ leaf)."""
    assert len(previous_chain_hash) == HASH_SIZE_BYTES, "chain hashes are 32 bytes"
    assert 0 <= leaf_index < U64_LIMIT, "leaf index out of range"
    return hashlib.sha256(previous_chain_hash + leaf_index.to_bytes(8, "big") + leaf).digest()


EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
"""The root of the tree of no leaves (rule M2)."""

NodeKey = tuple[int, int]
"""(level, node_index) of a perfect subtree: level L covers leaves [i*2^L, (i+1)*2^L)."""

LeafRange = tuple[int, int]
"""Leaves [start, end) whose Merkle tree hash is one element of a proof."""


class ProofError(ValueError):
    """A proof, or a root it is checked against, does not hold (the message says why)."""


class SubtreeNode(NamedTuple):
    """A perfect subtree completed by an append, as a writer stores it (rule M5)."""

    level: int
    node_index: int
    hash: bytes


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right) (rule M1)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_size(tree_size: int) -> int:
    """The size of the left subtree: the largest power of two strictly below ``tree_size``."""
    assert tree_size > 1, "only a tree of two or more leaves splits"
    return 1 << ((tree_size - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of the given leaf hashes, by the recursive definition (M2)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return _subtree_root(leaf_hashes, 0, len(leaf_hashes))


def _subtree_root(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    if end - start == 1:
        return leaf_hashes[start]
    middle = start + split_size(end - start)
    return node_hash(
        _subtree_root(leaf_hashes, start, middle), _subtree_root(leaf_hashes, middle, end)
    )


def compact_range_keys(tree_size: int) -> list[NodeKey]:
    """The perfect subtrees that make up a tree of ``tree_size`` leaves, left to right (M4).

    One per set bit of the size, largest first: what a ``CompactRange`` holds.
    """
    assert tree_size >= 0, "a tree size is not negative"
    return _perfect_keys(0, tree_size)


def _perfect_keys(start: int, end: int) -> list[NodeKey]:
    """The aligned perfect subtrees covering leaves [start, end), largest first.

    ``start`` is a multiple of a power of two at least as large as the range, which holds
    for every range of the RFC 6962 tree (and for [0, n)).
    """
    keys: list[NodeKey] = []
    size = end - start
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            assert start % (1 << level) == 0, "perfect subtrees are aligned"
            keys.append((level, start >> level))
            start += 1 << level
    assert start == end, "the perfect subtrees cover the range"
    return keys


def _fold_right(hashes: Sequence[bytes]) -> bytes:
    """Merge perfect subtree hashes, largest (leftmost) first, into their tree hash."""
    assert hashes, "an empty range has no hash here"
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


class CompactRange:
    """The perfect subtrees of the leaves appended so far: the incremental root (M4, M5).

    ``hashes`` holds one hash per set bit of ``size``, largest subtree first. Appending a
    leaf merges equal-sized subtrees and returns the nodes it completed (level >= 1), so
    a checkpoint writer can store them; ``size`` and ``hashes`` are all it needs to resume.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ValueError("a compact range has a size of zero or more leaves")
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a compact range of {size} leaves holds {size.bit_count()} hashes, "
                f"not {len(hashes)}"
            )
        if any(len(value) != HASH_SIZE_BYTES for value in hashes):
            raise ValueError(f"compact range hashes are {HASH_SIZE_BYTES} bytes")
        self._size = size
        self._hashes = list(hashes)

    @classmethod
    def from_subtrees(cls, tree_size: int, hashes: Mapping[NodeKey, bytes]) -> CompactRange:
        """Resume from stored perfect subtrees: ``hashes`` holds ``compact_range_keys(size)``."""
        return cls(tree_size, [hashes[key] for key in compact_range_keys(tree_size)])

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> list[SubtreeNode]:
        """Add one leaf; return the perfect subtrees of level >= 1 this completed."""
        if len(leaf_hash) != HASH_SIZE_BYTES:
            raise ValueError(f"a leaf hash is {HASH_SIZE_BYTES} bytes")
        index = self._size
        if not index & 1:  # an even size: nothing to merge (every other leaf)
            self._hashes.append(leaf_hash)
            self._size = index + 1
            return []
        completed: list[SubtreeNode] = []
        merged = leaf_hash
        level = 0
        while index & 1:
            merged = node_hash(self._hashes.pop(), merged)
            index >>= 1
            level += 1
            completed.append(SubtreeNode(level, index, merged))
        self._hashes.append(merged)
        self._size += 1
        assert len(self._hashes) == self._size.bit_count(), "one hash per set bit of the size"
        return completed

    def root(self) -> bytes:
        """The Merkle tree hash of every leaf appended so far."""
        if not self._hashes:
            return EMPTY_ROOT
        return _fold_right(self._hashes)


class SubtreeHashes(Protocol):
    """Where proofs get the hash of any perfect subtree (level 0: the leaf hashes)."""

    def perfect(self, level: int, node_index: int) -> bytes: ...


class LeafHashes:
    """``SubtreeHashes`` over leaf hashes held in memory (every level computed once)."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        levels = [list(leaf_hashes)]
        while len(levels[-1]) > 1:
            below = levels[-1]
            levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
        self._levels = levels

    def perfect(self, level: int, node_index: int) -> bytes:
        return self._levels[level][node_index]


@dataclass(frozen=True)
class HashPlan:
    """The hashes of leaf ranges a proof (or root) is made of, and the subtrees they need.

    A store computes ``keys()``, fetches those perfect subtrees at once (level 0 from the
    leaf hashes, level >= 1 from stored nodes), then calls ``assemble`` (rule M6).
    """

    ranges: tuple[LeafRange, ...]

    def keys(self) -> list[NodeKey]:
        """Every perfect subtree needed, without repeats, in a stable order."""
        return list(
            dict.fromkeys(key for start, end in self.ranges for key in _perfect_keys(start, end))
        )

    def assemble(self, hashes: Mapping[NodeKey, bytes]) -> list[bytes]:
        """The hash of each range, from the perfect subtree hashes named by ``keys()``."""
        return [
            _fold_right([hashes[key] for key in _perfect_keys(start, end)])
            for start, end in self.ranges
        ]

    def resolve(self, subtrees: SubtreeHashes) -> list[bytes]:
        """``assemble`` with one lookup per needed subtree."""
        return self.assemble({key: subtrees.perfect(*key) for key in self.keys()})


def root_plan(tree_size: int) -> HashPlan:
    """The root of the first ``tree_size`` leaves, from perfect subtrees (empty: no ranges)."""
    assert tree_size >= 0, "a tree size is not negative"
    return HashPlan(((0, tree_size),) if tree_size else ())


def inclusion_plan(leaf_index: int, tree_size: int) -> HashPlan:
    """The audit path of leaf ``leaf_index`` in the tree of ``tree_size`` leaves (M7)."""
    if not 0 <= leaf_index < tree_size:
        raise ValueError(f"leaf {leaf_index} is not in a tree of {tree_size} leaves")
    ranges: list[LeafRange] = []
    start, end = 0, tree_size
    while end - start > 1:  # root to leaf; the path is read leaf to root
        middle = start + split_size(end - start)
        if leaf_index < middle:
            ranges.append((middle, end))
            end = middle
        else:
            ranges.append((start, middle))
            start = middle
    ranges.reverse()
    assert len(ranges) == inclusion_path_length(leaf_index, tree_size)
    return HashPlan(tuple(ranges))


def consistency_plan(first_size: int, second_size: int) -> HashPlan:
    """The consistency proof from the tree of ``first_size`` leaves to ``second_size`` (M9).

    Equal sizes, and an empty first tree, have the empty proof (rule M11).
    """
    if not 0 <= first_size <= second_size:
        raise ValueError(f"no consistency proof from size {first_size} to {second_size}")
    if first_size in (0, second_size):
        return HashPlan(())
    ranges: list[LeafRange] = []
    start, end = 0, second_size
    known = True  # whether [start, end) equals a subtree the first tree's owner has
    while end != first_size:  # root to the first tree's edge; read back to front
        middle = start + split_size(end - start)
        if first_size <= middle:
            ranges.append((middle, end))
            end = middle
        else:
            ranges.append((start, middle))
            start = middle
            known = False
    if not known:
        ranges.append((start, end))
    ranges.reverse()
    return HashPlan(tuple(ranges))


def inclusion_proof(leaf_index: int, tree_size: int, subtrees: SubtreeHashes) -> list[bytes]:
    return inclusion_plan(leaf_index, tree_size).resolve(subtrees)


def consistency_proof(first_size: int, second_size: int, subtrees: SubtreeHashes) -> list[bytes]:
    return consistency_plan(first_size, second_size).resolve(subtrees)


def inclusion_path_length(leaf_index: int, tree_size: int) -> int:
    """How many hashes the audit path of ``leaf_index`` in ``tree_size`` leaves holds (M8)."""
    assert 0 <= leaf_index < tree_size, "the leaf is in the tree"
    inner = (leaf_index ^ (tree_size - 1)).bit_length()
    border = (leaf_index >> inner).bit_count()
    return inner + border


def _require_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE_BYTES:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE_BYTES}")


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf_hash: bytes, path: Sequence[bytes], root_hash: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``leaf_index`` of the tree with ``root_hash`` (M8).

    RFC 9162 §2.1.3.2, after checking every length first. Raises ``ProofError``.
    """
    if not 0 <= leaf_index < tree_size:
        raise ProofError(f"leaf index {leaf_index} is outside a tree of {tree_size} leaves")
    _require_hash(leaf_hash, "the leaf hash")
    _require_hash(root_hash, "the root hash")
    for position, sibling in enumerate(path):
        _require_hash(sibling, f"path hash {position}")
    expected_length = inclusion_path_length(leaf_index, tree_size)
    if len(path) != expected_length:
        raise ProofError(
            f"the audit path holds {len(path)} hashes; leaf {leaf_index} of a tree of "
            f"{tree_size} leaves needs {expected_length}"
        )
    computed = _root_from_path(leaf_index, tree_size, leaf_hash, path)
    if not hmac.compare_digest(computed, root_hash):
        raise ProofError(f"the audit path of leaf {leaf_index} does not lead to the root")


def _root_from_path(
    leaf_index: int, tree_size: int, leaf_hash: bytes, path: Sequence[bytes]
) -> bytes:
    """RFC 9162 §2.1.3.2 step 2 to 5; the length checks there hold by the caller's check."""
    index, last = leaf_index, tree_size - 1
    result = leaf_hash
    for sibling in path:
        assert last > 0, "a path of the checked length is never too long"
        if index & 1 or index == last:
            result = node_hash(sibling, result)
            while not (index & 1 or index == 0):
                index >>= 1
                last >>= 1
        else:
            result = node_hash(result, sibling)
        index >>= 1
        last >>= 1
    assert last == 0, "a path of the checked length is never too short"
    return result


def verify_consistency(
    first_size: int,
    second_size: int,
    first_root: bytes,
    second_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that the tree of ``second_size`` leaves extends the one of ``first_size`` (M10).

    RFC 9162 §2.1.4.2 for 0 < first < second; equal sizes and an empty first tree as
    rule M11 says. Raises ``ProofError``.
    """
    if not 0 <= first_size <= second_size:
        raise ProofError(f"a tree of {first_size} leaves cannot grow into one of {second_size}")
    _require_hash(first_root, "the first root")
    _require_hash(second_root, "the second root")
    for position, element in enumerate(proof):
        _require_hash(element, f"proof hash {position}")
    if first_size in (0, second_size):
        _verify_trivial_consistency(first_size, second_size, first_root, second_root, proof)
        return
    expected_length = len(consistency_plan(first_size, second_size).ranges)
    if len(proof) != expected_length:
        raise ProofError(
            f"the consistency proof holds {len(proof)} hashes; from {first_size} to "
            f"{second_size} leaves it needs {expected_length}"
        )
    first_computed, second_computed = _roots_from_consistency(
        first_size, second_size, first_root, proof
    )
    if not hmac.compare_digest(first_computed, first_root):
        raise ProofError(f"the consistency proof does not lead to the root of size {first_size}")
    if not hmac.compare_digest(second_computed, second_root):
        raise ProofError(f"the consistency proof does not lead to the root of size {second_size}")


def _verify_trivial_consistency(
    first_size: int, second_size: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Rule M11: no proof is needed, so a non-empty one is refused."""
    if proof:
        raise ProofError(
            f"the consistency proof from {first_size} to {second_size} leaves must be empty"
        )
    if first_size == 0:
        if not hmac.compare_digest(first_root, EMPTY_ROOT):
            raise ProofError("the first root is not the root of the empty tree")
        return
    if not hmac.compare_digest(first_root, second_root):
        raise ProofError(f"two different roots for the same size {first_size}")


def _roots_from_consistency(
    first_size: int, second_size: int, first_root: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """RFC 9162 §2.1.4.2 steps 2 to 7; the length checks there hold by the caller's check."""
    path = list(proof)
    if first_size & (first_size - 1) == 0:  # a power of two: the proof omits the first root
        path.insert(0, first_root)
    index, last = first_size - 1, second_size - 1
    while index & 1:
        index >>= 1
        last >>= 1
    first_result = second_result = path[0]
    for element in path[1:]:
        assert last > 0, "a proof of the checked length is never too long"
        if index & 1 or index == last:
            first_result = node_hash(element, first_result)
            second_result = node_hash(element, second_result)
            while not (index & 1 or index == 0):
                index >>= 1
                last >>= 1
        else:
            second_result = node_hash(second_result, element)
        index >>= 1
        last >>= 1
    assert last == 0, "a proof of the checked length is never too short"
    return first_result, second_result
