"""Persistence for the ledger: the msgpack transcoder, the data-key table and factories.

Three concerns live here, all below the application layer:

* :class:`MsgpackTranscoder` turns event state into bytes and back. Applications
  install it by overriding ``construct_transcoder()``.
* Wrapped data keys (envelope encryption) live in their own table, written **in the
  same transaction** as the events that reference them: ``app.save(aggregate,
  data_keys=[DataKeyRecord(...)])``. Destroying a row crypto-shreds that version,
  again in the transaction of the events that say so: ``app.save(aggregate,
  destroyed_data_keys=[(secret_id, version_id), ...])``. Replacing a row re-wraps
  the key under a rotated key-encryption key. Events stay immutable either way.
* Infrastructure factories (selected with ``PERSISTENCE_MODULE=<topic>``) that build
  the data-key-aware recorders, and :func:`environment_for_database` which maps the
  CLI ``--db`` value to eventsourcing environment variables.

The PostgreSQL recorder and factory live in :mod:`ledger.storage_postgres`, so that
this module imports without psycopg installed.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import SplitResult, unquote, urlsplit
from uuid import UUID

import msgpack
from eventsourcing.persistence import (
    ApplicationRecorder,
    ConnectionPoolClosedError,
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.popo import POPOFactory
from eventsourcing.sqlite import (
    SQLiteConnection,
    SQLiteCursor,
    SQLiteFactory,
)
from eventsourcing.utils import Environment, EnvType

from ledger.eventsourcing_hooks import (
    InsertedEvents,
    POPORecorderHooks,
    SQLiteConnectionHooks,
    SQLiteRecorderHooks,
)
from ledger.merkle import (
    GENESIS_CHAIN_HASH,
    HASH_SIZE_BYTES,
    chain_hash,
    leaf_bytes,
    leaf_hash,
)

# --------------------------------------------------------------------------------------
# Transcoder
# --------------------------------------------------------------------------------------

# Extension type codes. These are part of the stored format: never renumber or reuse.
EXTENSION_CODE_UUID: Final = 1
EXTENSION_CODE_TUPLE: Final = 2
EXTENSION_CODE_FROZENSET: Final = 3
EXTENSION_CODE_DECIMAL: Final = 4

UUID_SIZE_BYTES: Final = 16


class MsgpackTranscoder(Transcoder):
    """Encodes event state with msgpack; ``bytes`` stay binary, tuples stay tuples.

    Natively supported: ``None``, ``bool``, ``int`` (64-bit; wider raises
    ``OverflowError``), ``float``, ``str``, ``bytes``, ``list``, ``dict`` (any
    hashable keys) and timezone-aware ``datetime`` (msgpack's Timestamp extension;
    it keeps only the instant, so every datetime decodes in UTC).

    Extension types with fixed codes: ``UUID`` (16 raw bytes), ``tuple`` (elements
    encoded recursively), ``frozenset`` (elements encoded recursively and sorted by
    their encoding, so equal sets give equal bytes) and ``Decimal`` (as text).

    Rejected: naive datetimes (``ValueError``) and every other type, including
    subclasses of the supported ones such as ``StrEnum`` or ``NamedTuple``
    (``TypeError``), so nothing is flattened silently. Error messages name the type,
    never the value, because values may be secret material.

    The transcoder holds no state, so one instance is safe to share between threads.
    """

    def encode(self, obj: Any) -> bytes:
        encoded = msgpack.packb(
            obj,
            use_bin_type=True,
            datetime=True,
            strict_types=True,
            default=self._encode_extension,
        )
        assert isinstance(encoded, bytes)
        return encoded

    def decode(self, data: bytes) -> Any:
        return msgpack.unpackb(
            data,
            raw=False,
            timestamp=3,
            strict_map_key=False,
            ext_hook=self._decode_extension,
        )

    def _encode_extension(self, value: object) -> msgpack.ExtType:
        value_type = type(value)
        if value_type is UUID:
            assert isinstance(value, UUID)
            return msgpack.ExtType(EXTENSION_CODE_UUID, value.bytes)
        if value_type is tuple:
            assert isinstance(value, tuple)
            return msgpack.ExtType(EXTENSION_CODE_TUPLE, self.encode(list(value)))
        if value_type is frozenset:
            assert isinstance(value, frozenset)
            return msgpack.ExtType(EXTENSION_CODE_FROZENSET, self._encode_set(value))
        if value_type is Decimal:
            assert isinstance(value, Decimal)
            return msgpack.ExtType(EXTENSION_CODE_DECIMAL, str(value).encode("ascii"))
        if value_type is datetime:
            msg = "cannot encode a naive datetime: every timestamp must be timezone-aware"
            raise ValueError(msg)
        msg = f"cannot encode a value of type {value_type.__qualname__!r}"
        raise TypeError(msg)

    def _encode_set(self, value: frozenset[object]) -> bytes:
        encoded_elements = sorted(self.encode(element) for element in value)
        array_header = msgpack.Packer().pack_array_header(len(encoded_elements))
        assert isinstance(array_header, bytes)
        return array_header + b"".join(encoded_elements)

    def _decode_extension(self, code: int, data: bytes) -> object:
        if code == EXTENSION_CODE_UUID:
            if len(data) != UUID_SIZE_BYTES:
                msg = f"UUID extension must hold {UUID_SIZE_BYTES} bytes, got {len(data)}"
                raise ValueError(msg)
            return UUID(bytes=data)
        if code == EXTENSION_CODE_TUPLE:
            return tuple(self._decode_array(data))
        if code == EXTENSION_CODE_FROZENSET:
            return frozenset(self._decode_array(data))
        if code == EXTENSION_CODE_DECIMAL:
            try:
                return Decimal(data.decode("ascii"))
            except (UnicodeDecodeError, InvalidOperation) as error:
                msg = "Decimal extension does not hold a decimal number"
                raise ValueError(msg) from error
        msg = f"unknown msgpack extension code {code}"
        raise ValueError(msg)

    def _decode_array(self, data: bytes) -> list[object]:
        decoded = self.decode(data)
        if not isinstance(decoded, list):
            msg = "tuple and frozenset extensions must hold an array"
            raise ValueError(msg)
        return decoded


# --------------------------------------------------------------------------------------
# Data keys
# --------------------------------------------------------------------------------------

VERSION_ID_LENGTH_MAX: Final = 64  # AWS VersionId / ClientRequestToken: 32-64 characters.
KEY_ID_LENGTH_MAX: Final = 256
WRAPPED_KEY_SIZE_BYTES_MAX: Final = 4096

SQLITE_DATA_KEYS_TABLE_NAME: Final = "secret_data_keys"


@dataclass(frozen=True)
class DataKeyRecord:
    """A data key of one secret version, wrapped by a key-encryption key.

    ``wrapped_key`` is ciphertext, but it is still kept out of ``repr``.
    """

    secret_id: UUID
    version_id: str
    key_id: str
    wrapped_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret_id, UUID):
            msg = "secret_id must be a UUID"
            raise TypeError(msg)
        _require_text("version_id", self.version_id, VERSION_ID_LENGTH_MAX)
        _require_text("key_id", self.key_id, KEY_ID_LENGTH_MAX)
        if not isinstance(self.wrapped_key, bytes):
            msg = "wrapped_key must be bytes"
            raise TypeError(msg)
        if not 0 < len(self.wrapped_key) <= WRAPPED_KEY_SIZE_BYTES_MAX:
            msg = f"wrapped_key must hold 1 to {WRAPPED_KEY_SIZE_BYTES_MAX} bytes"
            raise ValueError(msg)


DATA_KEY_CACHE_ENTRIES_MAX: Final = 4096


class DataKeyCache:
    """The stored data keys of recently read versions, still wrapped, so that a read
    does not query the store again for a key it has read before.

    Safe because a destroyed version is refused by its secret before any key is
    looked for (the events that destroy it are folded into the secret), and because
    the keys the events saved by this process destroy are forgotten here as they are
    deleted. A key read while such a save runs is not kept (``generation``). Bounded:
    the oldest entry goes first. Thread-safe."""

    def __init__(self, entries_max: int = DATA_KEY_CACHE_ENTRIES_MAX) -> None:
        assert entries_max > 0, "a cache holds at least one key"
        self.entries_max = entries_max
        self.entries: dict[DataKeyPair, DataKeyRecord] = {}
        self.generation = 0
        self.lock = threading.Lock()

    def get(self, pair: DataKeyPair) -> DataKeyRecord | None:
        return self.entries.get(pair)

    def keep(self, record: DataKeyRecord, read_in_generation: int) -> None:
        """Keep a record read from the store, unless keys were forgotten since."""
        with self.lock:
            if read_in_generation != self.generation:
                return
            if len(self.entries) >= self.entries_max:
                del self.entries[next(iter(self.entries))]
            self.entries[(record.secret_id, record.version_id)] = record

    def forget(self, pairs: Iterable[DataKeyPair]) -> None:
        with self.lock:
            self.generation += 1
            for pair in pairs:
                self.entries.pop(pair, None)


def _require_text(name: str, value: object, length_max: int) -> None:
    if not isinstance(value, str):
        msg = f"{name} must be a str"
        raise TypeError(msg)
    if not 0 < len(value) <= length_max:
        msg = f"{name} must have 1 to {length_max} characters"
        raise ValueError(msg)


class DataKeyNotFoundError(LookupError):
    """Raised when replacing a data key that does not exist (or was destroyed)."""

    def __init__(self, secret_id: UUID, version_id: str) -> None:
        super().__init__(f"no data key for secret {secret_id} version {version_id!r}")
        self.secret_id = secret_id
        self.version_id = version_id


@runtime_checkable
class DataKeyStore(Protocol):
    """What every application recorder built by this module's factories offers.

    Data keys are inserted only through ``app.save(..., data_keys=[...])`` and
    destroyed only through ``app.save(..., destroyed_data_keys=[...])``, so that
    they commit or roll back together with the events that reference them or say
    that they are gone.
    """

    def select_data_key(self, secret_id: UUID, version_id: str) -> DataKeyRecord | None:
        """Returns the data key of one secret version, or None if absent or destroyed."""

    def select_data_keys(self, after: tuple[UUID, str] | None, limit: int) -> list[DataKeyRecord]:
        """Up to ``limit`` data keys ordered by (secret_id, version_id), starting after
        the pair ``after`` (from the first when None): the batches of a resumable
        re-wrap. The order of version ids is the store's own text order (code points
        on SQLite and in memory, the database collation on PostgreSQL); resuming only
        needs it to be the same from one batch to the next, which it is.
        """

    def data_key_count(self) -> int:
        """How many data keys are stored (the length of a re-wrap's progress bar)."""

    def replace_data_keys(self, records: Sequence[DataKeyRecord]) -> None:
        """Overwrites several existing data keys in one transaction: all or none.
        Raises :class:`DataKeyNotFoundError` (and changes nothing) if one is missing,
        e.g. destroyed since it was selected; selecting the batch again skips it.
        """


@runtime_checkable
class LastVersionsStore(Protocol):
    """The newest stored version of many aggregates in one read: what lets a listing
    check that its cached secrets are current without a query for each."""

    def select_last_versions(self, originator_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The newest stored version of each aggregate that has any events."""


LAST_VERSIONS_BATCH_MAX: Final = 500

DATA_KEYS_ARGUMENT: Final = "data_keys"
DATA_KEYS_BATCH_SIZE_MAX: Final = 10_000


def validated_data_key_batch(records: Sequence[DataKeyRecord]) -> tuple[DataKeyRecord, ...]:
    """Checks the argument of ``replace_data_keys``: records, each (secret, version)
    pair at most once, at most :data:`DATA_KEYS_BATCH_SIZE_MAX` of them."""
    if not all(isinstance(record, DataKeyRecord) for record in records):
        msg = "replace_data_keys takes DataKeyRecord objects only"
        raise TypeError(msg)
    if len(records) > DATA_KEYS_BATCH_SIZE_MAX:
        msg = f"at most {DATA_KEYS_BATCH_SIZE_MAX} data keys per batch"
        raise ValueError(msg)
    if len({(record.secret_id, record.version_id) for record in records}) != len(records):
        msg = "a batch of data keys must have distinct (secret_id, version_id)"
        raise ValueError(msg)
    return tuple(records)


def check_data_key_page(after: tuple[UUID, str] | None, limit: int) -> None:
    """Checks the arguments of ``select_data_keys``."""
    if after is not None and not (
        isinstance(after, tuple)
        and len(after) == 2
        and isinstance(after[0], UUID)
        and isinstance(after[1], str)
    ):
        msg = "after must be None or a (secret_id: UUID, version_id: str) pair"
        raise TypeError(msg)
    if not 0 < limit <= DATA_KEYS_BATCH_SIZE_MAX:
        msg = f"limit must be from 1 to {DATA_KEYS_BATCH_SIZE_MAX}"
        raise ValueError(msg)


def validated_data_keys(
    stored_events: Sequence[StoredEvent], arguments: dict[str, Any]
) -> tuple[DataKeyRecord, ...]:
    """Checks the ``data_keys`` argument of ``insert_events`` and returns it as a tuple.

    Invariants: every element is a :class:`DataKeyRecord`; every key belongs to an
    aggregate whose events are in the same batch; no (secret, version) pair repeats;
    there is at most one key per stored event. Violations are programming errors
    (``TypeError``/``ValueError``), not concurrency conflicts (``IntegrityError``).
    """
    data_keys = arguments.get(DATA_KEYS_ARGUMENT)
    if data_keys is None:
        return ()
    if not isinstance(data_keys, list | tuple):
        msg = f"{DATA_KEYS_ARGUMENT} must be a list or tuple of DataKeyRecord"
        raise TypeError(msg)
    if not all(isinstance(record, DataKeyRecord) for record in data_keys):
        msg = f"{DATA_KEYS_ARGUMENT} must contain only DataKeyRecord objects"
        raise TypeError(msg)
    if len(data_keys) > len(stored_events):
        msg = f"at most one data key per stored event ({len(stored_events)} events)"
        raise ValueError(msg)
    originator_ids = {stored_event.originator_id for stored_event in stored_events}
    if any(record.secret_id not in originator_ids for record in data_keys):
        msg = "every data key must belong to an aggregate saved in the same call"
        raise ValueError(msg)
    key_pairs = {(record.secret_id, record.version_id) for record in data_keys}
    if len(key_pairs) != len(data_keys):
        msg = "data keys in one save must have distinct (secret_id, version_id)"
        raise ValueError(msg)
    return tuple(data_keys)


DESTROYED_DATA_KEYS_ARGUMENT: Final = "destroyed_data_keys"

DataKeyPair = tuple[UUID, str]


def validated_destroyed_data_keys(
    stored_events: Sequence[StoredEvent], arguments: dict[str, Any]
) -> tuple[DataKeyPair, ...]:
    """Checks the ``destroyed_data_keys`` argument of ``insert_events``: (secret_id,
    version_id) pairs whose wrapped data keys are deleted in the events' transaction.

    Invariants: every element is a ``(UUID, str)`` pair with a valid version id; every
    pair belongs to an aggregate whose events are in the same batch (the shredding is
    itself an event); no pair repeats. A pair with no stored key is not an error (it
    was destroyed already). Violations are programming errors (``TypeError``/``ValueError``).
    """
    pairs = arguments.get(DESTROYED_DATA_KEYS_ARGUMENT)
    if pairs is None:
        return ()
    if not isinstance(pairs, list | tuple):
        msg = f"{DESTROYED_DATA_KEYS_ARGUMENT} must be a list or tuple of (UUID, str) pairs"
        raise TypeError(msg)
    for pair in pairs:
        _require_data_key_pair(pair)
    originator_ids = {stored_event.originator_id for stored_event in stored_events}
    if any(secret_id not in originator_ids for secret_id, _ in pairs):
        msg = "every destroyed data key must belong to an aggregate saved in the same call"
        raise ValueError(msg)
    if len(set(pairs)) != len(pairs):
        msg = "destroyed data keys in one save must be distinct (secret_id, version_id) pairs"
        raise ValueError(msg)
    return tuple(pairs)


DEFER_ERASURE_ARGUMENT: Final = "defer_erasure"


def validated_defer_erasure(arguments: dict[str, Any]) -> bool:
    """The ``defer_erasure`` argument of ``insert_events`` (default False): whether the
    destroyed keys' bytes may leave the database files later rather than right after
    the commit (SQLite only; see :class:`SQLiteDataKeyRecorder`)."""
    defer_erasure = arguments.get(DEFER_ERASURE_ARGUMENT, False)
    if not isinstance(defer_erasure, bool):
        msg = f"{DEFER_ERASURE_ARGUMENT} must be a bool"
        raise TypeError(msg)
    return defer_erasure


def _require_data_key_pair(pair: object) -> None:
    if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], UUID)):
        msg = f"{DESTROYED_DATA_KEYS_ARGUMENT} must contain (UUID, str) pairs"
        raise TypeError(msg)
    _require_text("version_id", pair[1], VERSION_ID_LENGTH_MAX)


# --------------------------------------------------------------------------------------
# Evidence: the hash chain, checkpoints and Merkle nodes
# --------------------------------------------------------------------------------------

SQLITE_EVENT_HASHES_TABLE_NAME: Final = "event_hashes"
SQLITE_CHECKPOINTS_TABLE_NAME: Final = "checkpoints"
SQLITE_MERKLE_NODES_TABLE_NAME: Final = "merkle_nodes"
MERKLE_NODES_BATCH_SIZE_MAX: Final = 500  # keys per SELECT (two parameters each)


@dataclass(frozen=True)
class EventHash:
    """One row of the event-hashes table: the leaf of one stored event.

    ``leaf_index`` is dense from 0 in log order; ``notification_id`` names the event
    (it is also inside the leaf bytes). ``leaf_hash`` is the RFC 6962 leaf hash and
    ``chain_hash`` the chain value after this leaf (see :mod:`ledger.merkle`). Rows
    read back are reported as stored, unchecked: judging them is the verifier's job.
    """

    leaf_index: int
    notification_id: int
    leaf_hash: bytes
    chain_hash: bytes


@dataclass(frozen=True)
class StoredCheckpoint:
    """One stored checkpoint: its ``sequence`` (0, 1, 2, ...), the tree size it
    covers, and ``line``, the exact JSON line also appended to the checkpoint file."""

    sequence: int
    tree_size: int
    line: str


MerkleNodeKey = tuple[int, int]  # (level >= 1, node_index >= 0)


class WaitRefused(BaseException):
    """A database round trip asked for on a thread that must not wait for one (the
    server's event loop, on PostgreSQL: `PostgresTablesCreatedInTurn.refuse_waits_on`),
    refused before anything is sent. A BaseException, like asyncio's CancelledError,
    so that no ``except Exception`` on the way up answers or records the call as
    failed: the server catches it and runs the call again on a worker thread."""


class EvidenceLogError(RuntimeError):
    """The stored log no longer lines up with its hash chain, so nothing more is
    appended: run ``secretledger verify``. Raised when the events being saved would
    not come after the chain's head (e.g. a deleted event's SQLite rowid reused)."""


@runtime_checkable
class EvidenceStore(Protocol):
    """The tamper-evident side of the application recorders of this module.

    The hash-chain rows are written by the recorder itself, in the transaction that
    inserts the events, under the log's write lock (see ``docs/evidence.md``,
    "Storage"). Nothing else writes them.

    How a verifier reads the log: events with the library's
    ``select_notifications(start, limit)`` (ascending notification id, a page at a
    time, next ``start`` = last id + 1), hash rows with :meth:`select_event_hashes`
    (ascending leaf index, next ``start`` = last leaf index + 1), and pairs the i-th
    event with leaf index i. Leaf i must then name that event's notification id and
    equal the hashes recomputed from its stored fields. Fields are reported as
    stored: an ``originator_id`` that is not a ``UUID`` (on SQLite, a stored id that
    is not the canonical 32 lowercase hex digits), a ``topic`` that is not ``str``
    or a ``state`` that is not ``bytes`` is an edited event.
    """

    def select_event_hashes(self, start: int, limit: int) -> list[EventHash]:
        """Up to ``limit`` hash rows with ``leaf_index >= start``, ascending."""

    def select_event_hash(self, notification_id: int) -> EventHash | None:
        """The hash row of the event at ``notification_id`` (its leaf index), or None."""

    def event_hash_count(self) -> int:
        """The number of leaves: the last leaf index + 1, or 0 when there is none."""

    def insert_checkpoint(self, sequence: int, tree_size: int, line: str) -> None:
        """Stores a checkpoint; ``IntegrityError`` if ``sequence`` is taken."""

    def select_checkpoints(self, start: int = 0) -> list[StoredCheckpoint]:
        """The stored checkpoints whose sequence is ``start`` or more, in sequence order."""

    def select_latest_checkpoint(self) -> StoredCheckpoint | None:
        """The stored checkpoint with the highest sequence (None: none stored)."""

    def select_checkpoint_of_size(self, tree_size: int) -> StoredCheckpoint | None:
        """Of the stored checkpoints of exactly ``tree_size`` events, the one with the
        highest sequence (None: none). An index lookup, however many are stored."""

    def select_checkpoint_sizes_beside(self, tree_size: int) -> tuple[int | None, int | None]:
        """The largest stored tree size below ``tree_size`` and the smallest above it
        (None where there is none): what to suggest when no checkpoint has that size."""

    def insert_merkle_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        """Stores (level, node_index, hash) nodes in one transaction; a key that is
        already stored keeps its hash."""

    def select_merkle_nodes(self, keys: Sequence[MerkleNodeKey]) -> dict[MerkleNodeKey, bytes]:
        """The stored hashes of those of ``keys`` that are stored."""

    def adopt_unchained_events(self) -> int:
        """Hashes every stored event into the chain, in one transaction under the log's
        write lock, if the chain is still empty (a log written before the chain existed);
        the number of events adopted. ``EvidenceLogError`` if the chain holds a row.
        Only ``secretledger checkpoint --adopt-unchained`` calls it (rule W8)."""


ADOPTION_PAGE_SIZE: Final = 10_000


def adopted_event_hashes(
    head: EventHash | None, notifications: Sequence[Notification]
) -> list[EventHash]:
    """The hash rows of a page of unchained events being adopted, after ``head``."""
    for notification in notifications:
        if not isinstance(notification.originator_id, UUID):
            msg = (
                f"event {notification.id} has an originator id in a form this ledger never "
                "writes: refusing to adopt an edited log; run `secretledger verify`"
            )
            raise EvidenceLogError(msg)
    return chained_event_hashes(head, [n.id for n in notifications], notifications)


def unchained_log_refused(hash_count: int) -> EvidenceLogError:
    return EvidenceLogError(
        f"the hash chain already holds {hash_count} events: only a log whose chain is "
        "empty can adopt its events"
    )


def chained_event_hashes(
    head: EventHash | None, notification_ids: Sequence[int], stored_events: Sequence[StoredEvent]
) -> list[EventHash]:
    """The hash rows of events just stored after the chain's ``head`` (None: empty).

    Computed from the records exactly as stored; ``notification_ids[i]`` is the id of
    ``stored_events[i]``. Leaves follow notification-id order. Must run under the
    log's write lock, with ``head`` read under it too.
    """
    assert len(notification_ids) == len(stored_events), "one notification id per event"
    records = sorted(zip(notification_ids, stored_events, strict=True), key=lambda pair: pair[0])
    previous_chain_hash = GENESIS_CHAIN_HASH if head is None else head.chain_hash
    leaf_index = 0 if head is None else head.leaf_index + 1
    if head is not None and records and records[0][0] <= head.notification_id:
        msg = (
            f"event {records[0][0]} would follow leaf {head.leaf_index} of event "
            f"{head.notification_id}: the log was edited; run `secretledger verify`"
        )
        raise EvidenceLogError(msg)
    hashes: list[EventHash] = []
    for notification_id, stored_event in records:
        assert isinstance(stored_event.originator_id, UUID), "the ledger's ids are UUIDs"
        leaf = leaf_bytes(
            notification_id=notification_id,
            originator_id=stored_event.originator_id,
            originator_version=stored_event.originator_version,
            topic=stored_event.topic,
            state=stored_event.state,
        )
        previous_chain_hash = chain_hash(previous_chain_hash, leaf_index, leaf)
        hashes.append(EventHash(leaf_index, notification_id, leaf_hash(leaf), previous_chain_hash))
        leaf_index += 1
    assert len({event_hash.notification_id for event_hash in hashes}) == len(hashes)
    return hashes


def event_hash_rows(hashes: Iterable[EventHash]) -> list[tuple[int, int, bytes, bytes]]:
    return [(h.leaf_index, h.notification_id, h.leaf_hash, h.chain_hash) for h in hashes]


def check_event_hash_page(start: int, limit: int) -> None:
    assert isinstance(start, int) and start >= 0, "start is a leaf index"
    assert isinstance(limit, int) and limit > 0, "limit is positive"


def check_notification_id(notification_id: int) -> None:
    assert isinstance(notification_id, int) and notification_id >= 0, "a notification id"


TREE_SIZE_MAX: Final = 2**63 - 1  # a tree size is stored as a signed 64-bit integer


def check_tree_size(tree_size: int) -> None:
    assert isinstance(tree_size, int) and 0 <= tree_size <= TREE_SIZE_MAX, "a storable tree size"


def check_checkpoint(sequence: int, tree_size: int, line: str) -> None:
    assert isinstance(sequence, int) and sequence >= 0, "checkpoint sequences start at 0"
    check_tree_size(tree_size)
    assert isinstance(line, str) and line and "\n" not in line, "one non-empty line"


def checked_merkle_nodes(
    nodes: Sequence[tuple[int, int, bytes]],
) -> list[tuple[int, int, bytes]]:
    """The nodes, checked (level >= 1, node_index >= 0, 32-byte hash), each key once."""
    checked = [(level, node_index, bytes(node_hash)) for level, node_index, node_hash in nodes]
    for level, node_index, node_hash in checked:
        assert level >= 1 and node_index >= 0, "level >= 1 and node_index >= 0"
        assert len(node_hash) == HASH_SIZE_BYTES, "Merkle node hashes are 32 bytes"
    keys = {(level, node_index) for level, node_index, _ in checked}
    assert len(keys) == len(checked), "each node at most once per call"
    return checked


def merkle_node_key_batches(keys: Sequence[MerkleNodeKey]) -> list[list[MerkleNodeKey]]:
    unique_keys = sorted(set(keys))
    for level, node_index in unique_keys:
        assert level >= 1 and node_index >= 0, "level >= 1 and node_index >= 0"
    size = MERKLE_NODES_BATCH_SIZE_MAX
    return [unique_keys[start : start + size] for start in range(0, len(unique_keys), size)]


# --------------------------------------------------------------------------------------
# Database files
# --------------------------------------------------------------------------------------

DATABASE_FILE_MODE: Final = 0o600
SQLITE_COMPANION_SUFFIXES: Final = ("-wal", "-shm", "-journal")


def make_sqlite_files_private(database_path: str) -> None:
    """Creates a SQLite database file with mode 0600 before SQLite opens it, and takes
    group and other permissions off an existing one and its -wal, -shm and -journal
    files (SQLite creates those with the database file's mode).

    Files owned by another user are left alone (reading a copy shared on purpose
    still works); so are in-memory databases and ``file:`` URIs.
    """
    if not database_path or ":memory:" in database_path or database_path.startswith("file:"):
        return
    try:
        descriptor = os.open(
            database_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, DATABASE_FILE_MODE
        )
    except FileExistsError:
        pass
    except OSError:
        return  # e.g. no such directory: SQLite reports it in its own terms
    else:
        try:
            os.fchmod(descriptor, DATABASE_FILE_MODE)  # the umask may have removed owner bits
        finally:
            os.close(descriptor)
    for path in (database_path, *(database_path + s for s in SQLITE_COMPANION_SUFFIXES)):
        _remove_group_and_other_permissions(path)


def _remove_group_and_other_permissions(path: str) -> None:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(status.st_mode)
    if status.st_uid == os.geteuid() and mode & 0o077:
        os.chmod(path, mode & 0o700)


# --------------------------------------------------------------------------------------
# In-memory (POPO) backend
# --------------------------------------------------------------------------------------


class POPODataKeyRecorder(POPORecorderHooks):
    """In-memory application recorder with a data-key table and the evidence tables.

    Uniqueness of events *and* data keys is checked under the database lock before
    anything is written, so a conflicting save leaves no trace. The hash chain is
    extended under the same lock, right after the events are appended.
    """

    def __init__(self) -> None:
        super().__init__()
        self._data_keys: dict[tuple[UUID, str], DataKeyRecord] = {}
        self._event_hashes: list[EventHash] = []
        self._leaf_indexes: dict[int, int] = {}  # notification id -> leaf index
        self._checkpoints: dict[int, StoredCheckpoint] = {}
        self._merkle_nodes: dict[MerkleNodeKey, bytes] = {}

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        kwargs[DATA_KEYS_ARGUMENT] = validated_data_keys(stored_events, kwargs)
        kwargs[DESTROYED_DATA_KEYS_ARGUMENT] = validated_destroyed_data_keys(stored_events, kwargs)
        validated_defer_erasure(kwargs)  # nothing to erase: memory holds no old copies
        return super().insert_events(stored_events, **kwargs)

    def check_new_rows(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        records: tuple[DataKeyRecord, ...] = kwargs[DATA_KEYS_ARGUMENT]
        for record in records:
            if (record.secret_id, record.version_id) in self._data_keys:
                msg = (
                    f"Data key already recorded: secret {record.secret_id} "
                    f"version {record.version_id!r}"
                )
                raise IntegrityError(msg)

    def append_evidence(self, inserted: InsertedEvents) -> None:
        records: tuple[DataKeyRecord, ...] = inserted.arguments[DATA_KEYS_ARGUMENT]
        for record in records:
            self._data_keys[(record.secret_id, record.version_id)] = record
        self._destroy_data_keys(inserted.arguments[DESTROYED_DATA_KEYS_ARGUMENT])
        self._append_event_hashes(inserted.stored_events, inserted.notification_ids)

    def _destroy_data_keys(self, pairs: tuple[DataKeyPair, ...]) -> None:
        """Crypto-shredding, under the database lock of the events' insert."""
        for pair in pairs:
            self._data_keys.pop(pair, None)

    def _append_event_hashes(
        self, stored_events: Sequence[StoredEvent], notification_ids: Sequence[int]
    ) -> None:
        """Extends the hash chain; runs under the database lock (``append_evidence``)."""
        head = self._event_hashes[-1] if self._event_hashes else None
        hashes = chained_event_hashes(head, notification_ids, stored_events)
        self._event_hashes.extend(hashes)
        self._leaf_indexes.update((row.notification_id, row.leaf_index) for row in hashes)

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """Walk only the requested version range: the library scans every version of
        the aggregate, which makes a put's cost grow with the secret's history."""
        with self._database_lock:
            index = self._stored_events_index[str(originator_id)]
            if not index:
                return []
            low = next(iter(index)) if gt is None else gt + 1
            high = next(reversed(index)) if lte is None else lte
            versions = range(high, low - 1, -1) if desc else range(low, high + 1)
            results: list[StoredEvent] = []
            for version in versions:
                position = index.get(version)
                if position is None:
                    continue
                results.append(self._stored_events[position])
                if limit is not None and len(results) == limit:
                    break
            return results

    def select_last_versions(self, originator_ids: Sequence[UUID]) -> dict[UUID, int]:
        versions: dict[UUID, int] = {}
        for originator_id in originator_ids:
            last = self.select_events(originator_id, desc=True, limit=1)
            if last:
                versions[originator_id] = last[0].originator_version
        return versions

    def select_data_key(self, secret_id: UUID, version_id: str) -> DataKeyRecord | None:
        with self._database_lock:
            return self._data_keys.get((secret_id, version_id))

    def select_data_keys(self, after: tuple[UUID, str] | None, limit: int) -> list[DataKeyRecord]:
        check_data_key_page(after, limit)
        with self._database_lock:
            pairs = sorted(pair for pair in self._data_keys if after is None or pair > after)
            return [self._data_keys[pair] for pair in pairs[:limit]]

    def data_key_count(self) -> int:
        with self._database_lock:
            return len(self._data_keys)

    def replace_data_keys(self, records: Sequence[DataKeyRecord]) -> None:
        batch = validated_data_key_batch(records)
        with self._database_lock:
            for record in batch:
                if (record.secret_id, record.version_id) not in self._data_keys:
                    raise DataKeyNotFoundError(record.secret_id, record.version_id)
            for record in batch:
                self._data_keys[(record.secret_id, record.version_id)] = record

    # Evidence

    def select_event_hashes(self, start: int, limit: int) -> list[EventHash]:
        check_event_hash_page(start, limit)
        with self._database_lock:
            return self._event_hashes[start : start + limit]

    def select_event_hash(self, notification_id: int) -> EventHash | None:
        check_notification_id(notification_id)
        with self._database_lock:
            leaf_index = self._leaf_indexes.get(notification_id)
            return None if leaf_index is None else self._event_hashes[leaf_index]

    def event_hash_count(self) -> int:
        with self._database_lock:
            return len(self._event_hashes)

    def insert_checkpoint(self, sequence: int, tree_size: int, line: str) -> None:
        check_checkpoint(sequence, tree_size, line)
        with self._database_lock:
            if sequence in self._checkpoints:
                msg = f"Checkpoint {sequence} already recorded"
                raise IntegrityError(msg)
            self._checkpoints[sequence] = StoredCheckpoint(sequence, tree_size, line)

    def select_checkpoints(self, start: int = 0) -> list[StoredCheckpoint]:
        with self._database_lock:
            return [
                self._checkpoints[sequence]
                for sequence in sorted(self._checkpoints)
                if sequence >= start
            ]

    def select_latest_checkpoint(self) -> StoredCheckpoint | None:
        with self._database_lock:
            return self._checkpoints[max(self._checkpoints)] if self._checkpoints else None

    def select_checkpoint_of_size(self, tree_size: int) -> StoredCheckpoint | None:
        check_tree_size(tree_size)
        with self._database_lock:
            of_size = [c for c in self._checkpoints.values() if c.tree_size == tree_size]
        return max(of_size, key=lambda checkpoint: checkpoint.sequence, default=None)

    def select_checkpoint_sizes_beside(self, tree_size: int) -> tuple[int | None, int | None]:
        check_tree_size(tree_size)
        with self._database_lock:
            sizes = {checkpoint.tree_size for checkpoint in self._checkpoints.values()}
        return (
            max((size for size in sizes if size < tree_size), default=None),
            min((size for size in sizes if size > tree_size), default=None),
        )

    def insert_merkle_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        checked = checked_merkle_nodes(nodes)
        with self._database_lock:
            for level, node_index, node_hash in checked:
                self._merkle_nodes.setdefault((level, node_index), node_hash)

    def select_merkle_nodes(self, keys: Sequence[MerkleNodeKey]) -> dict[MerkleNodeKey, bytes]:
        batches = merkle_node_key_batches(keys)
        with self._database_lock:
            return {
                key: self._merkle_nodes[key]
                for batch in batches
                for key in batch
                if key in self._merkle_nodes
            }

    def adopt_unchained_events(self) -> int:
        with self._database_lock:
            if self._event_hashes:
                raise unchained_log_refused(len(self._event_hashes))
            notifications = self.select_notifications(None, len(self._stored_events) or 1)
            hashes = adopted_event_hashes(None, notifications)
            self._event_hashes.extend(hashes)
            return len(hashes)


class LedgerPOPOFactory(POPOFactory):
    """In-memory persistence (``--db memory:``) with the data-key table."""

    def application_recorder(self) -> ApplicationRecorder:
        return POPODataKeyRecorder()


# --------------------------------------------------------------------------------------
# SQLite backend
# --------------------------------------------------------------------------------------


class DurableSQLiteConnectionPool(SQLiteConnectionHooks):
    """Connections that survive power loss, and that really erase deleted rows.

    The library already switches file databases to WAL. On top of that, every
    connection sets ``synchronous=FULL`` (the WAL is synced on every commit, so a
    committed save survives an OS crash or power loss, not only a process crash) and
    ``secure_delete=ON`` (deleted and overwritten content is zeroed, so a destroyed
    data key does not linger in free pages). The database files are private (0600,
    see :func:`make_sqlite_files_private`).
    """

    CONNECTION_PRAGMAS: Final = ("PRAGMA synchronous=FULL", "PRAGMA secure_delete=ON")

    def before_connecting(self) -> None:
        if not self.is_sqlite_memory_mode:
            make_sqlite_files_private(self.db_name)

    def prepare_connection(self, connection: SQLiteConnection) -> None:
        try:
            with connection.cursor() as cursor:
                for pragma in self.CONNECTION_PRAGMAS:
                    cursor.execute(pragma)
        except sqlite3.Error:
            connection.close()
            raise


def is_storage_failure(error: BaseException | None) -> bool:
    """A failure of the database (unreachable, locked, full, closed), not of what
    was being saved: trying the same rows again, alone, would meet it again."""
    return isinstance(error, OperationalError | InterfaceError | ConnectionPoolClosedError)


ERASURE_DELAY_SECONDS_MAX: Final = 60.0
GROUP_SAVES_MAX: Final = 64  # saves that one commit carries at most


@dataclass
class PendingSave:
    """One `insert_events` call, waiting for the commit that carries it. Settled
    (``is_settled``) once that commit is done: with its notification ids, or with
    the error it must raise. ``is_done``: its thread may return (settled, or its
    leader was interrupted)."""

    stored_events: Sequence[StoredEvent]
    kwargs: dict[str, Any]
    notification_ids: Sequence[int] | None = None
    error: Exception | None = None
    is_settled: bool = False
    is_done: bool = False

    def settle(self, outcome: Sequence[int] | Exception | None) -> None:
        assert not self.is_settled, "a save is settled once"
        if isinstance(outcome, Exception):
            self.error = outcome
        else:
            self.notification_ids = outcome
        self.is_settled = True

    @property
    def is_destroying(self) -> bool:
        return self.error is None and bool(self.kwargs[DESTROYED_DATA_KEYS_ARGUMENT])


class CommitGroup:
    """Group commit: the saves that threads of one process ask for while a commit is
    under way are committed together by the next one, with one fsync.

    A thread that finds no commit under way leads: it takes up to
    ``GROUP_SAVES_MAX`` waiting saves (its own among them), has ``commit_saves``
    commit them and sets each one's outcome; the others wait for theirs. How the
    saves are committed, each still atomic and isolated from the others, is
    ``commit_saves``'s business (`SQLiteDataKeyRecorder._commit_saves`)."""

    def __init__(self, commit_saves: Callable[[list[PendingSave]], None]) -> None:
        self._commit_saves = commit_saves
        self._condition = threading.Condition()
        self._waiting: list[PendingSave] = []
        self._is_leading = False

    def commit(self, save: PendingSave) -> Sequence[int] | None:
        """The save's notification ids once its commit is done, or its error."""
        with self._condition:
            self._waiting.append(save)
        while not save.is_done:
            saves = self._lead_or_wait(save)
            if saves:
                self._commit_as_leader(saves)
        if save.error is not None:
            raise save.error
        return save.notification_ids

    def _lead_or_wait(self, save: PendingSave) -> list[PendingSave]:
        with self._condition:
            while self._is_leading and not save.is_done:
                self._condition.wait()
            if save.is_done:
                return []
            self._is_leading = True
            saves = self._waiting[:GROUP_SAVES_MAX]
            del self._waiting[:GROUP_SAVES_MAX]
            return saves

    def _commit_as_leader(self, saves: list[PendingSave]) -> None:
        try:
            self._commit_saves(saves)
        finally:
            with self._condition:
                for save in saves:
                    if not save.is_settled:  # the leader was interrupted (not an Exception)
                        save.settle(OperationalError("The commit was interrupted."))
                    save.is_done = True
                self._is_leading = False
                self._condition.notify_all()


GROUPED_SAVE_SAVEPOINT: Final = "grouped_save"


class SQLiteDataKeyRecorder(SQLiteRecorderHooks):
    """SQLite application recorder with the ``secret_data_keys`` table and the
    evidence tables ``event_hashes``, ``checkpoints`` and ``merkle_nodes``.

    The library's transaction starts with a deferred ``BEGIN``, and the first
    statement of a save is an event ``INSERT``: that takes the database's write lock
    (and, in WAL mode, a snapshot that is the newest one). Only then is the chain's
    head read and extended, in the same transaction. Saves of concurrent threads
    share a commit (`CommitGroup`, `_commit_saves`): each in a savepoint, which
    writes nothing, so the first save's ``INSERT`` still takes the lock.

    Destroyed data keys are deleted in the events' transaction too; ``secure_delete``
    zeroes their bytes in the new page images. The old images stay in the database
    file and in older frames of the -wal file until a checkpoint, so after the commit
    the recorder checkpoints the WAL with TRUNCATE (about as costly as the commit
    itself). A save with ``defer_erasure=True`` (routine shredding, such as retention)
    leaves that checkpoint to the first commit at least ``ERASURE_DELAY_SECONDS_MAX``
    later, or to an earlier save that erases at once; when the last connection
    closes, SQLite checkpoints and deletes the -wal file itself.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prepare_evidence_statements()
        # Monotonic time by which deferred erasures are due, None if none is pending.
        # Commits are serialized by SQLite; a race here only moves one checkpoint.
        self._erasure_due_monotonic: float | None = None
        self.commit_group = CommitGroup(self._commit_saves)
        table = SQLITE_DATA_KEYS_TABLE_NAME
        self.insert_data_key_statement = f"INSERT INTO {table} VALUES (?,?,?,?)"
        self.select_data_key_statement = (
            f"SELECT key_id, wrapped_key FROM {table} WHERE secret_id=? AND version_id=?"
        )
        self.delete_data_key_statement = f"DELETE FROM {table} WHERE secret_id=? AND version_id=?"
        self.update_data_key_statement = (
            f"UPDATE {table} SET key_id=?, wrapped_key=? "
            "WHERE secret_id=? AND version_id=? RETURNING secret_id"
        )
        data_key_columns = f"SELECT secret_id, version_id, key_id, wrapped_key FROM {table} "
        self.select_data_keys_statement = (
            f"{data_key_columns}ORDER BY secret_id, version_id LIMIT ?"
        )
        self.select_data_keys_after_statement = (
            f"{data_key_columns}WHERE (secret_id, version_id) > (?, ?) "
            "ORDER BY secret_id, version_id LIMIT ?"
        )
        self.count_data_keys_statement = f"SELECT COUNT(*) FROM {table}"

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {SQLITE_DATA_KEYS_TABLE_NAME} ("
            "secret_id TEXT NOT NULL, "
            "version_id TEXT NOT NULL, "
            "key_id TEXT NOT NULL, "
            "wrapped_key BLOB NOT NULL, "
            "PRIMARY KEY (secret_id, version_id)) "
            "WITHOUT ROWID"
        )
        statements.extend(self._evidence_create_table_statements())
        return statements

    def convert_originator_id(self, originator_id: str) -> UUID | str:
        """The stored id as a UUID when it is in the form this recorder writes (32
        lowercase hex digits); otherwise as the text stored, so that an id rewritten
        in another spelling of the same UUID (which hides the event from its
        aggregate) cannot pass for the original. See :class:`EvidenceStore`."""
        converted = super().convert_originator_id(originator_id)
        if isinstance(converted, UUID) and converted.hex != originator_id:
            return originator_id
        return converted

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Validates the save in the caller's thread (a refused save never reaches a
        commit), then commits it in a group with the saves of other threads that
        arrive meanwhile (`CommitGroup`, `_commit_saves`)."""
        kwargs[DATA_KEYS_ARGUMENT] = validated_data_keys(stored_events, kwargs)
        kwargs[DESTROYED_DATA_KEYS_ARGUMENT] = validated_destroyed_data_keys(stored_events, kwargs)
        kwargs[DEFER_ERASURE_ARGUMENT] = validated_defer_erasure(kwargs)
        return self.commit_group.commit(PendingSave(stored_events, kwargs))

    def _commit_saves(self, saves: list[PendingSave]) -> None:
        """Commits a group: one transaction, each save in a savepoint of its own, so
        that one save's conflict (an IntegrityError) rolls back that save alone and
        its neighbours commit. If the transaction fails otherwise, nothing of it is
        written: a failure of the database (`is_storage_failure`: locked, full,
        closed) fails every save of the group with it, after one wait; any other
        (a save the database or the code refuses) has each save tried again in a
        transaction of its own, so that each gets its own outcome."""
        if len(saves) > 1:
            try:
                outcomes = self._commit_together(saves)
            except Exception as error:
                if is_storage_failure(error):
                    for save in saves:
                        save.settle(copy.copy(error))
                    return
            else:
                for save, outcome in zip(saves, outcomes, strict=True):
                    save.settle(outcome)
                self._erase_after_saves(saves)
                return
        self._commit_one_by_one(saves)

    def _commit_one_by_one(self, saves: list[PendingSave]) -> None:
        storage_failure: Exception | None = None
        for save in saves:
            if storage_failure is not None:  # met by a save before: not waited for again
                save.settle(copy.copy(storage_failure))
                continue
            try:
                with self.datastore.transaction(commit=True) as c:
                    notification_ids = self._insert_events(c, save.stored_events, **save.kwargs)
            except Exception as error:
                save.settle(error)
                storage_failure = error if is_storage_failure(error) else None
            else:
                save.settle(notification_ids)
        self._erase_after_saves(saves)

    def _commit_together(self, saves: list[PendingSave]) -> list[Sequence[int] | Exception]:
        """Each save's notification ids, or its conflict; returns once committed."""
        outcomes: list[Sequence[int] | Exception] = []
        with self.datastore.transaction(commit=True) as c:
            for save in saves:
                c.execute(f"SAVEPOINT {GROUPED_SAVE_SAVEPOINT}")
                try:
                    notification_ids = self._insert_events(c, save.stored_events, **save.kwargs)
                except (sqlite3.IntegrityError, IntegrityError) as error:
                    c.execute(f"ROLLBACK TO {GROUPED_SAVE_SAVEPOINT}")
                    outcomes.append(IntegrityError(error))
                else:
                    assert notification_ids is not None, "the events' rowids"
                    outcomes.append(notification_ids)
                c.execute(f"RELEASE {GROUPED_SAVE_SAVEPOINT}")
        return outcomes

    def _erase_after_saves(self, saves: list[PendingSave]) -> None:
        destroying = [save for save in saves if save.is_destroying]
        self._erase_after_commit(
            is_destroying=bool(destroying),
            defer_erasure=all(save.kwargs[DEFER_ERASURE_ARGUMENT] for save in destroying),
        )

    def _erase_after_commit(self, *, is_destroying: bool, defer_erasure: bool) -> None:
        """Checkpoints the WAL now if this commit destroyed keys without deferring,
        or if deferred erasures are due; otherwise remembers when they will be."""
        now_monotonic = time.monotonic()
        if is_destroying and defer_erasure and self._erasure_due_monotonic is None:
            self._erasure_due_monotonic = now_monotonic + ERASURE_DELAY_SECONDS_MAX
        due = self._erasure_due_monotonic
        if (is_destroying and not defer_erasure) or (due is not None and now_monotonic >= due):
            self._checkpoint_write_ahead_log()
            self._erasure_due_monotonic = None

    def insert_evidence(self, c: SQLiteCursor, inserted: InsertedEvents) -> None:
        records: tuple[DataKeyRecord, ...] = inserted.arguments[DATA_KEYS_ARGUMENT]
        if records:
            c.executemany(
                self.insert_data_key_statement,
                [
                    (record.secret_id.hex, record.version_id, record.key_id, record.wrapped_key)
                    for record in records
                ],
            )
        self._destroy_data_keys(c, inserted.arguments[DESTROYED_DATA_KEYS_ARGUMENT])
        self._insert_event_hashes(c, inserted.stored_events, inserted.notification_ids)

    def _destroy_data_keys(self, c: SQLiteCursor, pairs: tuple[DataKeyPair, ...]) -> None:
        """Crypto-shredding in the events' transaction: ``secure_delete`` zeroes the
        rows' bytes in the pages; the WAL is checkpointed after the commit."""
        if pairs:
            c.executemany(
                self.delete_data_key_statement,
                [(secret_id.hex, version_id) for secret_id, version_id in pairs],
            )

    def select_last_versions(self, originator_ids: Sequence[UUID]) -> dict[UUID, int]:
        versions: dict[UUID, int] = {}
        for start in range(0, len(originator_ids), LAST_VERSIONS_BATCH_MAX):
            batch = originator_ids[start : start + LAST_VERSIONS_BATCH_MAX]
            statement = (
                "SELECT originator_id, MAX(originator_version) AS version "
                f"FROM {self.events_table_name} "
                f"WHERE originator_id IN ({','.join('?' * len(batch))}) GROUP BY originator_id"
            )
            with self.datastore.transaction(commit=False) as c:
                c.execute(statement, [originator_id.hex for originator_id in batch])
                rows = c.fetchall()
            for row in rows:
                converted = self.convert_originator_id(row["originator_id"])
                assert isinstance(converted, UUID), "the ledger's aggregates have UUIDs"
                versions[converted] = int(row["version"])
        return versions

    def select_data_key(self, secret_id: UUID, version_id: str) -> DataKeyRecord | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.select_data_key_statement, (secret_id.hex, version_id))
            row = c.fetchone()
        if row is None:
            return None
        return DataKeyRecord(
            secret_id=secret_id,
            version_id=version_id,
            key_id=row["key_id"],
            wrapped_key=bytes(row["wrapped_key"]),
        )

    def select_data_keys(self, after: tuple[UUID, str] | None, limit: int) -> list[DataKeyRecord]:
        check_data_key_page(after, limit)
        statement = self.select_data_keys_statement
        parameters: tuple[Any, ...] = (limit,)
        if after is not None:
            statement = self.select_data_keys_after_statement
            parameters = (after[0].hex, after[1], limit)
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, parameters)
            rows = c.fetchall()
        return [
            DataKeyRecord(
                secret_id=UUID(row["secret_id"]),
                version_id=row["version_id"],
                key_id=row["key_id"],
                wrapped_key=bytes(row["wrapped_key"]),
            )
            for row in rows
        ]

    def data_key_count(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.count_data_keys_statement)
            count: int = c.fetchone()[0]
        return count

    def replace_data_keys(self, records: Sequence[DataKeyRecord]) -> None:
        batch = validated_data_key_batch(records)
        if not batch:
            return
        with self.datastore.transaction(commit=True) as c:
            for record in batch:
                c.execute(
                    self.update_data_key_statement,
                    (record.key_id, record.wrapped_key, record.secret_id.hex, record.version_id),
                )
                if c.fetchone() is None:
                    raise DataKeyNotFoundError(record.secret_id, record.version_id)
        self._checkpoint_write_ahead_log()

    def _checkpoint_write_ahead_log(self) -> None:
        """Copies the zeroed pages into the database file and truncates the WAL.

        Best effort: with concurrent readers the checkpoint may stop early; the old
        frames are then overwritten by a later checkpoint instead.
        """
        if self.datastore.pool.is_sqlite_memory_mode:
            return
        with (
            self.datastore.get_connection(commit=True) as connection,
            connection.cursor() as cursor,
            contextlib.suppress(sqlite3.OperationalError),
        ):
            # The change is committed already; a busy database only delays the erasure.
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # Evidence

    def _prepare_evidence_statements(self) -> None:
        hashes = SQLITE_EVENT_HASHES_TABLE_NAME
        hash_columns = "leaf_index, notification_id, leaf_hash, chain_hash"
        self.select_event_hash_head_statement = (
            f"SELECT {hash_columns} FROM {hashes} ORDER BY leaf_index DESC LIMIT 1"
        )
        self.insert_event_hash_statement = f"INSERT INTO {hashes} ({hash_columns}) VALUES (?,?,?,?)"
        self.select_event_hashes_statement = (
            f"SELECT {hash_columns} FROM {hashes} WHERE leaf_index >= ? ORDER BY leaf_index LIMIT ?"
        )
        self.select_event_hash_last_index_statement = f"SELECT MAX(leaf_index) FROM {hashes}"
        self.select_event_hash_by_notification_statement = (
            f"SELECT {hash_columns} FROM {hashes} WHERE notification_id = ?"
        )
        checkpoints = SQLITE_CHECKPOINTS_TABLE_NAME
        self.insert_checkpoint_statement = (
            f"INSERT INTO {checkpoints} (sequence, tree_size, line) VALUES (?,?,?)"
        )
        checkpoint_rows = f"SELECT sequence, tree_size, line FROM {checkpoints} "
        self.select_checkpoints_statement = (
            f"{checkpoint_rows}WHERE sequence >= ? ORDER BY sequence"
        )
        self.select_latest_checkpoint_statement = f"{checkpoint_rows}ORDER BY sequence DESC LIMIT 1"
        self.select_checkpoint_of_size_statement = (
            f"{checkpoint_rows}WHERE tree_size = ? ORDER BY sequence DESC LIMIT 1"
        )
        self.select_checkpoint_sizes_beside_statement = (
            f"SELECT (SELECT MAX(tree_size) FROM {checkpoints} WHERE tree_size < ?), "
            f"(SELECT MIN(tree_size) FROM {checkpoints} WHERE tree_size > ?)"
        )
        nodes = SQLITE_MERKLE_NODES_TABLE_NAME
        self.insert_merkle_node_statement = (
            f"INSERT INTO {nodes} (level, node_index, hash) VALUES (?,?,?) ON CONFLICT DO NOTHING"
        )
        # The keys drive the loop (CROSS JOIN fixes SQLite's join order), so each one
        # is a primary-key seek; "(level, node_index) IN (VALUES ...)" scans the table.
        self.select_merkle_nodes_statement_prefix = "WITH wanted(level, node_index) AS (VALUES "
        self.select_merkle_nodes_statement_suffix = (
            f") SELECT n.level, n.node_index, n.hash FROM wanted CROSS JOIN {nodes} AS n "
            "ON n.level = wanted.level AND n.node_index = wanted.node_index"
        )
        # A write that changes nothing: it takes the file's write lock first thing.
        self.lock_event_hashes_statement = f"DELETE FROM {hashes} WHERE 0"
        self.count_event_hashes_statement = f"SELECT COUNT(*) FROM {hashes}"
        self.select_unchained_events_statement = (
            "SELECT rowid, originator_id, originator_version, topic, state "
            f"FROM {self.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?"
        )

    @staticmethod
    def _evidence_create_table_statements() -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {SQLITE_EVENT_HASHES_TABLE_NAME} ("
            "leaf_index INTEGER PRIMARY KEY CHECK (leaf_index >= 0), "
            "notification_id INTEGER NOT NULL UNIQUE, "
            f"leaf_hash BLOB NOT NULL CHECK (length(leaf_hash) = {HASH_SIZE_BYTES}), "
            f"chain_hash BLOB NOT NULL CHECK (length(chain_hash) = {HASH_SIZE_BYTES}))",
            f"CREATE TABLE IF NOT EXISTS {SQLITE_CHECKPOINTS_TABLE_NAME} ("
            "sequence INTEGER PRIMARY KEY CHECK (sequence >= 0), "
            "tree_size INTEGER NOT NULL CHECK (tree_size >= 0), "
            "line TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {SQLITE_CHECKPOINTS_TABLE_NAME}_by_size "
            f"ON {SQLITE_CHECKPOINTS_TABLE_NAME} (tree_size, sequence)",
            f"CREATE TABLE IF NOT EXISTS {SQLITE_MERKLE_NODES_TABLE_NAME} ("
            "level INTEGER NOT NULL CHECK (level >= 1), "
            "node_index INTEGER NOT NULL CHECK (node_index >= 0), "
            f"hash BLOB NOT NULL CHECK (length(hash) = {HASH_SIZE_BYTES}), "
            "PRIMARY KEY (level, node_index)) "
            "WITHOUT ROWID",
        ]

    def _insert_event_hashes(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], notification_ids: Sequence[int]
    ) -> None:
        """Extends the hash chain in the events' transaction. The events' INSERTs
        before this hold the write lock, so the head read here is the newest one
        and no other writer can extend the chain until this transaction ends."""
        if not stored_events:
            return
        assert c.sqlite_cursor.connection.in_transaction, "inside the events' transaction"
        c.execute(self.select_event_hash_head_statement)
        head_row = c.fetchone()
        head = None if head_row is None else event_hash_from_row(head_row)
        hashes = chained_event_hashes(head, notification_ids, stored_events)
        c.executemany(self.insert_event_hash_statement, event_hash_rows(hashes))

    def select_event_hashes(self, start: int, limit: int) -> list[EventHash]:
        check_event_hash_page(start, limit)
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.select_event_hashes_statement, (start, limit))
            rows = c.fetchall()
        # Columns by position (leaf_index, notification_id, leaf_hash, chain_hash): a
        # verifier reads every row, and name lookups cost a tenth of its walk.
        return [EventHash(row[0], row[1], bytes(row[2]), bytes(row[3])) for row in rows]

    def select_event_hash(self, notification_id: int) -> EventHash | None:
        check_notification_id(notification_id)
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.select_event_hash_by_notification_statement, (notification_id,))
            row = c.fetchone()
        return None if row is None else event_hash_from_row(row)

    def event_hash_count(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.select_event_hash_last_index_statement)
            last_leaf_index = c.fetchone()[0]
        return 0 if last_leaf_index is None else int(last_leaf_index) + 1

    def insert_checkpoint(self, sequence: int, tree_size: int, line: str) -> None:
        check_checkpoint(sequence, tree_size, line)
        with self.datastore.transaction(commit=True) as c:
            c.execute(self.insert_checkpoint_statement, (sequence, tree_size, line))

    def select_checkpoints(self, start: int = 0) -> list[StoredCheckpoint]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.select_checkpoints_statement, (start,))
            rows = c.fetchall()
        return [checkpoint_from_row(row) for row in rows]

    def select_latest_checkpoint(self) -> StoredCheckpoint | None:
        return self._select_checkpoint(self.select_latest_checkpoint_statement, ())

    def select_checkpoint_of_size(self, tree_size: int) -> StoredCheckpoint | None:
        check_tree_size(tree_size)
        return self._select_checkpoint(self.select_checkpoint_of_size_statement, (tree_size,))

    def _select_checkpoint(
        self, statement: str, parameters: tuple[int, ...]
    ) -> StoredCheckpoint | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, parameters)
            row = c.fetchone()
        return None if row is None else checkpoint_from_row(row)

    def select_checkpoint_sizes_beside(self, tree_size: int) -> tuple[int | None, int | None]:
        check_tree_size(tree_size)
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.select_checkpoint_sizes_beside_statement, (tree_size, tree_size))
            below, above = c.fetchone()
        return below, above

    def insert_merkle_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        checked = checked_merkle_nodes(nodes)
        if not checked:
            return
        with self.datastore.transaction(commit=True) as c:
            c.executemany(self.insert_merkle_node_statement, checked)

    def select_merkle_nodes(self, keys: Sequence[MerkleNodeKey]) -> dict[MerkleNodeKey, bytes]:
        found: dict[MerkleNodeKey, bytes] = {}
        batches = merkle_node_key_batches(keys)
        if not batches:
            return found
        with self.datastore.transaction(commit=False) as c:
            for batch in batches:
                placeholders = ",".join("(?,?)" for _ in batch)
                c.execute(
                    f"{self.select_merkle_nodes_statement_prefix}{placeholders}"
                    f"{self.select_merkle_nodes_statement_suffix}",
                    [number for key in batch for number in key],
                )
                for row in c.fetchall():
                    found[(row["level"], row["node_index"])] = bytes(row["hash"])
        return found

    def adopt_unchained_events(self) -> int:
        with self.datastore.transaction(commit=True) as c:
            c.execute(self.lock_event_hashes_statement)
            c.execute(self.count_event_hashes_statement)
            hash_count = int(c.fetchone()[0])
            if hash_count:
                raise unchained_log_refused(hash_count)
            head: EventHash | None = None
            while True:
                after = 0 if head is None else head.notification_id
                c.execute(self.select_unchained_events_statement, (after, ADOPTION_PAGE_SIZE))
                rows = c.fetchall()
                if not rows:
                    break
                page = adopted_event_hashes(
                    head, [self._notification_from_row(row) for row in rows]
                )
                c.executemany(self.insert_event_hash_statement, event_hash_rows(page))
                head = page[-1]
        return 0 if head is None else head.leaf_index + 1

    def _notification_from_row(self, row: Any) -> Notification:
        return Notification(
            id=row["rowid"],
            originator_id=self.convert_originator_id(row["originator_id"]),
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )


def checkpoint_from_row(row: Any) -> StoredCheckpoint:
    return StoredCheckpoint(row["sequence"], row["tree_size"], row["line"])


def event_hash_from_row(row: Any) -> EventHash:
    return EventHash(
        leaf_index=row["leaf_index"],
        notification_id=row["notification_id"],
        leaf_hash=bytes(row["leaf_hash"]),
        chain_hash=bytes(row["chain_hash"]),
    )


class LedgerSQLiteFactory(SQLiteFactory):
    """SQLite persistence with durable connections and the data-key table."""

    application_recorder_class = SQLiteDataKeyRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        default_pool = self.datastore.pool
        self.datastore.pool = DurableSQLiteConnectionPool(
            db_name=default_pool.db_name,
            lock_timeout=default_pool.lock_timeout,
            pool_size=default_pool.pool_size,
            max_overflow=default_pool.max_overflow,
            pool_timeout=default_pool.pool_timeout,
            max_age=default_pool.max_age,
            pre_ping=default_pool.pre_ping,
        )
        default_pool.close()


# --------------------------------------------------------------------------------------
# Choosing a backend
# --------------------------------------------------------------------------------------

LEDGER_APPLICATION_NAME: Final = "Ledger"
"""The eventsourcing application name: it prefixes the PostgreSQL tables (ledger_events).
The writer (`ledger.application.Secrets`) and the keyless log reader share it."""
MEMORY_DATABASE: Final = "memory:"
POSTGRES_URL_SCHEMES: Final = ("postgresql", "postgres")
POSTGRES_PORT_DEFAULT: Final = 5432
SQLITE_LOCK_TIMEOUT_SECONDS: Final = 10
POSTGRES_LOCK_TIMEOUT_SECONDS: Final = 10

MEMORY_FACTORY_TOPIC: Final = "ledger.storage:LedgerPOPOFactory"
SQLITE_FACTORY_TOPIC: Final = "ledger.storage:LedgerSQLiteFactory"
POSTGRES_FACTORY_TOPIC: Final = "ledger.storage_postgres:LedgerPostgresFactory"


class DatabaseKind(enum.Enum):
    """Which engine a ``--db`` value names: the one place that tells them apart."""

    MEMORY = "memory"
    SQLITE = "sqlite"
    POSTGRES = "postgres"


def database_kind(database: str) -> DatabaseKind:
    """``memory:``, a ``postgresql://`` (or ``postgres://``) URL, or a SQLite path."""
    if database == MEMORY_DATABASE:
        return DatabaseKind.MEMORY
    scheme, separator, _ = database.partition("://")
    if separator and scheme.lower() in POSTGRES_URL_SCHEMES:
        return DatabaseKind.POSTGRES
    return DatabaseKind.SQLITE


def environment_for_database(database: str) -> dict[str, str]:
    """Maps the CLI ``--db`` value to eventsourcing environment variables.

    * ``memory:`` selects the in-memory backend (tests);
    * ``postgresql://user[:password]@host[:port]/dbname`` (or ``postgres://``)
      selects PostgreSQL in schema ``public``; user, host and database are required,
      the port defaults to 5432, query strings and fragments are rejected. Without a
      password in the URL (PG-1), each connection takes ``$PGPASSWORD``, else lets
      libpq find one in ``~/.pgpass`` (or ``$PGPASSFILE``);
    * anything else is a SQLite database file path.

    ``SQLITE_LOCK_TIMEOUT`` is always set, for SQLite stores used next to any backend
    (e.g. projection views). The keys are unprefixed, so ``LEDGER_…`` variables in
    ``os.environ`` still override them. Error messages never repeat the URL, which
    may hold a password.
    """
    if not isinstance(database, str) or not database.strip():
        msg = "database must be a non-empty string: a SQLite path, a postgresql:// URL or memory:"
        raise ValueError(msg)
    kind = database_kind(database)
    if kind is DatabaseKind.MEMORY:
        return {
            "PERSISTENCE_MODULE": MEMORY_FACTORY_TOPIC,
            "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_SECONDS),
        }
    if kind is DatabaseKind.POSTGRES:
        return _postgres_environment(database)
    return {
        "PERSISTENCE_MODULE": SQLITE_FACTORY_TOPIC,
        "SQLITE_DBNAME": database,
        "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_SECONDS),
    }


def _postgres_environment(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        msg = "PostgreSQL URL must not have a query string or fragment"
        raise ValueError(msg)
    user = unquote(parts.username or "")
    host = unquote(parts.hostname or "")
    database_name = unquote(parts.path.removeprefix("/"))
    if not user or not host:
        msg = "PostgreSQL URL needs a user and a host: postgresql://user:password@host:port/dbname"
        raise ValueError(msg)
    if not database_name or "/" in database_name:
        msg = "PostgreSQL URL needs exactly one path segment naming the database"
        raise ValueError(msg)
    return {
        "PERSISTENCE_MODULE": POSTGRES_FACTORY_TOPIC,
        "POSTGRES_DBNAME": database_name,
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(_postgres_port(parts)),
        "POSTGRES_USER": user,
        **_postgres_password(parts),
        "POSTGRES_SCHEMA": "public",
        "POSTGRES_LOCK_TIMEOUT": str(POSTGRES_LOCK_TIMEOUT_SECONDS),
        "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_SECONDS),
    }


PASSWORD_FROM_ENVIRONMENT_TOPIC: Final = "ledger.storage:postgres_password_from_environment"


def _postgres_password(parts: SplitResult) -> dict[str, str]:
    """PG-1: the URL's password, else the one each connection finds on its own."""
    if parts.password is not None:
        return {"POSTGRES_PASSWORD": unquote(parts.password)}
    return {"POSTGRES_PASSWORD": "", "POSTGRES_GET_PASSWORD_TOPIC": PASSWORD_FROM_ENVIRONMENT_TOPIC}


def postgres_password_from_environment() -> str:
    """PG-1: ``$PGPASSWORD``, read at each connection. The library always passes a
    password to libpq, and libpq ignores ``$PGPASSWORD`` when one is passed, even an
    empty one; an empty one still lets it read ``~/.pgpass``."""
    return os.environ.get("PGPASSWORD", "")


def _postgres_port(parts: SplitResult) -> int:
    try:
        port = parts.port
    except ValueError as error:
        msg = "PostgreSQL URL has an invalid port: expected an integer from 1 to 65535"
        raise ValueError(msg) from error
    if port is None:
        return POSTGRES_PORT_DEFAULT
    if port == 0:
        msg = "PostgreSQL URL has an invalid port: expected an integer from 1 to 65535"
        raise ValueError(msg)
    return port
