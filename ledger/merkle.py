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
"""

from __future__ import annotations

import hashlib
from typing import Final
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
    """The bytes of one stored event as a leaf of the log (see the module docstring)."""
    assert 0 <= notification_id < U64_LIMIT, "notification id out of range"
    assert 0 <= originator_version < U64_LIMIT, "originator version out of range"
    encoded_topic = topic.encode("utf-8")
    return b"".join(
        (
            LEAF_FORMAT,
            notification_id.to_bytes(8, "big"),
            originator_id.bytes,
            originator_version.to_bytes(8, "big"),
            len(encoded_topic).to_bytes(4, "big"),
            encoded_topic,
            len(state).to_bytes(4, "big"),
            state,
        )
    )


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 ‖ leaf)."""
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def chain_hash(previous_chain_hash: bytes, leaf_index: int, leaf: bytes) -> bytes:
    """The chain value after leaf ``leaf_index``: SHA-256(previous ‖ u64(index) ‖ leaf)."""
    assert len(previous_chain_hash) == HASH_SIZE_BYTES, "chain hashes are 32 bytes"
    assert 0 <= leaf_index < U64_LIMIT, "leaf index out of range"
    return hashlib.sha256(previous_chain_hash + leaf_index.to_bytes(8, "big") + leaf).digest()
